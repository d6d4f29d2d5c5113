"""Caffe's arithmetic for Convolution and InnerProduct layers declared in place (top == bottom)
whose output shape differs from their input, as SSE-ResNet's released prototxt has them, and for
in-place 1x1 Convolutions and InnerProducts of any shape (their GEMM writes into what it reads).

Real Caffe runs such a layer on the blob's one flat memory, read with the layer's own geometry
(golden case ``inplace_reshape``, described in DESIGN.md):

* a Blob's data and diff are flat buffers, zero-filled when allocated, grown to the largest count
  so far and otherwise kept, so cells past the current count hold earlier passes' values;
* a Convolution reads image n as C_in x H_o x W_o values at offset n * C_out * H_o * W_o (its Reshape
  gave the blob the output shape first), im2cols it into its own column buffer (which keeps its old
  contents past what im2col writes), reads that buffer as (C_in k_h k_w) x (H_o W_o), and writes
  image n's output before it reads image n+1; its backward does the same with the diff;
* a 1x1 Convolution (stride 1, no pad) has no column buffer: its GEMM writes image n's output over
  the image it reads, and an InnerProduct's GEMM writes its output where its input starts; what
  they compute is the order in which the BLAS reads and writes, replayed from OpenBLAS 0.3.21 by
  ``caffe.aliased_gemm`` (an InnerProduct with k < 32 zeroes its output first: the product is
  taken on the input with its first M * N values set to zero);
* the in-place ReLU, Scale and BatchNorm on such a blob backpropagate from the blob's final data
  and count, as Caffe's Backward_cpu reads them (``BufferBackward`` below; golden case
  ``tests/golden_made/inplace_chain``).

A caffemodel trained in real Caffe learned against this arithmetic, so it is the default;
``CAFFE_INPLACE_RESHAPE=math`` gives the mathematical layer instead. Either way the net warns
when it is built (``InplaceReshapeWarning``), naming the layers."""
from __future__ import annotations

import math
import os
from typing import Callable

import torch
import torch.nn.functional as F

from . import aliased_gemm
from .layers.base import Layer, Shape
from .layers.conv import conv2d_output_hw

ENV = "CAFFE_INPLACE_RESHAPE"
EMULATED_TYPES = ("Convolution", "InnerProduct")


class InplaceReshapeWarning(UserWarning):
    """A layer works in place on a blob whose shape it changes."""


def caffe_arithmetic_enabled() -> bool:
    """True unless ``CAFFE_INPLACE_RESHAPE`` asks for the mathematical layer (``math``)."""
    value = os.environ.get(ENV, "caffe").strip().lower()
    if value not in ("caffe", "math"):
        raise ValueError(f"{ENV} must be 'caffe' or 'math', got {value!r}")
    return value == "caffe"


