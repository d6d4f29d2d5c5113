"""Functional kernels with Caffe's semantics where they differ from PyTorch's defaults.

Layers in ``caffe.layers`` are thin modules over these functions, as torch.nn is over
torch.nn.functional."""
from __future__ import annotations

import math
import weakref
from typing import Sequence

import torch
import torch.nn.functional as F

from . import native
from .native import ptr

FLT_MIN = 1.1754943508222875e-38


def pooled_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe's pooling output size: ceil rounding, then one less if the last window would start
    in the padding (only when pad > 0)."""
    out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _torch_pooled_size(size: int, kernel: int, stride: int, pad: int) -> int:
    out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _ave_divisor(size: int, out: int, kernel: int, stride: int, pad: int) -> torch.Tensor:
    starts = torch.arange(out) * stride - pad
    ends = torch.clamp(starts + kernel, max=size + pad)
    return (ends - starts).to(torch.float32)


def _channels_last_max_pool(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                            pad: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's ceil-mode MAX pooling of ``x`` by its channels-last kernel: (pooled, indices),
    the pooled map in ``x``'s memory format."""
    y, index = F.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last),
                                         kernel, stride, pad, ceil_mode=True)
    if not x.is_contiguous(memory_format=torch.channels_last):
        y = y.contiguous()
    return y, index


def _route_to_maxima(grad: torch.Tensor, x: torch.Tensor, index: torch.Tensor, geometry
                     ) -> torch.Tensor:
    """MAX pooling's backward: each pooled gradient to its window's recorded maximum in ``x``."""
    kernel, stride, pad = geometry
    return torch.ops.aten.max_pool2d_with_indices_backward(_like_input(grad, x), x, kernel,
                                                           stride, pad, (1, 1), True, index)


class _ChannelsLastMaxPool2d(torch.autograd.Function):
    """MAX pooling (ceil mode) computed by PyTorch's channels-last CPU kernel, which is
    vectorised over channels, unlike its NCHW kernel (bench/RESULTS.md, engine ablation: the SSE
    training steps 1.04-1.07x faster); the output keeps the input's memory format. Backward routes each output gradient to
    the recorded first maximum of its window (Caffe's rule; both kernels record the same
    indices), in the input's memory format."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                pad: tuple[int, int]) -> torch.Tensor:
        y, index = _channels_last_max_pool(x, kernel, stride, pad)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(x, index)
            ctx.geometry = (kernel, stride, pad)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, index = ctx.saved_tensors
        return _route_to_maxima(grad, x, index, ctx.geometry), None, None, None


def _like_input(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The pooled gradient in the memory format of the pooling's input ``x``. PyTorch's MAX pooling
    backward picks its kernel from the gradient's format and converts the input gradient to it
    and back: an NCHW gradient (the reshape in front of a full-map convolution gives one) cost a
    copy of the input gradient each way, where converting the pooled gradient is a quarter of one."""
    if (x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)):
        return grad.contiguous(memory_format=torch.channels_last)
    return grad


class _ReLUInPlace(torch.autograd.Function):
    """ReLU written over its input, with a backward that may write over its incoming gradient.

    The solver's step runs Caffe's in-place ReLU (top == bottom) on a tensor no other layer reads
    (``Net`` checks that), so overwriting it saves the output buffer and half the memory traffic
    of the pass. ``grad_in_place``: the gradient that reaches the backward is a fresh tensor owned
    by nobody else (the input gradient of a convolution, the ReLU output's only reader), so the
    mask is applied in it instead of into a new tensor. Same values as ``F.relu`` and its autograd
    (``threshold_backward`` on the output)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, grad_in_place: bool) -> torch.Tensor:
        x.relu_()
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        ctx.grad_in_place = grad_in_place
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (y,) = ctx.saved_tensors
        if (ctx.grad_in_place and grad.shape == y.shape
                and (grad.is_contiguous() or grad.is_contiguous(memory_format=torch.channels_last))):
            return torch.ops.aten.threshold_backward.grad_input(grad, y, 0, grad_input=grad), None
        return torch.ops.aten.threshold_backward(grad, y, 0), None


class _ReLUMaxPool2d(torch.autograd.Function):
    """An in-place ReLU (as ``_ReLUInPlace``) and the channels-last MAX pooling that is the only
    reader of its output, with one backward: the pooled gradient is masked where the pooled output
    is 0, then routed to the recorded maxima. Each maximum is the ReLU output at the position it
    routes to, so this mask is the ReLU's own and the sums are the same, in the same order; the
    mask pass then covers the pooled map (a quarter of the input or less) instead of the ReLU's
    input, and no separate gradient of the ReLU's input is made."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                pad: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        x.relu_()
        ctx.mark_dirty(x)
        ctx.set_materialize_grads(False)
        y, index = _channels_last_max_pool(x, kernel, stride, pad)
        ctx.save_for_backward(x, y, index)
        ctx.geometry = (kernel, stride, pad)
        return x, y

    @staticmethod
    def backward(ctx, grad_x: torch.Tensor | None, grad_y: torch.Tensor | None):
        x, y, index = ctx.saved_tensors
        dx = None
        if grad_y is not None:
            masked = torch.ops.aten.threshold_backward(_like_input(grad_y, x), y, 0)
            dx = _route_to_maxima(masked, x, index, ctx.geometry)
        if grad_x is not None:
            direct = torch.ops.aten.threshold_backward(grad_x, x, 0)
            dx = direct if dx is None else dx + direct
        return dx, None, None, None


