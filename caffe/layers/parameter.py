"""Parameter: a learnable blob exposed as a top (Caffe's ParameterLayer)."""
from __future__ import annotations

import torch

from .base import Layer, Shape, register


@register("Parameter")
class Parameter(Layer):
    """Its one top is its blob (``parameter_param.shape``, zeros until set or loaded): writing the
    top writes the parameter, and the top's gradient is the parameter's."""

    min_bottoms, max_bottoms, min_tops, max_tops = 0, 0, 1, 1

    def setup(self, bottom_shapes: list[Shape]) -> None:
        if not len(self.blobs):
            self.add_blob(tuple(int(d) for d in self.lp.parameter_param.shape.dim))

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return [tuple(self.blobs[0].shape)]

    def initial_top_data(self) -> list[torch.Tensor | None]:
        return [self.blobs[0]]

    def forward(self) -> list[torch.Tensor]:
        return [self.blobs[0]]
