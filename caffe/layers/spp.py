"""SPP: spatial pyramid pooling (Caffe's SPPLayer)."""
from __future__ import annotations

import torch

from ..functional import pooled_size, spp, spp_geometry
from .base import Layer, Shape, register

_METHODS = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}


@register("SPP")
class SPP(Layer):
    """``pyramid_height`` levels; level l pools each map into 2^l x 2^l bins (kernel = stride =
    ceil(H / 2^l), pad = (kernel * 2^l - H + 1) / 2, Caffe's pooling rounding). The levels are
    flattened and concatenated per sample, level 0 first: N x C*sum(4^l). With one level the top is
    the pooled N x C x 1 x 1 map itself."""

    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        p = self.lp.spp_param
        shape = bottom_shapes[0]
        if len(shape) != 4:
            raise self.error(f"expects a 4-D bottom (N, C, H, W), got shape {shape}")
        n, c, h, w = shape
        if h <= 0 or w <= 0:
            raise self.error(f"input dimensions cannot be zero, got {shape}")
        if p.pyramid_height < 1:
            raise self.error("spp_param.pyramid_height must be at least 1")
        self.method = _METHODS[p.pool]
        if self.method == "STOCHASTIC":
            raise self.error("STOCHASTIC pooling is not implemented (Caffe's CPU forward aborts too)")
        total = 0
        for level in range(p.pyramid_height):
            (kh, kw), (ph, pw) = spp_geometry(h, w, level)
            if ph >= kh or pw >= kw:
                raise self.error(f"pyramid level {level} on a {h}x{w} map needs pad ({ph}, {pw}) "
                                 f"smaller than its kernel ({kh}, {kw}); use fewer levels")
            oh, ow = pooled_size(h, kh, kh, ph), pooled_size(w, kw, kw, pw)
            if p.pyramid_height == 1:
                return [(n, c, oh, ow)]
            total += c * oh * ow
        return [(n, total)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [spp(x, self.lp.spp_param.pyramid_height, self.method)]