def relu_max_pool2d(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                    pad: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """ReLU written over ``x``, then Caffe's MAX pooling of it: (x, pooled). Recorded as one
    autograd node (``_ReLUMaxPool2d``) where the pooling is PyTorch's own ceil-mode kernel on a 4-D
    CPU tensor; otherwise ``relu_`` and ``pool2d``."""
    h, w = x.shape[-2:]
    if (torch.is_grad_enabled() and x.requires_grad and x.device.type == "cpu" and x.dim() == 4
            and _native_pooling(h, w, kernel, stride, pad)):
        return _ReLUMaxPool2d.apply(x, tuple(kernel), tuple(stride), tuple(pad))
    x = relu_(x)
    return x, pool2d(x, "MAX", kernel, stride, pad)


class _ConcatShiftedNegation(torch.autograd.Function):
    """The Concat of ``x`` and ``shift - x`` along ``axis`` (HoloNet's CReLU: a Power with scale
    -1 and its bottom, concatenated) as one node: (Concat's top, Power's top). The backward is
    one subtraction of the two halves of the gradient, the exact value of the plain graph's
    negation of the second half added to the first, in one pass instead of two."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, shift: float, axis: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        negated = torch.rsub(x, shift)
        ctx.mark_non_differentiable(negated)
        ctx.set_materialize_grads(False)
        ctx.split = (axis, x.shape[axis])
        return torch.cat((x, negated), dim=axis), negated

    @staticmethod
    def backward(ctx, grad: torch.Tensor | None, _negated_grad: None):
        if grad is None:
            return None, None, None
        axis, size = ctx.split
        return torch.sub(grad.narrow(axis, 0, size), grad.narrow(axis, size, size)), None, None


def concat_shifted_negation(x: torch.Tensor, shift: float, axis: int
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Caffe's Concat of ``x`` and Power(scale -1, ``shift``, power 1) of ``x`` along ``axis``:
    (the Concat's top, the Power's top), one autograd node (``_ConcatShiftedNegation``)."""
    return _ConcatShiftedNegation.apply(x, float(shift), axis)


class ConcatChain:
    """The buffer of a chain of channel Concats in which each appends to the previous one's top
    (a DenseNet block): the last one's channels (channels-last unless ``memory_format`` says
    otherwise), allocated at the chain's first step of each forward. Each step copies only its
    new bottoms into it and yields the prefix up to them (``concat_chain``), instead of copying
    every earlier channel again (quadratic in the block's length).

    The chain also keeps the batch statistics of the buffer's channels as training BatchNorms
    compute them (``batch_stats``): every BatchNorm of a block reads a prefix of the buffer, and
    a channel's mean and variance are the same for all of them, so each computes only the
    channels added since the previous one.

    Backward, the steps' gradients live in one buffer too (``grad_parts``): each step hands
    its head (the previous top) a prefix of that buffer as its gradient, and a BatchNorm that
    alone reads that top besides the next step (``accumulate_at``, set by the net) adds its
    input gradient into the prefix in place (``grad_target``) instead of returning a tensor that
    autograd would then add to it into a new one."""

    _live: "weakref.WeakSet[ConcatChain]" = weakref.WeakSet()

    def __init__(self, total: int, memory_format: torch.memory_format = torch.channels_last
                 ) -> None:
        self.total = total
        self.memory_format = memory_format
        self.buffer: torch.Tensor | None = None
        self.last: torch.Tensor | None = None
        self._stats = torch.empty(2, total)  # mean and variance of the buffer's channels
        self._known = 0  # channels of the buffer whose statistics _stats holds
        self.accumulate_at: set[int] = set()  # tops (by channels) that grad_target may serve
        self.grad: torch.Tensor | None = None  # the gradient buffer of the running backward
        self._head = 0  # channels of the prefix of grad last handed to a head, 0: none
        ConcatChain._live.add(self)

    def start(self, buffer: torch.Tensor | None) -> None:
        """Take ``buffer`` (None: none) for this forward; the statistics and the gradient
        buffer of the last are void."""
        self.buffer = buffer
        self.last = None
        self._known = 0
        self.grad = None
        self._head = 0

    @classmethod
    def holding(cls, x: torch.Tensor) -> ConcatChain | None:
        """The chain whose current buffer ``x`` is a channel prefix of (a step's top), or None."""
        if x.dim() != 4:
            return None
        start = x.data_ptr()  # a prefix starts where its buffer does
        for chain in list(cls._live):
            b = chain.buffer
            if (b is not None and b.data_ptr() == start and x.stride() == b.stride()
                    and x.dtype == b.dtype and x.device == b.device
                    and x.shape[0] == b.shape[0] and x.shape[2:] == b.shape[2:]
                    and x.shape[1] <= b.shape[1]):
                return chain
        return None

    def batch_stats(self, rows: torch.Tensor, lib) -> torch.Tensor:
        """The mean and biased variance of the first ``rows.shape[1]`` channels of the buffer,
        given as its (N H W) x C rows view: rows 0 and 1 of a (2 x total) float tensor, of which
        those channels come first. The C kernels ``lib`` sum only the channels not summed
        before in this forward. Their sums split the rows between threads by the rows alone,
        so the values are those of one pass over all the channels, bit for bit."""
        channels = rows.shape[1]
        if channels > self._known:
            new = rows[:, self._known:]
            offset = self._known * self._stats.element_size()
            lib.bn_cl_stats(ptr(new), new.shape[0], new.shape[1], new.stride(0),
                            torch.get_num_threads(), ptr(self._stats) + offset,
                            ptr(self._stats, 1) + offset)
            self._known = channels
        return self._stats

    def _holds_grad(self, grad: torch.Tensor, channels: int) -> bool:
        """Whether ``grad`` is the gradient buffer's first ``channels`` channels."""
        g = self.grad
        return (g is not None and grad.shape[1] == channels and grad.data_ptr() == g.data_ptr()
                and grad.stride() == g.stride() and grad.shape[0] == g.shape[0]
                and grad.shape[2:] == g.shape[2:])

    def grad_parts(self, grad: torch.Tensor, sizes: Sequence[int], has_head: bool
                   ) -> tuple[torch.Tensor, ...]:
        """A step's backward: ``grad`` (of its top, ``sum(sizes)`` channels) split along the
        channels as views of the gradient buffer. The buffer is the last step's incoming
        gradient itself where that is dense and fills its whole storage (a fresh gradient,
        which autograd hands to this backward alone; else a copy of it); a later
        (earlier-in-the-block) step's gradient is normally the prefix it handed out, already
        complete, and anything else is copied into that prefix first. The first step's
        backward lets the buffer go (its parts keep it while they are needed)."""
        channels = sum(sizes)
        if not self._holds_grad(grad, channels):
            if (channels == self.total and grad.storage_offset() == 0
                    and grad.untyped_storage().nbytes() == grad.numel() * grad.element_size()
                    and grad.is_contiguous(memory_format=self.memory_format)):
                self.grad = grad
            else:
                if (self.grad is None or self.grad.shape[0] != grad.shape[0]
                        or self.grad.shape[2:] != grad.shape[2:]):
                    self.grad = torch.empty((grad.shape[0], self.total) + tuple(grad.shape[2:]),
                                            dtype=grad.dtype, device=grad.device,
                                            memory_format=self.memory_format)
                self.grad[:, :channels].copy_(grad)
        parts = self.grad[:, :channels].split(list(sizes), dim=1)
        self._head = sizes[0] if has_head else 0
        if not has_head:
            self.grad = None
        return parts

    def grad_target(self, x: torch.Tensor) -> torch.Tensor | None:
        """Where the gradient of ``x``, a top of this chain that ``accumulate_at`` names, may be
        added in place: the (N H W) x C rows of the gradient buffer's prefix that the next step
        handed to that top in this backward; None when it has not (yet)."""
        channels = x.shape[1]
        if self.grad is None or self._head != channels or channels not in self.accumulate_at:
            return None
        return _channel_rows(self.grad[:, :channels])

    def append(self, start: int, new: Sequence[torch.Tensor]) -> torch.Tensor:
        """Copy ``new`` into the buffer from channel ``start`` on; the prefix up to them."""
        for x in new:
            self.buffer[:, start:start + x.shape[1]].copy_(x)
            start += x.shape[1]
        self.last = self.prefix(start)
        return self.last

    def prefix(self, channels: int) -> torch.Tensor:
        """The buffer's first ``channels`` channels as a tensor of its own (not a view: its own
        version counter, so that a BatchNorm that saved an earlier prefix for its backward does
        not see the later steps' writes into the channels after it as changes)."""
        n, _, h, w = self.buffer.shape
        out = self.buffer.new_empty(0)
        return out.set_(self.buffer.untyped_storage(), self.buffer.storage_offset(),
                        (n, channels, h, w), self.buffer.stride())


class _ConcatChainStep(torch.autograd.Function):
    """One step of a ``ConcatChain``: ``head`` (the previous step's top, or None at the first
    step) and the ``new`` tensors, concatenated along the channels in the chain's buffer. Its
    backward is Concat's: the incoming gradient split along the channels, in the chain's
    gradient buffer (``ConcatChain.grad_parts``)."""

    @staticmethod
    def forward(ctx, chain: ConcatChain, head: torch.Tensor | None, *new: torch.Tensor
                ) -> torch.Tensor:
        start = 0 if head is None else head.shape[1]
        ctx.sizes = ([] if head is None else [start]) + [x.shape[1] for x in new]
        ctx.has_head = head is not None
        ctx.chain = chain
        return chain.append(start, new)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        parts = ctx.chain.grad_parts(grad, ctx.sizes, ctx.has_head)
        return (None,) + (parts if ctx.has_head else (None,) + parts)


def _fits(buffer: torch.Tensor, start: int, new: Sequence[torch.Tensor]) -> bool:
    """Whether ``new`` go into ``buffer`` from channel ``start`` on (batch, map size, dtype and
    device as the buffer's; no more channels than it has)."""
    return (all(x.dim() == 4 and x.shape[0] == buffer.shape[0] and x.shape[2:] == buffer.shape[2:]
                and x.dtype == buffer.dtype and x.device == buffer.device for x in new)
            and start + sum(x.shape[1] for x in new) <= buffer.shape[1])


def concat_chain(chain: ConcatChain, first: bool, xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The channel Concat of ``xs`` as a step of ``chain``: the first step allocates the buffer
    and copies every bottom; a later one, whose first bottom is the previous step's top, copies
    the others after it. Anything else (another first bottom, a bottom that does not fit the
    buffer) is a plain ``torch.cat`` and ends the chain for this forward."""
    head = xs[0]
    if first:
        buffer = None
        if all(x.dim() == 4 for x in xs) and sum(x.shape[1] for x in xs) <= chain.total:
            n, _, h, w = head.shape
            buffer = torch.empty((n, chain.total, h, w), dtype=head.dtype, device=head.device,
                                 memory_format=chain.memory_format)
            start, new, head = 0, xs, None
        chain.start(buffer)
    elif chain.last is not None and head is chain.last:
        start, new = head.shape[1], xs[1:]
    else:
        chain.start(None)
    if chain.buffer is None or not _fits(chain.buffer, start, new):
        chain.start(None)
        return torch.cat(tuple(xs), dim=1)
    if torch.is_grad_enabled() and any(x.requires_grad for x in xs):
        return _ConcatChainStep.apply(chain, head, *new)
    return chain.append(start, new)


CACHE_LINE_BYTES = 64
NATIVE_BATCH_NORM_MIN = 1 << 21
NATIVE_BATCH_NORM_RELU_MIN = 1 << 18  # with the ReLU inside, smaller tensors gain too


def _channels_last_cpu(x: torch.Tensor) -> bool:
    """A 4-D CPU tensor in channels-last memory (and not also NCHW-contiguous): dense, or the
    first channels of a wider channels-last buffer (``concat_chain``), whose positions then lie
    further apart than its channel count."""
    return (x.device.type == "cpu" and x.dim() == 4 and not x.is_contiguous()
            and (x.is_contiguous(memory_format=torch.channels_last)
                 or _channel_rows_view(x) is not None))


def _shared_reduction_lines(x: torch.Tensor) -> bool:
    """Whether PyTorch's channels-last CPU BatchNorm would have its threads write the same cache
    lines. Its kernels sum each channel into one row of C values per thread, the rows side by
    side; a row whose length is not a whole number of 64-byte lines shares a line with the next
    thread's, and every input row then moves that line between the cores: with two threads its
    backward ran slower than with one for 8-24 float channels (HoloNet's first blocks).
    bench/results/engine_ablation.md ("PyTorch BatchNorm") measures what avoiding it is worth in
    the training step."""
    if not _channels_last_cpu(x) or torch.get_num_threads() < 2:
        return False
    row = x.shape[1] * x.element_size()
    return row % CACHE_LINE_BYTES != 0 and row < 4 * CACHE_LINE_BYTES


def _dense(x: torch.Tensor) -> torch.Tensor:
    """A channel prefix of a wider channels-last buffer copied out dense, for PyTorch's kernels
    (which would take a slower loop with other rounding for it); any other tensor as it is."""
    if (x.dim() == 4 and not x.is_contiguous(memory_format=torch.channels_last)
            and _channels_last_cpu(x)):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _channel_rows(x: torch.Tensor) -> torch.Tensor:
    """A channels-last N x C x H x W tensor as its (N H W) x C matrix (a view, its rows
    ``stride(0)`` values apart; a copy for other layouts)."""
    rows = _channel_rows_view(x)
    return rows if rows is not None else x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _channel_rows_view(x: torch.Tensor) -> torch.Tensor | None:
    """The (N H W) x C matrix view of a 4-D tensor whose channels are adjacent in memory and
    whose positions lie one fixed stride apart, at least C values, or None."""
    try:
        rows = x.permute(0, 2, 3, 1).view(-1, x.shape[1])
    except RuntimeError:
        return None
    if (rows.shape[1] > 1 and rows.stride(1) != 1) or (rows.shape[0] > 1
                                                       and rows.stride(0) < rows.shape[1]):
        return None
    return rows


def _channel_sums(rows: torch.Tensor, width: int = 1024) -> torch.Tensor:
    """Per-channel sums of an (M x C) matrix: its rows folded k at a time into (M/k) x (k C)
    rows of about ``width`` values, summed by one matrix-vector product (BLAS splits it by rows,
    without shared partial sums), and the k partial sums of each channel added. A product over the
    unfolded matrix, C values per row, ran several times slower for C under 32."""
    m, c = rows.shape
    k = max(1, width // c)
    while m % k:
        k -= 1
    folded = rows.reshape(m // k, k * c)
    return torch.mv(folded.t(), folded.new_ones(m // k)).view(k, c).sum(0)


def _native_batch_norm_kernels(x: torch.Tensor):
    """caffe/csrc/batch_norm_channels_last.c for a float32 CPU tensor, or None."""
    if x.dtype != torch.float32:
        return None
    return native.library("batch_norm_channels_last")


def _batch_stats(rows: torch.Tensor, lib) -> torch.Tensor:
    """Per-channel mean and biased variance E((x - mean)^2) of an (M x C) matrix, the two rows of
    a (2 x C) tensor: by the C kernels ``lib`` (summed in double, rounded once) or, when None,
    by PyTorch."""
    count, channels = rows.shape
    if lib is not None:
        stats = rows.new_empty(2, channels)
        lib.bn_cl_stats(ptr(rows), count, channels, rows.stride(0), torch.get_num_threads(),
                        ptr(stats), ptr(stats, 1))
        return stats
    mean = _channel_sums(rows) / count
    centered = rows - mean
    return torch.stack((mean, _channel_sums(centered * centered) / count))


def _plain_array(t: torch.Tensor | None) -> torch.Tensor | None:
    """A per-channel vector as the C kernels read it (contiguous); None stays None."""
    return t if t is None else t.contiguous()


def _update_running(running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                    mean: torch.Tensor, var: torch.Tensor, count: int, momentum: float) -> None:
    """Move the running buffers towards the batch's statistics as ``F.batch_norm`` does (the
    variance unbiased)."""
    with torch.no_grad():
        if running_mean is not None:
            running_mean.lerp_(mean, momentum)
        if running_var is not None:
            running_var.lerp_(var * (count / max(count - 1, 1)), momentum)


class _ChannelsLastBatchNorm(torch.autograd.Function):
    """BatchNorm of a channels-last tensor, seen as its (N H W) x C matrix, optionally with the
    ReLU after it. With caffe/csrc's kernels: the channel sums in one pass, the per-channel
    coefficients in one small call, the normalisation (and ReLU) in one pass; backward the two
    channel sums in one pass, the coefficients, the input gradient in one pass (few PyTorch
    calls in between: a hundred BatchNorms per DenseNet step made their small per-channel
    operations a measurable share of it). Without them the sums are folded matrix-vector
    products and the normalisation PyTorch's fixed-statistics kernel (no ReLU: ``batch_norm``
    then applies it). Training normalises with the batch mean and biased variance,
    E((x - mean)^2) as Caffe computes it, and moves the running buffers as ``F.batch_norm``
    does (unbiased variance). Backward, the formulas of ``native_batch_norm_backward``:
    training, dx = w invstd (dy - mean(dy) - (x - mean) invstd^2 mean(dy (x - mean))); fixed
    statistics, dx = w invstd dy; dw = invstd sum(dy (x - mean)), db = sum(dy); with the ReLU,
    dy where the output is > 0."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, running_mean: torch.Tensor | None,
                running_var: torch.Tensor | None, weight: torch.Tensor | None,
                bias: torch.Tensor | None, training: bool, momentum: float, eps: float,
                relu: bool) -> torch.Tensor:
        lib = _native_batch_norm_kernels(x)
        rows = _channel_rows(x)
        count, channels = rows.shape
        chain = ConcatChain.holding(x) if lib is not None else None
        if lib is not None:
            weight, bias = (_plain_array(t) for t in (weight, bias))
            coef = x.new_empty(5, channels)  # mean, var, invstd, a, b (bn_cl_coefficients)
            if training:
                stats = chain.batch_stats(rows, lib) if chain is not None else _batch_stats(
                    rows, lib)
                lib.bn_cl_coefficients(ptr(stats), ptr(stats, 1), ptr(weight), ptr(bias), eps,
                                       channels, ptr(coef))
                _update_running(running_mean, running_var, coef[0], coef[1], count, momentum)
            else:
                mean, var = _plain_array(running_mean), _plain_array(running_var)  # kept alive
                lib.bn_cl_coefficients(ptr(mean), ptr(var), ptr(weight), ptr(bias), eps,
                                       channels, ptr(coef))
            y = torch.empty_like(x, memory_format=torch.channels_last)
            lib.bn_cl_affine(ptr(rows), count, channels, rows.stride(0), ptr(coef, 3),
                             ptr(coef, 4), int(relu), torch.get_num_threads(), ptr(y))
        else:
            if training:
                mean, var = _batch_stats(rows, None)
                _update_running(running_mean, running_var, mean, var, count, momentum)
            else:
                mean, var = running_mean, running_var
            invstd = 1.0 / torch.sqrt(var + eps)  # not rsqrt, which is not exact at 1
            coef = torch.stack((mean, var, invstd))
            y = torch.native_batch_norm(x, weight, bias, mean, var, False, 0.0, eps)[0]
        ctx.save_for_backward(x, weight, coef)
        ctx.lib = lib
        ctx.chain = chain
        ctx.training = training
        ctx.relu = relu and lib is not None
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, coef = ctx.saved_tensors
        need_x, _, _, need_w, need_b = ctx.needs_input_grad[:5]
        rows = _channel_rows(x)
        dy = _channel_rows(grad.contiguous(memory_format=torch.channels_last))
        if ctx.lib is None:
            dx, dw, db = _batch_norm_backward_torch(dy, rows, weight, coef, ctx.training, need_x)
        else:
            dx, dw, db = _batch_norm_backward_native(ctx, dy, rows, x, weight, coef, need_x)
        if dx is not None:
            n, c, h, w = x.shape
            dx = dx.view(n, h, w, c).permute(0, 3, 1, 2)
        return (dx, None, None, dw if need_w else None,
                db if need_b and ctx.has_bias else None, None, None, None, None)


