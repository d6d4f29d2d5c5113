"""Pooling (MAX, AVE) with Caffe's ceil rounding and padded AVE divisor; ``global_pooling``."""
from __future__ import annotations

import torch

from ..functional import pool2d, pooled_size, relu_max_pool2d
from .base import Layer, Shape, register
from .conv import spatial_pair

_METHODS = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}


@register("Pooling")
class Pooling(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 2

    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        p = lp.pooling_param
        self.method = _METHODS[p.pool]
        if self.method == "STOCHASTIC":
            raise self.error("STOCHASTIC pooling is not supported")
        if len(lp.top) == 2 and self.method != "MAX":
            raise self.error("a mask top is only produced by MAX pooling")
        self.global_pooling = p.global_pooling
        if not self.global_pooling:
            has_k = p.HasField("kernel_size") or p.HasField("kernel_h")
            if not has_k:
                raise self.error("kernel_size (or kernel_h and kernel_w) is required")
        self.kernel = (p.kernel_h, p.kernel_w) if p.HasField("kernel_h") else (p.kernel_size,) * 2
        self.stride = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride,) * 2
        self.pad = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad,) * 2
        if self.global_pooling and (any(self.pad) or self.stride != (1, 1)):
            raise self.error("global pooling takes no pad and stride 1")
        if any(pd >= k for pd, k in zip(self.pad, self.kernel)) and not self.global_pooling:
            raise self.error(f"pad {self.pad} must be smaller than kernel {self.kernel}")

    def _geometry(self, shape: Shape) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        if self.global_pooling:
            return (shape[2], shape[3]), (1, 1), (0, 0)
        return self.kernel, self.stride, self.pad

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        shape = bottom_shapes[0]
        if len(shape) != 4:
            raise self.error(f"expects a 4-D bottom, got shape {shape}")
        k, s, p = self._geometry(shape)
        out = (shape[0], shape[1], pooled_size(shape[2], k[0], s[0], p[0]),
               pooled_size(shape[3], k[1], s[1], p[1]))
        if min(out[2:]) < 1:
            raise self.error(f"kernel {k} does not fit the input {tuple(shape[2:])} with pad {p}: "
                             f"the output would be {out[2:]}")
        return [out] * len(self.lp.top)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        k, s, p = self._geometry(tuple(x.shape))
        y = pool2d(x, self.method, k, s, p)
        if len(self.lp.top) == 2:
            return [y, self._mask(x, k, s, p, y)]
        return [y]

    def fuses_relu(self) -> bool:
        """Whether ``forward_after_relu`` may run it: MAX pooling without a mask top."""
        return self.method == "MAX" and len(self.lp.top) == 1

    def forward_after_relu(self, x: torch.Tensor) -> list[torch.Tensor]:
        """An in-place ReLU over ``x`` and this pooling of it as one autograd node
        (``functional.relu_max_pool2d``), for a Net that knows this pooling is the ReLU top's only
        reader: [ReLU top, pooled]."""
        k, s, p = self._geometry(tuple(x.shape))
        return list(relu_max_pool2d(x, k, s, p))

    def _mask(self, x: torch.Tensor, k, s, p, y: torch.Tensor) -> torch.Tensor:
        """Caffe's MAX mask top: the flat H*W index of each window's maximum."""
        w = x.shape[-1]
        _, arg = torch.nn.functional.max_pool2d(
            torch.nn.functional.pad(x, (p[1], p[1] + k[1], p[0], p[0] + k[0]), value=float("-inf")),
            k, s, return_indices=True)
        arg = arg[..., :y.shape[2], :y.shape[3]]
        pw = w + 2 * p[1] + k[1]
        row, col = arg // pw - p[0], arg % pw - p[1]
        return (row * w + col).to(x.dtype).detach()
