"""Convolution and Deconvolution (2-D; weights (out, in/group, kh, kw) and (in, out/group, kh, kw))."""
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


def conv_geometry(p, layer: Layer) -> tuple[tuple[int, int], ...]:
    """Kernel, stride, pad and dilation (each an (h, w) pair) of a ConvolutionParameter, as used
    by Convolution, Deconvolution and Im2col; only axis 1 (NCHW) is supported."""
    if p.HasField("kernel_h") != p.HasField("kernel_w"):
        raise layer.error("kernel_h and kernel_w must be given together")
    if not p.HasField("kernel_h") and not len(p.kernel_size):
        raise layer.error("kernel_size (or kernel_h and kernel_w) is required")
    if p.axis != 1:
        raise layer.error("only axis 1 (NCHW) is supported")
    kernel = spatial_pair(p.kernel_size, p.kernel_h, p.kernel_w, p.HasField("kernel_h"), 1,
                          "kernel_size", layer)
    stride = spatial_pair(p.stride, p.stride_h, p.stride_w, p.HasField("stride_h"), 1, "stride",
                          layer)
    pad = spatial_pair(p.pad, p.pad_h, p.pad_w, p.HasField("pad_h"), 0, "pad", layer)
    dilation = spatial_pair(p.dilation, 0, 0, False, 1, "dilation", layer)
    return kernel, stride, pad, dilation


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           stride: tuple[int, int], pad: tuple[int, int], dilation: tuple[int, int], group: int
           ) -> torch.Tensor:
    """F.conv2d with two CPU speed-ups (the same sums, in another order).

    A kernel covering the whole unpadded input (a 1x1 output, as in the SSE branches' full-map
    convolutions) runs as one matrix product, several times faster than the convolution kernels
    for such shapes. Other convolutions on the CPU take their input channels-last: oneDNN then
    works on it directly instead of reordering NCHW into its blocked layout and back at every
    call, and the output stays channels-last, so the BatchNorm, ReLU and pooling after it run on
    that layout too (bench/RESULTS.md, engine ablation: DenseNet-121's training step 1.32x
    faster; HoloNet's, with 8-48 channels, about the same). Blob views that pycaffe hands out
    remain N x C x H x W arrays, with channels-last strides."""
    n, _, h, w = x.shape
    if (group == 1 and pad == (0, 0) and dilation == (1, 1) and (h, w) == tuple(weight.shape[2:])):
        y = F.linear(x.reshape(n, -1), weight.reshape(weight.shape[0], -1), bias)
        return y.reshape(n, weight.shape[0], 1, 1)
    if x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, weight, bias, stride, pad, dilation, group)


class _ConvBase(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 1, None, 1, None
    transposed = False

    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        if len(lp.bottom) != len(lp.top):
            raise self.error("needs as many tops as bottoms")
        p = lp.convolution_param
        self.kernel, self.stride, self.pad, self.dilation = conv_geometry(p, self)
        self.num_output = p.num_output
        self.group = p.group
        self.bias_term = p.bias_term
        if self.num_output <= 0:
            raise self.error("num_output must be positive")

    def setup(self, bottom_shapes: list[Shape]) -> None:
        shape = bottom_shapes[0]
        if len(shape) != 4:
            raise self.error(f"expects a 4-D bottom (N, C, H, W), got shape {shape}")
        for s in bottom_shapes[1:]:
            if s[1:] != shape[1:]:
                raise self.error(f"all bottoms must have the same C, H, W; got {shape} and {s}")
        channels = shape[1]
        if channels % self.group or self.num_output % self.group:
            raise self.error(f"channels ({channels}) and num_output ({self.num_output}) must be "
                             f"divisible by group ({self.group})")
        if len(self.blobs):
            return
        p = self.lp.convolution_param
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
        for shape in bottom_shapes:
            if len(shape) != 4 or shape[1] != channels:
                raise self.error(f"expects bottoms of shape (N, {channels}, H, W) as its weights "
                                 f"{tuple(weight)}, got {tuple(shape)}")
            n, _, h, w = shape
            out.append((n, self.num_output, self._out(h, 0), self._out(w, 1)))
        return out

    def _out(self, size: int, i: int) -> int:
        k = self.dilation[i] * (self.kernel[i] - 1) + 1
        if self.transposed:
            out = self.stride[i] * (size - 1) + k - 2 * self.pad[i]
        else:
            out = (size + 2 * self.pad[i] - k) // self.stride[i] + 1
        if out < 1:
            side = ("height", "width")[i]
            dilated = f" (dilation {self.dilation[i]})" if self.dilation[i] > 1 else ""
            raise self.error(f"kernel {k}{dilated} does not fit the input {side} {size} with pad "
                             f"{self.pad[i]}: the output {side} would be {out}")
        return out

    def _bias(self) -> torch.Tensor | None:
        return self.blobs[1] if self.bias_term else None


@register("Convolution")
class Convolution(_ConvBase):
    def forward(self, *bottoms: torch.Tensor) -> list[torch.Tensor]:
        return [conv2d(x, self.blobs[0], self._bias(), self.stride, self.pad, self.dilation,
                       self.group) for x in bottoms]


@register("Deconvolution")
class Deconvolution(_ConvBase):
    transposed = True

    def forward(self, *bottoms: torch.Tensor) -> list[torch.Tensor]:
        return [F.conv_transpose2d(x, self.blobs[0], self._bias(), self.stride, self.pad, 0,
                                   self.group, self.dilation) for x in bottoms]