def _batch_norm_backward_native(ctx, dy: torch.Tensor, rows: torch.Tensor, x: torch.Tensor,
                                weight: torch.Tensor | None, coef: torch.Tensor, need_x: bool):
    """_ChannelsLastBatchNorm's backward by the C kernels: dx as (M x C) rows (None when not
    needed or added into the chain's gradient buffer, which autograd passes on), dw, db."""
    lib = ctx.lib
    count, channels = rows.shape
    threads = torch.get_num_threads()
    mask = (ptr(coef, 3), ptr(coef, 4)) if ctx.relu else (None, None)
    grads = dy.new_empty(6, channels)  # sum_dy, dot, k, p, q, dw (bn_cl_grad_coefficients)
    lib.bn_cl_grad_sums(ptr(dy), ptr(rows), count, channels, rows.stride(0), ptr(coef), *mask,
                        threads, ptr(grads))
    lib.bn_cl_grad_coefficients(ptr(coef), ptr(weight), count, int(ctx.training), channels,
                                ptr(grads))
    dx = None
    if need_x:
        target = ctx.chain.grad_target(x) if ctx.chain is not None else None
        if ctx.training or ctx.relu or target is not None:
            out = torch.empty(rows.shape, dtype=rows.dtype) if target is None else target
            lib.bn_cl_grad_input(ptr(dy), ptr(rows), count, channels, rows.stride(0),
                                 ptr(grads, 2), ptr(grads, 3), ptr(grads, 4), *mask, threads,
                                 ptr(out), out.stride(0), int(target is not None))
            dx = out if target is None else None
        else:
            dx = dy * grads[2]
    return dx, grads[5], grads[0]


