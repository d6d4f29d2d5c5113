"""Caffe's weight fillers (FillerParameter): constant, uniform, gaussian, xavier, msra, bilinear,
positive_unitball. Fan-in is ``count / shape[0]`` and fan-out ``count / shape[1]``, as in Caffe."""
from __future__ import annotations

import math

import torch

from .errors import NetError

VARIANCE_NORM_FAN_IN, VARIANCE_NORM_FAN_OUT, VARIANCE_NORM_AVERAGE = 0, 1, 2


def _fan_n(shape: tuple[int, ...], variance_norm: int) -> float:
    count = math.prod(shape)
    fan_in = count / shape[0] if shape else 1
    fan_out = count / shape[1] if len(shape) > 1 else count
    if variance_norm == VARIANCE_NORM_FAN_OUT:
        return fan_out
    if variance_norm == VARIANCE_NORM_AVERAGE:
        return (fan_in + fan_out) / 2.0
    return fan_in


def _bilinear(shape: tuple[int, ...]) -> torch.Tensor:
    """Upsampling kernel for Deconvolution, the same for every (out, in) pair."""
    if len(shape) != 4 or shape[2] != shape[3]:
        raise NetError(f"bilinear filler needs a 4-D blob with square kernels, got {shape}")
    k = shape[3]
    f = math.ceil(k / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    idx = torch.arange(k, dtype=torch.float64)
    w1 = 1 - torch.abs(idx / f - c)
    return (w1[:, None] * w1[None, :]).to(torch.float32).expand(shape).clone()


def fill(shape: tuple[int, ...], filler, generator: torch.Generator | None = None) -> torch.Tensor:
    """A new float32 tensor of ``shape`` filled as the FillerParameter ``filler`` asks."""
    kind = filler.type if filler is not None else "constant"
    out = torch.empty(shape, dtype=torch.float32)
    if kind == "constant":
        return out.fill_(filler.value if filler is not None else 0.0)
    if kind == "uniform":
        return out.uniform_(filler.min, filler.max, generator=generator)
    if kind == "gaussian":
        out.normal_(filler.mean, filler.std, generator=generator)
        if filler.sparse >= 0:
            if len(shape) < 2:
                raise NetError("gaussian filler with sparse needs a blob of at least 2 axes")
            prob = filler.sparse / shape[0]
            keep = torch.rand(shape, generator=generator) < prob
            out.mul_(keep)
        return out
    if kind == "xavier":
        scale = math.sqrt(3.0 / _fan_n(shape, filler.variance_norm))
        return out.uniform_(-scale, scale, generator=generator)
    if kind == "msra":
        std = math.sqrt(2.0 / _fan_n(shape, filler.variance_norm))
        return out.normal_(0.0, std, generator=generator)
    if kind == "positive_unitball":
        out.uniform_(0.0, 1.0, generator=generator)
        flat = out.view(shape[0], -1)
        flat.div_(flat.sum(dim=1, keepdim=True))
        return out
    if kind == "bilinear":
        return _bilinear(shape)
    raise NetError(f"unknown filler type '{kind}' (known: constant, uniform, gaussian, xavier, msra, "
                   "positive_unitball, bilinear)")
