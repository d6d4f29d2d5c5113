"""Functional kernels with Caffe's semantics where they differ from PyTorch's defaults.

Layers in ``caffe.layers`` are thin modules over these functions, as torch.nn is over
torch.nn.functional."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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


class _ChannelsLastMaxPool2d(torch.autograd.Function):
    """MAX pooling (ceil mode) computed by PyTorch's channels-last CPU kernel, which is
    vectorised over channels, unlike its NCHW kernel (bench/RESULTS.md, engine ablation: the SSE
    training steps 1.04-1.07x faster); the output keeps the input's memory format. Backward routes each output gradient to
    the recorded first maximum of its window (Caffe's rule; both kernels record the same
    indices), in the input's memory format."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                pad: tuple[int, int]) -> torch.Tensor:
        y, index = F.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last),
                                             kernel, stride, pad, ceil_mode=True)
        if not x.is_contiguous(memory_format=torch.channels_last):
            y = y.contiguous()
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(x, index)
            ctx.geometry = (kernel, stride, pad)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, index = ctx.saved_tensors
        kernel, stride, pad = ctx.geometry
        # The kernel lays gradient and indices out in x's memory format itself.
        dx = torch.ops.aten.max_pool2d_with_indices_backward(grad, x, kernel, stride, pad,
                                                             (1, 1), True, index)
        return dx, None, None, None


def max_pool2d(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
               pad: tuple[int, int]) -> torch.Tensor:
    """PyTorch's ceil-mode MAX pooling, through the channels-last kernel for 4-D CPU tensors."""
    if x.device.type == "cpu" and x.dim() == 4:
        return _ChannelsLastMaxPool2d.apply(x, tuple(kernel), tuple(stride), tuple(pad))
    return F.max_pool2d(x, kernel, stride, pad, ceil_mode=True)


def pool2d(x: torch.Tensor, method: str, kernel: tuple[int, int], stride: tuple[int, int],
           pad: tuple[int, int]) -> torch.Tensor:
    """MAX or AVE pooling of an NCHW tensor exactly as Caffe computes it.

    AVE divides by the window clipped to [-pad, size + pad), so padded cells count but the overhang
    added by ceil rounding does not. PyTorch's ceil_mode + count_include_pad gives the same whenever
    its output size agrees and its pad limit holds; otherwise the input is padded explicitly."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    h, w = x.shape[-2:]
    oh, ow = pooled_size(h, kh, sh, ph), pooled_size(w, kw, sw, pw)
    native = (ph <= kh // 2 and pw <= kw // 2 and _torch_pooled_size(h, kh, sh, ph) == oh
              and _torch_pooled_size(w, kw, sw, pw) == ow)
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
    normalizer of ``normalization`` (FULL, VALID, BATCH_SIZE, NONE), clamped to at least 1."""
    logits, lab, valid, safe = _per_position(scores, label, axis, ignore_label)
    outer, inner = lab.shape
    logp = F.log_softmax(logits, dim=1).clamp(min=math.log(FLT_MIN))
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