def _batch_norm_backward_torch(dy: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor | None,
                               coef: torch.Tensor, training: bool, need_x: bool):
    """_ChannelsLastBatchNorm's backward by PyTorch's operators: dx as (M x C) rows (None when
    not needed), dw, db."""
    mean, invstd = coef[0], coef[2]
    sum_dy, dot = _channel_sums(dy), _channel_sums((rows - mean) * dy)
    scale = invstd if weight is None else invstd * weight
    dx = None
    if need_x:
        if training:
            count = dy.shape[0]
            p = -(invstd * invstd * dot / count) * scale
            q = -(sum_dy / count) * scale - p * mean
            dx = torch.addcmul(q, rows, p).addcmul_(dy, scale)
        else:
            dx = dy * scale
    return dx, dot * invstd, sum_dy


def batch_norm(x: torch.Tensor, running_mean: torch.Tensor | None,
               running_var: torch.Tensor | None, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-5, relu: bool = False, relu_grad_in_place: bool = False
               ) -> torch.Tensor:
    """``F.batch_norm``, or ``_ChannelsLastBatchNorm`` for a channels-last CPU tensor that will be
    differentiated, where PyTorch's kernels would have their threads share cache lines
    (``_shared_reduction_lines``) or where caffe/csrc's kernels are built and the tensor has at
    least ``NATIVE_BATCH_NORM_MIN`` values, ``NATIVE_BATCH_NORM_RELU_MIN`` with ``relu`` (below
    that the fixed cost of the extra calls outweighs the passes they save). ``relu``: the in-place
    ReLU after it too (``relu_`` with ``relu_grad_in_place``), inside the C kernels where they
    run."""
    given = [t for t in (running_mean, running_var, weight, bias) if t is not None]
    candidate = (torch.is_grad_enabled() and _channels_last_cpu(x)
                 and all(t.dtype == x.dtype for t in given)  # not under autocast (bf16 x)
                 and (training or (running_mean is not None and running_var is not None))
                 and any(t is not None and t.requires_grad for t in (x, weight, bias)))
    lib = _native_batch_norm_kernels(x) if candidate else None
    fused = False
    if candidate and (_shared_reduction_lines(x) or (
            lib is not None
            and x.numel() >= (NATIVE_BATCH_NORM_RELU_MIN if relu else NATIVE_BATCH_NORM_MIN))):
        fused = relu and lib is not None
        y = _ChannelsLastBatchNorm.apply(x if lib is not None else _dense(x), running_mean,
                                         running_var, weight, bias, training, momentum, eps,
                                         fused)
    else:
        y = F.batch_norm(_dense(x), running_mean, running_var, weight, bias, training, momentum,
                         eps)
    return relu_(y, relu_grad_in_place) if relu and not fused else y


