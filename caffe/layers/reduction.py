"""Reduction: SUM, ASUM, SUMSQ or MEAN over all axes from ``axis`` on."""
from __future__ import annotations

import torch

from ..functional import reduction
from .base import Layer, Shape, register

_OPS = {1: "SUM", 2: "ASUM", 3: "SUMSQ", 4: "MEAN"}


@register("Reduction")
class Reduction(Layer):
    """Reduces every axis from ``axis`` (default 0) to the end, so the top has shape
    ``bottom.shape[:axis]`` (a 0-d blob for axis 0); the result, and so the gradient, is scaled by
    ``coeff``. ASUM's gradient is coeff * sign(x) with sign(0) = 0."""

    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        p = self.lp.reduction_param
        if p.operation not in _OPS:
            raise self.error(f"unknown reduction operation {p.operation}")
        self.axis = self.canonical_axis(p.axis, len(bottom_shapes[0]))
        return [tuple(bottom_shapes[0][:self.axis])]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p = self.lp.reduction_param
        return [reduction(x, self.axis, _OPS[p.operation], p.coeff)]
