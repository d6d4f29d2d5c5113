"""Im2col: the patches a convolution would see, as channels (Caffe's layout)."""
from __future__ import annotations

import torch

from ..functional import im2col
from .base import Layer, Shape, register
from .conv import spatial_pair


@register("Im2col")
class Im2col(Layer):
    """``convolution_param``'s kernel, stride, pad and dilation on an N x C x H x W bottom give
    N x (C*kh*kw) x OH x OW, channel (c*kh + i)*kw + j holding input channel c at kernel cell (i, j)."""

    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1

    def setup(self, bottom_shapes: list[Shape]) -> None:
        p = self.lp.convolution_param
        if len(bottom_shapes[0]) != 4:
            raise self.error(f"expects a 4-D bottom (N, C, H, W), got shape {bottom_shapes[0]}")
        if p.axis != 1:
            raise self.error("only axis 1 (NCHW) is supported")
        if p.HasField("kernel_h") != p.HasField("kernel_w"):
            raise self.error("kernel_h and kernel_w must be given together")
        if not p.HasField("kernel_h") and not len(p.kernel_size):
            raise self.error("kernel_size (or kernel_h and kernel_w) is required")
        self.kernel = spatial_pair(p.kernel_size, p.kernel_h, p.kernel_w, p.HasField("kernel_h"), 1,
                                   "kernel_size", self)
        self.stride = spatial_pair(p.stride, p.stride_h, p.stride_w, p.HasField("stride_h"), 1,
                                   "stride", self)
        self.pad = spatial_pair(p.pad, p.pad_h, p.pad_w, p.HasField("pad_h"), 0, "pad", self)
        self.dilation = spatial_pair(p.dilation, 0, 0, False, 1, "dilation", self)

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        n, c, h, w = bottom_shapes[0]
        out = [(size + 2 * self.pad[i] - (self.dilation[i] * (self.kernel[i] - 1) + 1))
               // self.stride[i] + 1 for i, size in enumerate((h, w))]
        return [(n, c * self.kernel[0] * self.kernel[1], *out)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [im2col(x, self.kernel, self.stride, self.pad, self.dilation)]