def relu_(x: torch.Tensor, grad_in_place: bool = False) -> torch.Tensor:
    """ReLU over ``x`` itself (see ``_ReLUInPlace``); a plain ``relu_`` when nothing records."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _ReLUInPlace.apply(x, grad_in_place)
    return x.relu_()


NATIVE_MAX_POOL_MIN = 1 << 17


def max_pool2d(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
               pad: tuple[int, int]) -> torch.Tensor:
    """PyTorch's ceil-mode MAX pooling, through the channels-last kernel for 4-D CPU tensors, or,
    where nothing is recorded for a backward, caffe/csrc's kernel without indices (the same
    values) for a channels-last float32 tensor, else that channels-last kernel called directly."""
    if x.device.type == "cpu" and x.dim() == 4:
        if not (torch.is_grad_enabled() and x.requires_grad):
            y = _max_pool_no_indices(x, kernel, stride, pad)
            return y if y is not None else _channels_last_max_pool(x, kernel, stride, pad)[0]
        return _ChannelsLastMaxPool2d.apply(x, tuple(kernel), tuple(stride), tuple(pad))
    return F.max_pool2d(x, kernel, stride, pad, ceil_mode=True)


def _max_pool_no_indices(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                         pad: tuple[int, int]) -> torch.Tensor | None:
    """caffe/csrc/max_pool_channels_last.c's pooling of a channels-last float32 CPU tensor, or
    None (another layout or dtype, the kernels not built, or under ``NATIVE_MAX_POOL_MIN``
    window values, where PyTorch's kernel costs less than the call)."""
    if (x.dtype != torch.float32 or x.is_contiguous()
            or not x.is_contiguous(memory_format=torch.channels_last)):
        return None
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    n, c, h, w = x.shape
    oh, ow = _torch_pooled_size(h, kh, sh, ph), _torch_pooled_size(w, kw, sw, pw)
    if n * c * oh * ow * kh * kw < NATIVE_MAX_POOL_MIN:
        return None
    lib = native.library("max_pool_channels_last")
    if lib is None:
        return None
    y = torch.empty((n, c, oh, ow), dtype=x.dtype, memory_format=torch.channels_last)
    lib.maxpool_cl_forward(ptr(x), n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw,
                           torch.get_num_threads(), ptr(y))
    return y


def _native_pooling(h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int],
                    pad: tuple[int, int]) -> bool:
    """Whether PyTorch's ceil-mode pooling has Caffe's output size and accepts the pad."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    return (ph <= kh // 2 and pw <= kw // 2
            and _torch_pooled_size(h, kh, sh, ph) == pooled_size(h, kh, sh, ph)
            and _torch_pooled_size(w, kw, sw, pw) == pooled_size(w, kw, sw, pw))


def pool2d(x: torch.Tensor, method: str, kernel: tuple[int, int], stride: tuple[int, int],
           pad: tuple[int, int]) -> torch.Tensor:
    """MAX or AVE pooling of an NCHW tensor exactly as Caffe computes it.

    AVE divides by the window clipped to [-pad, size + pad), so padded cells count but the overhang
    added by ceil rounding does not. PyTorch's ceil_mode + count_include_pad gives the same whenever
    its output size agrees and its pad limit holds; otherwise the input is padded explicitly."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    h, w = x.shape[-2:]
    oh, ow = pooled_size(h, kh, sh, ph), pooled_size(w, kw, sw, pw)
    native = _native_pooling(h, w, kernel, stride, pad)
    if method == "MAX":
        if native:
            return max_pool2d(x, kernel, stride, pad)
        right_h = max((oh - 1) * sh + kh - ph - h, 0)
        right_w = max((ow - 1) * sw + kw - pw - w, 0)
        padded = F.pad(x, (pw, right_w, ph, right_h), value=float("-inf"))
        return max_pool2d(padded, kernel, stride, (0, 0))[..., :oh, :ow]
    if method == "AVE":
        if native:
            return F.avg_pool2d(x, kernel, stride, pad, ceil_mode=True, count_include_pad=True)
        right_h = max((oh - 1) * sh + kh - ph - h, 0)
        right_w = max((ow - 1) * sw + kw - pw - w, 0)
        padded = F.pad(x, (pw, right_w, ph, right_h))
        summed = F.avg_pool2d(padded, kernel, stride, divisor_override=1)[..., :oh, :ow]
        divisor = _ave_divisor(h, oh, kh, sh, ph)[:, None] * _ave_divisor(w, ow, kw, sw, pw)[None, :]
        return summed / divisor.to(x.device, x.dtype)
    raise ValueError(f"unsupported pooling method {method}")


