"""InnerProduct: flattens from ``axis``; weight (num_output, K), or (K, num_output) with transpose."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Layer, Shape, register


@register("InnerProduct")
class InnerProduct(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1

    def setup(self, bottom_shapes: list[Shape]) -> None:
        p = self.lp.inner_product_param
        self.num_output = p.num_output
        self.bias_term = p.bias_term
        self.transpose = p.transpose
        if self.num_output <= 0:
            raise self.error("inner_product_param.num_output must be positive")
        self.axis = self.canonical_axis(p.axis, len(bottom_shapes[0]))
        self.k = math.prod(bottom_shapes[0][self.axis:])
        if len(self.blobs):
            return
        wshape = (self.k, self.num_output) if self.transpose else (self.num_output, self.k)
        self.add_blob(wshape, p.weight_filler)
        if self.bias_term:
            self.add_blob((self.num_output,), p.bias_filler)

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        shape = bottom_shapes[0]
        if math.prod(shape[self.axis:]) != self.k:
            raise self.error(f"input size {math.prod(shape[self.axis:])} does not match the "
                             f"weights' {self.k} (bottom shape {shape})")
        return [tuple(shape[:self.axis]) + (self.num_output,)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        flat = x.reshape(*x.shape[:self.axis], self.k)
        weight = self.blobs[0].t() if self.transpose else self.blobs[0]
        return [F.linear(flat, weight, self.blobs[1] if self.bias_term else None)]
