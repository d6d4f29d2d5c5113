"""Embed: a lookup table, top = weight[index] (+ bias), the top shaped bottom.shape + (num_output,)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Layer, Shape, register


@register("Embed")
class Embed(Layer):
    """Weight ``input_dim`` x ``num_output`` (Caffe's layout), optional bias; the indices must be
    integers in [0, input_dim) and get no gradient; repeated indices add up in the weight's."""

    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1

    def setup(self, bottom_shapes: list[Shape]) -> None:
        p = self.lp.embed_param
        if p.num_output <= 0:
            raise self.error("embed_param.num_output must be positive")
        if p.input_dim <= 0:
            raise self.error("embed_param.input_dim must be positive")
        if len(self.blobs):
            return
        self.add_blob((p.input_dim, p.num_output), p.weight_filler)
        if p.bias_term:
            self.add_blob((p.num_output,), p.bias_filler)

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return [tuple(bottom_shapes[0]) + (self.lp.embed_param.num_output,)]

    def allow_force_backward(self, bottom_index: int) -> bool:
        """The indices take no gradient."""
        return False

    def forward(self, index: torch.Tensor) -> list[torch.Tensor]:
        values = index.detach()
        idx = values.to(torch.long)
        k = self.lp.embed_param.input_dim
        if idx.numel():
            bad = (idx < 0) | (idx >= k) | (idx.to(values.dtype) != values)
            if bool(bad.any()):
                raise self.error(f"index {values[bad][0].item():g} is not an integer in [0, {k})")
        y = F.embedding(idx, self.blobs[0])
        return [y + self.blobs[1] if len(self.blobs) > 1 else y]