def _per_position(scores: torch.Tensor, label: torch.Tensor, axis: int, ignore_label: int | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores as (outer, channels, inner), labels as (outer, inner), the mask of non-ignored
    positions and the labels with ignored ones replaced by 0 (safe to gather with)."""
    axis = axis % scores.dim()
    outer = math.prod(scores.shape[:axis])
    inner = math.prod(scores.shape[axis + 1:])
    s = scores.reshape(outer, scores.shape[axis], inner)
    lab = label.reshape(outer, inner).to(torch.long)
    valid = torch.ones_like(lab, dtype=torch.bool) if ignore_label is None else lab != ignore_label
    safe = torch.where(valid, lab, torch.zeros_like(lab)).clamp(0, scores.shape[axis] - 1)
    return s, lab, valid, safe


def caffe_softmax_loss(scores: torch.Tensor, label: torch.Tensor, axis: int, ignore_label: int | None,
                       normalization: str) -> torch.Tensor:
    """SoftmaxWithLoss: -sum(log(max(p, FLT_MIN))) over non-ignored positions, divided by the
    normalizer of ``normalization`` (FULL, VALID, BATCH_SIZE, NONE), clamped to at least 1. The
    gradient is Caffe's p - onehot even where the clamp holds (a saturated softmax still learns)."""
    logits, lab, valid, safe = _per_position(scores, label, axis, ignore_label)
    outer, inner = lab.shape
    logp = F.log_softmax(logits, dim=1)
    logp = logp + (logp.detach().clamp(min=math.log(FLT_MIN)) - logp.detach())
    picked = logp.gather(1, safe[:, None, :])[:, 0, :]
    total = -(picked * valid).sum()
    if normalization == "FULL":
        norm = float(outer * inner)
    elif normalization == "VALID":
        norm = valid.sum().to(scores.dtype)
    elif normalization == "BATCH_SIZE":
        norm = float(outer)
    else:
        norm = 1.0
    if isinstance(norm, torch.Tensor):
        return total / norm.clamp(min=1.0)
    return total / max(norm, 1.0)


def caffe_accuracy(scores: torch.Tensor, label: torch.Tensor, axis: int, top_k: int,
                   ignore_label: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Caffe's Accuracy: a sample is right when fewer than ``top_k`` classes score >= the true
    class (ties count against it). Returns (accuracy, per-class accuracy)."""
    s, _, valid, safe = _per_position(scores, label, axis, ignore_label)
    channels = s.shape[1]
    true_score = s.gather(1, safe[:, None, :])
    rank = (s >= true_score).sum(dim=1)
    correct = (rank <= top_k) & valid
    count = valid.sum()
    acc = correct.sum().to(scores.dtype) / count.clamp(min=1).to(scores.dtype)
    per_class_hits = torch.zeros(channels, dtype=scores.dtype, device=scores.device)
    per_class_count = torch.zeros(channels, dtype=scores.dtype, device=scores.device)
    per_class_hits.index_add_(0, safe[valid], correct[valid].to(scores.dtype))
    per_class_count.index_add_(0, safe[valid], torch.ones_like(safe[valid], dtype=scores.dtype))
    per_class = torch.where(per_class_count > 0, per_class_hits / per_class_count.clamp(min=1),
                            torch.zeros_like(per_class_hits))
    return acc, per_class


LOG_THRESHOLD = 1e-20


def swish(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Swish: x * sigmoid(beta * x)."""
    return x * torch.sigmoid(x * beta)


def reduction(x: torch.Tensor, axis: int, operation: str, coeff: float) -> torch.Tensor:
    """Caffe's Reduction: reduce every axis from ``axis`` on (not only that axis) with SUM, ASUM,
    SUMSQ or MEAN, times ``coeff``; the result has shape ``x.shape[:axis]``."""
    flat = x.reshape(*x.shape[:axis], -1)
    if operation == "SUM":
        y = flat.sum(dim=-1)
    elif operation == "MEAN":
        y = flat.sum(dim=-1) / max(flat.shape[-1], 1)
    elif operation == "ASUM":
        y = flat.abs().sum(dim=-1)
    elif operation == "SUMSQ":
        y = (flat * flat).sum(dim=-1)
    else:
        raise ValueError(f"unknown reduction operation {operation}")
    return y * coeff if coeff != 1 else y


class _MVN(torch.autograd.Function):
    """Mean-variance normalisation over the last axis of a (groups, dim) matrix with Caffe's
    gradient: (dy - mean(dy) - y * mean(y * dy)) / (sigma + eps), which leaves out the factor
    (sigma + eps) / sigma of the exact gradient (they differ when eps is not negligible)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> torch.Tensor:
        centred = x - x.mean(dim=1, keepdim=True)
        sigma = (centred * centred).mean(dim=1, keepdim=True).sqrt() + eps
        y = centred / sigma
        ctx.save_for_backward(y, sigma)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        y, sigma = ctx.saved_tensors
        dx = grad - grad.mean(dim=1, keepdim=True) - y * (y * grad).mean(dim=1, keepdim=True)
        return dx / sigma, None


def mvn(x: torch.Tensor, across_channels: bool, normalize_variance: bool, eps: float) -> torch.Tensor:
    """Caffe's MVN on an N x C x ... blob: subtract the mean over each channel's map (over C x H x W
    with ``across_channels``) and divide by the biased standard deviation plus ``eps``."""
    groups = x.shape[0] if across_channels else x.shape[0] * x.shape[1]
    flat = x.reshape(groups, -1)
    if normalize_variance:
        return _MVN.apply(flat, eps).reshape(x.shape)
    return (flat - flat.mean(dim=1, keepdim=True)).reshape(x.shape)


def im2col(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int],
           dilation: tuple[int, int]) -> torch.Tensor:
    """Caffe's Im2col on N x C x H x W: N x (C*kh*kw) x OH x OW, channel (c*kh + i)*kw + j."""
    kh, kw = kernel
    oh = (x.shape[2] + 2 * pad[0] - (dilation[0] * (kh - 1) + 1)) // stride[0] + 1
    ow = (x.shape[3] + 2 * pad[1] - (dilation[1] * (kw - 1) + 1)) // stride[1] + 1
    cols = F.unfold(x, kernel, dilation=dilation, padding=pad, stride=stride)
    return cols.reshape(x.shape[0], -1, oh, ow)


def spp_geometry(height: int, width: int, level: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Kernel (= stride) and pad of SPP level ``level`` (2^level bins per side) for an H x W map."""
    bins = 2 ** level
    kh, kw = math.ceil(height / bins), math.ceil(width / bins)
    return (kh, kw), ((kh * bins - height + 1) // 2, (kw * bins - width + 1) // 2)


def spp(x: torch.Tensor, pyramid_height: int, method: str) -> torch.Tensor:
    """Spatial pyramid pooling: level l pools into 2^l x 2^l bins with Caffe's pooling; the levels
    are flattened per sample and concatenated, level 0 first. One level: the plain pooled map."""
    levels = []
    for level in range(pyramid_height):
        kernel, pad = spp_geometry(x.shape[2], x.shape[3], level)
        pooled = pool2d(x, method, kernel, kernel, pad)
        if pyramid_height == 1:
            return pooled
        levels.append(pooled.reshape(x.shape[0], -1))
    return torch.cat(levels, dim=1)


class _LSTMUnit(torch.autograd.Function):
    """One LSTM step as Caffe's LSTMUnit computes it, gradients included: the forget gate is
    cont * sigmoid(x_f) (exactly 0 where cont == 0), and its gradient uses f * (1 - f) of that
    product, as Caffe's Backward does (the exact derivative only for cont in {0, 1})."""

    @staticmethod
    def forward(ctx, c_prev: torch.Tensor, x: torch.Tensor, cont: torch.Tensor):
        hidden = c_prev.shape[-1]
        xi, xf, xo, xg = x.split(hidden, dim=-1)
        i, o, g = torch.sigmoid(xi), torch.sigmoid(xo), torch.tanh(xg)
        cont = cont.unsqueeze(-1)
        f = torch.where(cont == 0, torch.zeros_like(xf), cont * torch.sigmoid(xf))
        c = f * c_prev + i * g
        tanh_c = torch.tanh(c)
        ctx.save_for_backward(c_prev, i, f, o, g, tanh_c)
        return c, o * tanh_c

    @staticmethod
    def backward(ctx, c_diff: torch.Tensor, h_diff: torch.Tensor):
        c_prev, i, f, o, g, tanh_c = ctx.saved_tensors
        if c_diff is None:
            c_diff = torch.zeros_like(c_prev)
        if h_diff is None:
            h_diff = torch.zeros_like(c_prev)
        c_term = c_diff + h_diff * o * (1 - tanh_c * tanh_c)
        dx = torch.cat([c_term * g * i * (1 - i), c_term * c_prev * f * (1 - f),
                        h_diff * tanh_c * o * (1 - o), c_term * i * (1 - g * g)], dim=-1)
        return c_term * f, dx, None


def lstm_unit(c_prev: torch.Tensor, x: torch.Tensor, cont: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Caffe's LSTMUnit: ``c_prev`` (1, N, H), gate inputs ``x`` (1, N, 4H) in the order i, f, o, g,
    ``cont`` (1, N) (never differentiated). Returns (c, h)."""
    return _LSTMUnit.apply(c_prev, x, cont.detach())


def loss_normalizer(mode: str, outer: int, inner: int, valid: int | None) -> float:
    """LossParameter's normalizer: FULL outer*inner, VALID the non-ignored count (all positions
    when nothing is counted), BATCH_SIZE outer, NONE 1; at least 1."""
    if mode == "FULL" or (mode == "VALID" and valid is None):
        norm = outer * inner
    elif mode == "VALID":
        norm = valid
    elif mode == "BATCH_SIZE":
        norm = outer
    else:
        norm = 1
    return float(max(norm, 1))


class _InfogainLoss(torch.autograd.Function):
    """-sum_l H[label, l] * log(max(p_l, 1e-20)) / normalizer over the softmax p of the scores,
    with Caffe's gradient p * sum(H[label, :]) - H[label, :] (not cut where p is clamped)."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, label: torch.Tensor, infogain: torch.Tensor, axis: int,
                ignore_label: int | None, normalization: str) -> torch.Tensor:
        outer = math.prod(scores.shape[:axis])
        inner = math.prod(scores.shape[axis + 1:])
        channels = scores.shape[axis]
        prob = torch.softmax(scores.reshape(outer, channels, inner), dim=1)
        lab = label.reshape(outer, inner).to(torch.long)
        valid = torch.ones_like(lab, dtype=torch.bool) if ignore_label is None else lab != ignore_label
        safe = torch.where(valid, lab, torch.zeros_like(lab))
        rows = infogain.reshape(channels, channels)[safe]             # outer, inner, channels
        rows = rows.permute(0, 2, 1) * valid[:, None, :]
        loss = -(rows * prob.clamp(min=LOG_THRESHOLD).log()).sum()
        norm = loss_normalizer(normalization, outer, inner, int(valid.sum()))
        ctx.save_for_backward(prob, rows, valid)
        ctx.norm, ctx.shape = norm, scores.shape
        return loss / norm

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        prob, rows, valid = ctx.saved_tensors
        dx = (prob * rows.sum(dim=1, keepdim=True) - rows) * valid[:, None, :]
        return (dx * (grad / ctx.norm)).reshape(ctx.shape), None, None, None, None, None


def infogain_loss(scores: torch.Tensor, label: torch.Tensor, infogain: torch.Tensor, axis: int,
                  ignore_label: int | None, normalization: str) -> torch.Tensor:
    """Caffe's InfogainLoss (softmax inside); labels and H get no gradient."""
    return _InfogainLoss.apply(scores, label.detach(), infogain.detach(), axis, ignore_label,
                               normalization)


class _MultinomialLogisticLoss(torch.autograd.Function):
    """-sum log(max(p[label], 1e-20)) / N with Caffe's gradient -1 / (N * max(p, 1e-20)) at the
    label (not cut where p is clamped)."""

    @staticmethod
    def forward(ctx, prob: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        flat = prob.reshape(prob.shape[0], -1)
        picked = flat.gather(1, label.reshape(-1, 1).to(torch.long)).clamp(min=LOG_THRESHOLD)
        ctx.save_for_backward(picked, label)
        ctx.shape = prob.shape
        return -picked.log().sum() / prob.shape[0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        picked, label = ctx.saved_tensors
        num = ctx.shape[0]
        dx = torch.zeros((num, math.prod(ctx.shape[1:])), dtype=picked.dtype, device=picked.device)
        dx.scatter_(1, label.reshape(-1, 1).to(torch.long), -grad / (num * picked))
        return dx.reshape(ctx.shape), None


def multinomial_logistic_loss(prob: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Caffe's MultinomialLogisticLoss on probabilities N x C x ...; labels get no gradient."""
    return _MultinomialLogisticLoss.apply(prob, label.detach())


def hinge_loss(scores: torch.Tensor, label: torch.Tensor, norm: str) -> torch.Tensor:
    """Caffe's HingeLoss: sum over samples and classes of max(0, 1 + s*x)^p / N, s = -1 at the
    true class and +1 elsewhere, p = 1 (L1) or 2 (L2)."""
    flat = scores.reshape(scores.shape[0], -1)
    sign = torch.ones_like(flat).scatter_(1, label.detach().reshape(-1, 1).to(torch.long), -1.0)
    margin = torch.relu(1 + sign * flat)
    total = margin.sum() if norm == "L1" else (margin * margin).sum()
    return total / scores.shape[0]


class _ContrastiveLoss(torch.autograd.Function):
    """Caffe's ContrastiveLoss with its gradients (the dissimilar-pair gradient of the current
    version divides by d + 1e-4)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, similar: torch.Tensor, margin: float,
                legacy: bool) -> torch.Tensor:
        diff = (a - b).reshape(a.shape[0], -1)
        dist_sq = (diff * diff).sum(dim=1)
        sim = similar.reshape(-1).to(torch.int64) != 0
        if legacy:
            dissimilar = torch.clamp(margin - dist_sq, min=0)
        else:
            dissimilar = torch.clamp(margin - dist_sq.sqrt(), min=0) ** 2
        loss = torch.where(sim, dist_sq, dissimilar).sum() / a.shape[0] / 2
        ctx.save_for_backward(diff, dist_sq, sim)
        ctx.margin, ctx.legacy, ctx.shape = margin, legacy, a.shape
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        diff, dist_sq, sim = ctx.saved_tensors
        alpha = grad / ctx.shape[0]
        if ctx.legacy:
            mdist = ctx.margin - dist_sq
            beta = -alpha * torch.ones_like(dist_sq)
        else:
            dist = dist_sq.sqrt()
            mdist = ctx.margin - dist
            beta = -alpha * mdist / (dist + 1e-4)
        coeff = torch.where(sim, alpha.expand_as(dist_sq),
                            torch.where(mdist > 0, beta, torch.zeros_like(beta)))
        da = (coeff[:, None] * diff).reshape(ctx.shape)
        return da, -da, None, None, None


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, similar: torch.Tensor, margin: float,
                     legacy: bool) -> torch.Tensor:
    """Similar pairs add d^2, dissimilar ones max(margin - d, 0)^2 (legacy: max(margin - d^2, 0)),
    divided by 2N; the similarity labels get no gradient."""
    return _ContrastiveLoss.apply(a, b, similar.detach(), margin, legacy)
