"""Input: tops whose data the user sets (``net.blobs[name].data[...] = x`` or ``forward(name=x)``)."""
from __future__ import annotations

import torch

from .base import Layer, Shape, register


@register("Input")
class Input(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 0, 0, 1, None
    feeds_from_blobs = True

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        shapes = [tuple(int(d) for d in s.dim) for s in self.lp.input_param.shape]
        n = len(self.lp.top)
        if len(shapes) == 1:
            return shapes * n
        if len(shapes) != n:
            raise self.error(f"{len(shapes)} shapes given for {n} tops (give one, or one per top)")
        return shapes

    def forward(self) -> list[torch.Tensor]:
        raise RuntimeError("Input layers are fed through their blobs")