class SharedBuffer:
    """A blob's flat data and diff memory as Caffe's Blob keeps it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.data: torch.Tensor | None = None
        self.diff: torch.Tensor | None = None

    def ensure(self, count: int, device: torch.device) -> None:
        """Allocate zero-filled memory of the capacity (grown to ``count``) on ``device`` when the
        current memory is missing, too small or elsewhere, as Blob::Reshape does."""
        if count > self.capacity or self.data is None or self.data.device != device:
            self.capacity = max(self.capacity, count)
            self.data = torch.zeros(self.capacity, device=device)
            self.diff = torch.zeros(self.capacity, device=device)

    def put(self, which: str, t: torch.Tensor) -> None:
        """Write ``t`` at the start of the data or diff memory (what the producer of a blob does)."""
        flat = t.detach().reshape(-1)
        self.ensure(flat.numel(), flat.device)
        getattr(self, which)[:flat.numel()].copy_(flat)

    def view(self, which: str, shape: Shape) -> torch.Tensor:
        """The first prod(shape) values of the data or diff memory, shaped ``shape``."""
        return getattr(self, which)[:math.prod(shape)].view(shape)


class InplaceEmulator:
    """One in-place shape-changing layer run on its blob's SharedBuffer; ``latest_data`` returns the
    blob's current data (what the buffer holds at backward time in Caffe)."""

    def __init__(self, layer: Layer, buffer: SharedBuffer,
                 latest_data: Callable[[], torch.Tensor]) -> None:
        self.layer, self.buffer, self.latest_data = layer, buffer, latest_data
        self.col: torch.Tensor | None = None
        self.col_written = 0  # the column buffer's cells past this one hold zeros (never written)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _InplaceFunction.apply(self, x, *self.layer.blobs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_shape = tuple(x.shape)
        out_shape = tuple(self.layer.reshape([in_shape])[0])
        buf = self.buffer
        buf.ensure(max(math.prod(in_shape), math.prod(out_shape)), x.device)
        buf.put("data", x)
        with torch.no_grad():
            if self.layer.type == "Convolution":
                _conv_forward(self, in_shape, out_shape)
            else:
                _ip_forward(self, in_shape, out_shape)
        return buf.view("data", out_shape).clone()

    def backward(self, grad: torch.Tensor | None, in_shape: Shape, out_shape: Shape,
                 needs: tuple[bool, ...]) -> tuple:
        buf = self.buffer
        buf.put("data", self.latest_data())
        buf.put("diff", grad if grad is not None else torch.zeros(out_shape, device=buf.data.device))
        with torch.no_grad():
            if self.layer.type == "Convolution":
                grads = _conv_backward(self, in_shape, out_shape, needs)
            else:
                grads = _ip_backward(self, in_shape, out_shape, needs)
        gx = buf.view("diff", in_shape).clone() if needs[0] else None
        return (gx, *grads)


class _InplaceFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, emulator: InplaceEmulator, x: torch.Tensor, *params: torch.Tensor):
        ctx.emulator = emulator
        ctx.in_shape = tuple(x.shape)
        y = emulator.forward(x)
        ctx.out_shape = tuple(y.shape)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        needs = tuple(ctx.needs_input_grad[1:])
        return (None, *ctx.emulator.backward(grad, ctx.in_shape, ctx.out_shape, needs))


def _conv_geometry(em: InplaceEmulator, in_shape: Shape, out_shape: Shape) -> dict:
    layer = em.layer
    n, c_in = in_shape[:2]
    _, c_out, h_o, w_o = out_shape
    kh, kw = layer.kernel
    g = layer.group
    one_by_one = layer.kernel == (1, 1) and layer.stride == (1, 1) and layer.pad == (0, 0)
    h2, w2 = conv2d_output_hw((h_o, w_o), layer.kernel, layer.stride, layer.pad, layer.dilation)
    col_size = c_in * kh * kw * h_o * w_o
    if not one_by_one and c_in * kh * kw * h2 * w2 > col_size:
        raise layer.error(f"in place on a blob whose shape it changes, its im2col ({h2}x{w2}) "
                          f"would overrun Caffe's column buffer ({h_o}x{w_o})")
    if not one_by_one and (em.col is None or em.col.numel() != col_size
                           or em.col.device != em.buffer.data.device):
        em.col = torch.zeros(col_size, device=em.buffer.data.device)
        em.col_written = 0
    return dict(n=n, c_in=c_in, c_out=c_out, hw=(h_o, w_o), g=g, kdim=c_in // g * kh * kw,
                top_dim=c_out * h_o * w_o, in_dim=c_in * h_o * w_o, one_by_one=one_by_one,
                col_used=c_in * kh * kw * h2 * w2, spatial=h_o * w_o)


