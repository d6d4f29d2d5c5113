"""Convolution and Deconvolution over 1 to 3 spatial axes (weights (out, in/group, *kernel) and
(in, out/group, *kernel)); the channels sit at ``axis``, the axes before it form the batch."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Layer, Shape, register


def spatial_pair(repeated, h: int, w: int, has_hw: bool, default: int, what: str, layer: Layer
                 ) -> tuple[int, int]:
    """Resolve Caffe's ``kernel_size``-style repeated field against its ``_h``/``_w`` forms."""
    if has_hw:
        if len(repeated):
            raise layer.error(f"either {what} or {what}_h/_w, not both")
        return int(h), int(w)
    values = list(repeated)
    if not values:
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise layer.error(f"{what} has {len(values)} values; only 2-D convolution is supported")


def spatial_values(p, what: str, axes: int, default: int, layer: Layer) -> tuple[int, ...]:
    """Caffe's repeated ``kernel_size``/``stride``/``pad``/``dilation`` for ``axes`` spatial axes:
    absent (``default``), given once (every axis) or once per axis; ``what``_h/_w (not for
    dilation) replace it for 2-D only."""
    values = [int(v) for v in getattr(p, what)]
    name = "kernel" if what == "kernel_size" else what
    if what != "dilation" and (p.HasField(f"{name}_h") or p.HasField(f"{name}_w")):
        if axes != 2:
            raise layer.error(f"{name}_h/_w are only for 2-D convolution; this one has {axes} "
                              f"spatial axes")
        if values:
            raise layer.error(f"either {what} or {name}_h/_w, not both")
        return int(getattr(p, f"{name}_h")), int(getattr(p, f"{name}_w"))
    if not values:
        return (default,) * axes
    if len(values) == 1:
        return (values[0],) * axes
    if len(values) != axes:
        raise layer.error(f"{what} has {len(values)} values; give it once or once per spatial "
                          f"axis ({axes})")
    return tuple(values)


def spatial_geometry(p, axes: int, layer: Layer) -> tuple[tuple[int, ...], ...]:
    """Kernel, stride, pad and dilation (each one value per spatial axis) of a
    ConvolutionParameter over ``axes`` spatial axes, checked as Caffe's BaseConvolutionLayer does."""
    if not len(p.kernel_size) and not (p.HasField("kernel_h") or p.HasField("kernel_w")):
        raise layer.error("kernel_size (or kernel_h and kernel_w) is required")
    kernel = spatial_values(p, "kernel_size", axes, 1, layer)
    stride = spatial_values(p, "stride", axes, 1, layer)
    pad = spatial_values(p, "pad", axes, 0, layer)
    dilation = spatial_values(p, "dilation", axes, 1, layer)
    for what, values in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
        if min(values) <= 0:
            raise layer.error(f"{what} {values} must be positive on every spatial axis")
    if min(pad) < 0:
        raise layer.error(f"pad {pad} must not be negative")
    return kernel, stride, pad, dilation


def conv_geometry(p, layer: Layer) -> tuple[tuple[int, int], ...]:
    """Kernel, stride, pad and dilation (each an (h, w) pair) of a 2-D ConvolutionParameter on
    N x C x H x W (axis 1), as Im2col uses them."""
    if p.axis != 1:
        raise layer.error("only axis 1 (NCHW) is supported")
    return spatial_geometry(p, 2, layer)


# A convolution is weight-bound when its weights outnumber its output positions (N * H_o * W_o)
# this many times or more: a batch of one on a small map with a large kernel (SSE-ResNet's 7x7
# stride-2 heads, 2048 x 1024 x 7 x 7 on 14x14 -> 7x7; ResNet-50's res5 3x3 on 7x7). oneDNN then
# spends its time reordering the weights into its blocked layout at every call (several times the
# product itself), so on the CPU such a convolution runs as Caffe runs every convolution: im2col
# and one matrix product (bench/results/vs_bvlc_layers.md). PLAIN_GEMM_RATIO is for the plain
# route (weights reordered at each call), PACKED_GEMM_RATIO for the inference mode's convolutions
# with weights packed once (caffe/inference.py), where only the largest ones gain.
PLAIN_GEMM_RATIO = 1 << 14
PACKED_GEMM_RATIO = 1 << 16


