"""MVN: mean-variance normalisation of each channel's map (or of each sample)."""
from __future__ import annotations

import torch

from ..functional import mvn
from .base import Layer, Shape, register


@register("MVN")
class MVN(Layer):
    """y = (x - mean) / (std + eps) over H x W per channel, or over C x H x W with
    ``across_channels``; std is the biased standard deviation and eps (default 1e-9) is added to it,
    not to the variance. ``normalize_variance: false`` only subtracts the mean."""

    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        if len(bottom_shapes[0]) < 2 and not self.lp.mvn_param.across_channels:
            raise self.error(f"needs a bottom with a channel axis, got shape {bottom_shapes[0]}")
        return [bottom_shapes[0]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p = self.lp.mvn_param
        return [mvn(x, p.across_channels, p.normalize_variance, p.eps)]