def _im2col(em: InplaceEmulator, image: torch.Tensor, geo: dict) -> torch.Tensor:
    """Caffe's im2col of one image into the start of the layer's column buffer, returned as the
    buffer read with the GEMM's (group, kernel_dim, H_o W_o) geometry."""
    layer = em.layer
    if geo["one_by_one"]:
        return image.reshape(geo["g"], geo["kdim"], geo["spatial"]).clone()
    cols = F.unfold(image[None], layer.kernel, layer.dilation, layer.pad, layer.stride)
    em.col[:geo["col_used"]].copy_(cols.reshape(-1))
    em.col_written = max(em.col_written, geo["col_used"])
    return em.col.view(geo["g"], geo["kdim"], geo["spatial"])


def _written_rows(em: InplaceEmulator, geo: dict) -> int:
    """How many leading rows of the (kernel_dim x H_o W_o) column matrix may hold non-zero values
    (one group): the GEMM over the rows below, which only ever held the buffer's zero fill, adds
    nothing to the product. A forward-only net reads its im2col's cells and never writes the rest
    (SSE-ResNet's in-place 7x7 heads: a quarter or a third of the rows), the backward writes all."""
    if geo["one_by_one"] or geo["g"] != 1:
        return geo["kdim"]
    return min(geo["kdim"], -(-em.col_written // geo["spatial"]))


def _conv_forward(em: InplaceEmulator, in_shape: Shape, out_shape: Shape) -> None:
    geo = _conv_geometry(em, in_shape, out_shape)
    data, layer = em.buffer.data, em.layer
    weight = layer.blobs[0].detach().reshape(geo["g"], -1, geo["kdim"])
    bias = layer.blobs[1].detach()[:, None] if layer.bias_term else None
    flat_w = layer.blobs[0].detach().reshape(-1).contiguous().to(data)
    for i in range(geo["n"]):
        at = i * geo["top_dim"]
        if geo["one_by_one"]:
            # forward_cpu_gemm without a column buffer: the GEMM reads image n where it writes
            # image n's output, in the BLAS's own order (caffe/aliased_gemm.py)
            _gemm_1x1(geo, (flat_w, 0), data, at, forward=True)
            out = data[at:at + geo["top_dim"]].view(geo["c_out"], geo["spatial"])
        else:
            image = data[at:at + geo["in_dim"]].view(geo["c_in"], *geo["hw"])
            cols = _im2col(em, image, geo)
            rows = _written_rows(em, geo)
            out = torch.bmm(weight[:, :, :rows], cols[:, :rows]).reshape(geo["c_out"],
                                                                        geo["spatial"])
        if bias is not None:
            out = out + bias
        data[at:at + geo["top_dim"]].copy_(out.reshape(-1))


def _gemm_1x1(geo: dict, flat_w: tuple[torch.Tensor, int], buf: torch.Tensor, at: int,
              forward: bool) -> None:
    """Caffe's per-group GEMM of a 1x1 convolution on image n at offset ``at`` of ``buf``: forward
    W_g (C_out/g x C_in/g) times the image's group g (its col_buff) into the output's group g;
    backward W_g^T times the top diff's group g into the bottom diff's group g (both in ``buf``)."""
    g, kdim, spatial = geo["g"], geo["kdim"], geo["spatial"]
    out_g = geo["c_out"] // g
    col_offset, output_offset = kdim * spatial, out_g * spatial
    w, w_at = flat_w
    for grp in range(g):
        weights = (w, w_at + grp * out_g * kdim)
        col = (buf, at + grp * col_offset)
        output = (buf, at + grp * output_offset)
        if forward:
            aliased_gemm.caffe_cpu_gemm(False, False, out_g, spatial, kdim, weights, col, output)
        else:
            aliased_gemm.caffe_cpu_gemm(True, False, kdim, spatial, out_g, weights, output, col)


def _conv_backward(em: InplaceEmulator, in_shape: Shape, out_shape: Shape,
                   needs: tuple[bool, ...]) -> list[torch.Tensor | None]:
    geo = _conv_geometry(em, in_shape, out_shape)
    data, diff, layer = em.buffer.data, em.buffer.diff, em.layer
    weight = layer.blobs[0].detach().reshape(geo["g"], -1, geo["kdim"])
    need_x, need_w = needs[0], needs[1]
    need_b = layer.bias_term and needs[2]
    flat_w = layer.blobs[0].detach().reshape(-1).contiguous().to(data)
    gw = torch.zeros_like(weight) if need_w else None
    gb = None
    if need_b:
        gb = sum(diff[i * geo["top_dim"]:(i + 1) * geo["top_dim"]].view(geo["c_out"], -1).sum(1)
                 for i in range(geo["n"]))
    for i in range(geo["n"]):
        at = i * geo["top_dim"]
        top = diff[at:at + geo["top_dim"]].view(geo["g"], -1, geo["spatial"]).clone()
        if need_w:
            image = data[at:at + geo["in_dim"]].view(geo["c_in"], *geo["hw"])
            gw += torch.bmm(top, _im2col(em, image, geo).transpose(1, 2))
        if need_x:
            if geo["one_by_one"]:
                _gemm_1x1(geo, (flat_w, 0), diff, at, forward=False)
                continue
            cols = torch.bmm(weight.transpose(1, 2), top)
            em.col.copy_(cols.reshape(-1))
            em.col_written = em.col.numel()
            used = em.col[:geo["col_used"]].view(1, geo["c_in"] * math.prod(layer.kernel), -1)
            image = F.fold(used, geo["hw"], layer.kernel, layer.dilation, layer.pad, layer.stride)
            diff[at:at + geo["in_dim"]].copy_(image.reshape(-1))
    out = [gw.reshape(layer.blobs[0].shape) if need_w else None]
    if layer.bias_term:
        out.append(gb)
    return out


def _ip_sizes(em: InplaceEmulator, in_shape: Shape) -> tuple[int, int, int]:
    layer = em.layer
    return math.prod(in_shape[:layer.axis]), layer.k, layer.num_output


def _ip_forward(em: InplaceEmulator, in_shape: Shape, out_shape: Shape) -> None:
    m, k, n = _ip_sizes(em, in_shape)
    layer, data = em.layer, em.buffer.data
    weight = layer.blobs[0].detach().reshape(-1).contiguous().to(data)
    # top (M x N) = bottom (M x K) x W^T, both at the start of the blob's memory, in the BLAS's
    # order (caffe/aliased_gemm.py): small sizes zero the output first, then read the input
    aliased_gemm.caffe_cpu_gemm(False, not layer.transpose, m, n, k, (data, 0), (weight, 0),
                                (data, 0))
    if layer.bias_term:
        out = data[:m * n].view(m, n)
        out.copy_(out + layer.blobs[1].detach())


def _ip_backward(em: InplaceEmulator, in_shape: Shape, out_shape: Shape,
                 needs: tuple[bool, ...]) -> list[torch.Tensor | None]:
    m, k, n = _ip_sizes(em, in_shape)
    layer, data, diff = em.layer, em.buffer.data, em.buffer.diff
    top = diff[:m * n].view(m, n).clone()
    weight = layer.blobs[0].detach()
    out: list[torch.Tensor | None] = [None]
    if needs[1]:
        b = data[:m * k].view(m, k)
        out[0] = b.t() @ top if layer.transpose else top.t() @ b
    if layer.bias_term:
        out.append(top.sum(0) if needs[2] else None)
    if needs[0]:
        flat_w = weight.reshape(-1).contiguous().to(diff)
        aliased_gemm.caffe_cpu_gemm(False, layer.transpose, m, k, n, (diff, 0), (flat_w, 0),
                                    (diff, 0))
    return out


def find_inplace_reshapes(layers: list[Layer], bottoms: list[list[str]], tops: list[list[str]],
                          shapes_in: list[list[Shape]], shapes_out: list[list[Shape]]
                          ) -> list[int]:
    """Indices of the layers in place whose Caffe arithmetic is not the mathematical layer's: a top
    that reuses a bottom's name with another shape, or, with the same shape, a GEMM that writes into
    the memory it reads (a 1x1 stride-1 unpadded 2-D Convolution, an InnerProduct)."""
    found = []
    for i, layer in enumerate(layers):
        for j, (b, t) in enumerate(zip(bottoms[i], tops[i])):
            if b != t:
                continue
            if tuple(shapes_in[i][j]) != tuple(shapes_out[i][j]) or _aliasing_gemm(layer,
                                                                                  shapes_in[i][j]):
                found.append(i)
                break
    return found


def _aliasing_gemm(layer: Layer, shape: Shape) -> bool:
    if layer.type == "InnerProduct":
        return True
    return (layer.type == "Convolution" and len(shape) == 4 and tuple(layer.kernel) == (1, 1)
            and tuple(layer.stride) == (1, 1) and tuple(layer.pad) == (0, 0))


# ---- element-wise layers in place on a blob that an emulated layer reshapes -------------------
#
# Caffe's Backward_cpu of an in-place ReLU, Scale or BatchNorm reads the blob as it is when the
# backward runs, not as it was when the layer ran forward: the blob's data then holds its final
# value (what the last in-place layer wrote) and its shape is the final shape. Where a later
# in-place Convolution or InnerProduct changed that shape, Caffe's backward therefore differs from
# the mathematical one:
# * ReLU gates the first ``count`` diffs (count of the blob's final shape) by the sign of the final
#   data, cell by cell, and passes the rest through;
# * Scale's scale gradient multiplies the top diff and its saved input only over the first
#   ``count`` cells (in its saved-input buffer temp_); past them it sums the saved input itself;
# * BatchNorm with batch statistics computes its sums with spatial_dim = count / (N * C), reading
#   its flat diff with that geometry, and divides by N * spatial_dim.
# Bias gradients, bottom diffs of Scale and the use_global_stats BatchNorm use the layer's own
# (forward) dimensions, as the mathematical layer does.

BUFFER_BACKWARD_TYPES = ("ReLU", "Scale", "BatchNorm")


def wants_buffer_backward(layer: Layer, bottoms: list[str], tops: list[str]) -> bool:
    """Whether ``layer`` is one whose Caffe backward reads the shared blob (see above)."""
    if layer.type not in BUFFER_BACKWARD_TYPES or len(bottoms) != 1 or bottoms != tops:
        return False
    if layer.type == "BatchNorm":
        return not layer.use_global_stats
    if layer.type == "Scale":
        return len(layer.lp.bottom) == 1
    return True


class BufferBackward:
    """Runs ``layer`` forward as usual; its backward is Caffe's on the blob as it is then (final
    data from ``latest_data``, the shared buffer's diff past the layer's own cells)."""

    def __init__(self, layer: Layer, buffer: SharedBuffer,
                 latest_data: Callable[[], torch.Tensor]) -> None:
        self.layer, self.buffer, self.latest_data = layer, buffer, latest_data

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _BufferBackwardFunction.apply(self, x, *self.layer.blobs)


class _BufferBackwardFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, helper: BufferBackward, x: torch.Tensor, *params: torch.Tensor):
        layer = helper.layer
        ctx.helper = helper
        if not any(ctx.needs_input_grad):  # no backward will come (TEST, inference, no_grad)
            return layer.forward(x)[0]
        saved = [x.detach().clone()]
        if layer.type == "BatchNorm":
            x4 = x.reshape(x.shape[0], x.shape[1], -1)
            var = x4.var(dim=(0, 2), unbiased=False)
            saved.append(torch.sqrt(var + layer.eps))
        y = layer.forward(x)[0]
        if layer.type == "BatchNorm":
            saved.append(y.detach().clone())
        ctx.saved = saved
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        helper = ctx.helper
        layer = helper.layer
        with torch.no_grad():
            final = helper.latest_data().detach().reshape(-1)
            if layer.type == "ReLU":
                grads = _relu_backward(helper, ctx.saved[0], final, grad)
            elif layer.type == "Scale":
                grads = _scale_backward(layer, ctx.saved[0], final.numel(), grad,
                                        ctx.needs_input_grad[2:])
            else:
                grads = (_batch_norm_backward(ctx.saved, final.numel(), grad),
                         *[None] * len(layer.blobs))
        return (None, *grads)


def _relu_backward(helper: BufferBackward, x: torch.Tensor, final: torch.Tensor,
                   grad: torch.Tensor) -> tuple:
    slope = helper.layer.lp.relu_param.negative_slope
    own = x.numel()
    count = final.numel()
    g = grad.reshape(-1).clone()
    n = min(count, own)
    mask = final[:n] > 0
    g[:n] = g[:n] * (mask.to(g.dtype) + slope * (~mask).to(g.dtype))
    buf = helper.buffer
    if count > own and buf.diff is not None and buf.diff.numel() >= count:
        # the cells past the layer's own count belong to the diff buffer only
        d = buf.diff[own:count]
        m = final[own:count] > 0
        d.copy_(d * (m.to(d.dtype) + slope * (~m).to(d.dtype)))
    return (g.view(x.shape),)


def _scale_backward(layer: Layer, x: torch.Tensor, count: int, grad: torch.Tensor,
                    needs: tuple[bool, ...]) -> tuple:
    axis, pshape = layer.axis, tuple(layer.param_shape)
    outer = math.prod(x.shape[:axis])
    dim = math.prod(pshape)
    inner = x.numel() // max(outer * dim, 1)
    scale = layer.blobs[0].detach()
    gx = grad * layer.expand(scale, grad)
    out = [gx]
    # temp_ holds the input; caffe_mul over the blob's count (its final shape) turns its first
    # cells into top_diff * input; the sums then run over the layer's own outer x dim x inner
    product = x.reshape(-1).clone()
    n = min(count, product.numel())
    product[:n] = grad.reshape(-1)[:n] * product[:n]
    out.append(product.view(outer, dim, inner).sum((0, 2)).view(pshape) if needs[0] else None)
    if layer.lp.scale_param.bias_term:
        out.append(grad.reshape(outer, dim, inner).sum((0, 2)).view(pshape)
                   if len(needs) > 1 and needs[1] else None)
    return tuple(out)


def _batch_norm_backward(saved: list[torch.Tensor], count: int, grad: torch.Tensor) -> torch.Tensor:
    """BatchNormLayer::Backward_cpu with batch statistics, spatial_dim taken from ``count``."""
    x, std, y = saved
    num, channels = x.shape[0], x.shape[1]
    own = x.numel()
    spatial_own = own // (num * channels)
    spatial = count // (num * channels)
    if spatial > spatial_own:
        # Caffe would read past spatial_sum_multiplier_ and x_norm_: undefined, not replayed
        spatial = spatial_own
    rows = num * channels
    used = rows * spatial
    top_diff = grad.reshape(-1)
    top_data = y.reshape(-1)
    temp = std.view(1, channels, 1).expand(num, channels, spatial_own).reshape(-1)
    bottom = top_data * top_diff                                      # caffe_mul(temp_.count())
    sums = bottom[:used].view(rows, spatial).sum(1)                   # gemv over spatial_dim
    mean = sums.view(num, channels).sum(0)                            # gemv over num
    bottom[:used] = mean.repeat(num).view(rows, 1).expand(rows, spatial).reshape(-1)
    bottom = top_data * bottom                                        # caffe_mul(temp_.count())
    sums = top_diff[:used].view(rows, spatial).sum(1)
    mean = sums.view(num, channels).sum(0)
    bottom[:used] += mean.repeat(num).view(rows, 1).expand(rows, spatial).reshape(-1)
    bottom = top_diff - bottom / float(num * spatial)                 # axpby(1, -1/(num*sd))
    return (bottom / temp).view(x.shape)
