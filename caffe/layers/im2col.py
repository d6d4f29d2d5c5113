"""Im2col: the patches a convolution would see, as channels (Caffe's layout)."""
from __future__ import annotations

import torch

from ..functional import im2col
from .base import Layer, Shape, register
from .conv import conv_geometry


@register("Im2col")
class Im2col(Layer):
    """``convolution_param``'s kernel, stride, pad and dilation on an N x C x H x W bottom give
    N x (C*kh*kw) x OH x OW, channel (c*kh + i)*kw + j holding input channel c at kernel cell (i, j)."""

    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1

    def setup(self, bottom_shapes: list[Shape]) -> None:
        if len(bottom_shapes[0]) != 4:
            raise self.error(f"expects a 4-D bottom (N, C, H, W), got shape {bottom_shapes[0]}")
        self.kernel, self.stride, self.pad, self.dilation = conv_geometry(
            self.lp.convolution_param, self)

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        n, c, h, w = bottom_shapes[0]
        out = [(size + 2 * self.pad[i] - (self.dilation[i] * (self.kernel[i] - 1) + 1))
               // self.stride[i] + 1 for i, size in enumerate((h, w))]
        return [(n, c * self.kernel[0] * self.kernel[1], *out)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [im2col(x, self.kernel, self.stride, self.pad, self.dilation)]