def conv2d_output_hw(hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                     pad: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    """The output height and width of a 2-D convolution (floor, as Caffe's)."""
    return tuple((size + 2 * p - d * (k - 1) - 1) // s + 1
                 for size, k, s, p, d in zip(hw, kernel, stride, pad, dilation))


def weight_bound(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                 pad: tuple[int, int], dilation: tuple[int, int], group: int, ratio: int) -> bool:
    """Whether a CPU float32 2-D convolution (one group, a kernel larger than 1x1) has ``ratio``
    times more weights than output positions, and so runs faster as im2col + GEMM."""
    if (group != 1 or x.device.type != "cpu" or x.dtype != torch.float32
            or weight.shape[2] * weight.shape[3] == 1):
        return False
    h_o, w_o = conv2d_output_hw(tuple(x.shape[2:]), tuple(weight.shape[2:]), stride, pad,
                                dilation)
    return weight.numel() >= ratio * x.shape[0] * h_o * w_o


def im2col_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  stride: tuple[int, int], pad: tuple[int, int], dilation: tuple[int, int]
                  ) -> torch.Tensor:
    """A one-group 2-D convolution as Caffe computes it: each image's im2col columns
    (``F.unfold``) times the weights as one matrix product (the same sums as ``F.conv2d``, in
    another order). The output is N x out x H_o x W_o with channels-last strides."""
    n = x.shape[0]
    out = weight.shape[0]
    h_o, w_o = conv2d_output_hw(tuple(x.shape[2:]), tuple(weight.shape[2:]), stride, pad,
                                dilation)
    cols = F.unfold(x, tuple(weight.shape[2:]), dilation, pad, stride)  # N x K x (H_o W_o)
    # one GEMM over all images' positions: (N H_o W_o) x K rows (a copy for N > 1); left 3-D,
    # a channels-last input's columns went to a batched product, one small GEMM per image
    rows = cols.transpose(1, 2).reshape(n * h_o * w_o, cols.shape[1])
    y = F.linear(rows, weight.reshape(out, -1), bias)  # (N H_o W_o) x out
    return y.view(n, h_o, w_o, out).permute(0, 3, 1, 2)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor in channels-last memory format. A one-channel NCHW tensor is laid out so
    already, but its strides leave the format ambiguous, and oneDNN (which reads the format from
    the strides) then answers NCHW, so everything after a net's first convolution ran NCHW (the
    HoloNet's gray input: its first block and pool1, converted back and forth); it gets
    channels-last strides on the same memory (a view)."""
    if x.shape[1] == 1 and x.is_contiguous():
        n, _, h, w = x.shape
        return x.as_strided(x.shape, (h * w, 1, w, 1))
    return x.contiguous(memory_format=torch.channels_last)


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           stride: tuple[int, int], pad: tuple[int, int], dilation: tuple[int, int], group: int
           ) -> torch.Tensor:
    """F.conv2d with three CPU speed-ups (the same sums, in another order).

    A kernel covering the whole unpadded input (a 1x1 output, as in the SSE branches' full-map
    convolutions) runs as one matrix product, several times faster than the convolution kernels
    for such shapes. A weight-bound convolution (``weight_bound``) runs as im2col + GEMM. Other
    convolutions on the CPU take their input channels-last: oneDNN then works on it directly
    instead of reordering NCHW into its blocked layout and back at every call, and the output
    stays channels-last, so the BatchNorm, ReLU and pooling after it run on
    that layout too (bench/RESULTS.md, engine ablation: DenseNet-121's training step 1.32x
    faster; HoloNet's, with 8-48 channels, about the same). Blob views that pycaffe hands out
    remain N x C x H x W arrays, with channels-last strides."""
    n, _, h, w = x.shape
    if (group == 1 and pad == (0, 0) and dilation == (1, 1) and (h, w) == tuple(weight.shape[2:])):
        y = F.linear(x.reshape(n, -1), weight.reshape(weight.shape[0], -1), bias)
        return y.reshape(n, weight.shape[0], 1, 1)
    if weight_bound(x, weight, stride, pad, dilation, group, PLAIN_GEMM_RATIO):
        return im2col_conv2d(x, weight, bias, stride, pad, dilation)
    if x.device.type == "cpu":
        x = channels_last(x)
    return F.conv2d(x, weight, bias, stride, pad, dilation, group)


_CONV_ND = {1: F.conv1d, 3: F.conv3d}
_DECONV_ND = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def convolution(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: tuple[int, ...], pad: tuple[int, ...], dilation: tuple[int, ...],
                group: int, axis: int = 1, transposed: bool = False) -> torch.Tensor:
    """Caffe's Convolution (or, ``transposed``, Deconvolution) of a blob whose channels sit at
    ``axis``: the axes before it are flattened into one batch (Caffe's ``num_``; none: a batch of
    one), the 1 to 3 after it are spatial. 2-D convolutions take conv2d's fast paths."""
    lead = x.shape[:axis]
    flat = x if axis == 1 else x.reshape(-1, *x.shape[axis:])
    if transposed:
        y = _DECONV_ND[len(stride)](flat, weight, bias, stride=stride, padding=pad,
                                    groups=group, dilation=dilation)
    elif len(stride) == 2:
        y = conv2d(flat, weight, bias, stride, pad, dilation, group)
    else:
        y = _CONV_ND[len(stride)](flat, weight, bias, stride=stride, padding=pad,
                                  dilation=dilation, groups=group)
    return y if axis == 1 else y.reshape(*lead, *y.shape[1:])


class _ConvBase(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 1, None, 1, None
    transposed = False

    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        if len(lp.bottom) != len(lp.top):
            raise self.error("needs as many tops as bottoms")
        p = lp.convolution_param
        self.num_output = p.num_output
        self.group = p.group
        self.bias_term = p.bias_term
        if self.num_output <= 0:
            raise self.error("num_output must be positive")

    def setup(self, bottom_shapes: list[Shape]) -> None:
        shape = bottom_shapes[0]
        p = self.lp.convolution_param
        self.axis = self.canonical_axis(p.axis, len(shape))
        axes = len(shape) - self.axis - 1
        if not 1 <= axes <= 3:
            raise self.error(f"supports 1 to 3 spatial axes after the channel axis {self.axis}; "
                             f"bottom shape {tuple(shape)} has {axes}")
        self.kernel, self.stride, self.pad, self.dilation = spatial_geometry(p, axes, self)
        channels = shape[self.axis]
        if channels % self.group or self.num_output % self.group:
            raise self.error(f"channels ({channels}) and num_output ({self.num_output}) must be "
                             f"divisible by group ({self.group})")
        if len(self.blobs):
            return
        if self.transposed:
            wshape = (channels, self.num_output // self.group, *self.kernel)
        else:
            wshape = (self.num_output, channels // self.group, *self.kernel)
        self.add_blob(wshape, p.weight_filler)
        if self.bias_term:
            self.add_blob((self.num_output,), p.bias_filler)

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        out = []
        weight = self.blobs[0].shape
        channels = weight[0] if self.transposed else weight[1] * self.group
        axes = len(self.kernel)
        lead = ["N"] if self.axis == 1 else [f"N{i}" for i in range(self.axis)]
        expected = ", ".join([*lead, str(channels), *("D", "H", "W")[-axes:]])
        for shape in bottom_shapes:
            if len(shape) != self.axis + 1 + axes or shape[self.axis] != channels:
                raise self.error(f"expects bottoms of shape ({expected}) as its weights "
                                 f"{tuple(weight)}, got {tuple(shape)}")
            if shape[self.axis:] != bottom_shapes[0][self.axis:]:
                raise self.error(f"all bottoms must have the same channel and spatial sizes; got "
                                 f"{tuple(bottom_shapes[0])} and {tuple(shape)}")
            spatial = shape[self.axis + 1:]
            out.append((*shape[:self.axis], self.num_output,
                        *(self._out(size, i) for i, size in enumerate(spatial))))
        return out

    def _out(self, size: int, i: int) -> int:
        k = self.dilation[i] * (self.kernel[i] - 1) + 1
        if self.transposed:
            out = self.stride[i] * (size - 1) + k - 2 * self.pad[i]
        else:
            out = (size + 2 * self.pad[i] - k) // self.stride[i] + 1
        if out < 1:
            side = ("depth", "height", "width")[i - len(self.kernel)]
            dilated = f" (dilation {self.dilation[i]})" if self.dilation[i] > 1 else ""
            raise self.error(f"kernel {k}{dilated} does not fit the input {side} {size} with pad "
                             f"{self.pad[i]}: the output {side} would be {out}")
        return out

    def _bias(self) -> torch.Tensor | None:
        return self.blobs[1] if self.bias_term else None

    def forward(self, *bottoms: torch.Tensor) -> list[torch.Tensor]:
        return [convolution(x, self.blobs[0], self._bias(), self.stride, self.pad, self.dilation,
                            self.group, self.axis, self.transposed) for x in bottoms]


@register("Convolution")
class Convolution(_ConvBase):
    """Caffe's Convolution: a cross-correlation with learned filters (out, in/group, *kernel)."""


@register("Deconvolution")
class Deconvolution(_ConvBase):
    """Caffe's Deconvolution: the transpose of Convolution, filters (in, out/group, *kernel)."""

    transposed = True
