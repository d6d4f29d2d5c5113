"""Layers that pick part of a bottom: Crop (a window given by offsets and a reference blob's shape),
Filter (the items whose selector is non-zero) and BatchReindex (items by index). Indices,
selectors and the reference blob get no gradient, as in Caffe."""
from __future__ import annotations

import torch

from .base import Layer, Shape, register


@register("Crop")
class Crop(Layer):
    """Crops bottom 0 to the shape of bottom 1 on every axis from ``axis`` on, starting at
    ``offset`` (one value for all those axes, or one per axis; default 0)."""

    min_bottoms, max_bottoms, min_tops, max_tops = 2, 2, 1, 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        p = self.lp.crop_param
        data, ref = bottom_shapes
        if len(ref) != len(data):
            raise self.error(f"bottoms must have the same number of axes: {data} vs {ref}")
        start = self.canonical_axis(p.axis, len(data))
        offsets = list(p.offset)
        if len(offsets) > 1 and start + len(offsets) != len(data):
            raise self.error(f"{len(offsets)} offsets given for the {len(data) - start} axes from "
                             f"axis {start} (give one, or one per axis)")
        self.slices, out = [], []
        for i, size in enumerate(data):
            if i < start:
                self.slices.append(slice(None))
                out.append(size)
                continue
            off = 0 if not offsets else int(offsets[0] if len(offsets) == 1 else offsets[i - start])
            if size - off < ref[i]:
                raise self.error(f"the crop for dimension {i} is out-of-bounds with size {ref[i]} "
                                 f"and offset {off} (bottom size {size})")
            self.slices.append(slice(off, off + ref[i]))
            out.append(ref[i])
        return [tuple(out)]

    def allow_force_backward(self, bottom_index: int) -> bool:
        """The reference blob (bottom 1) only gives the shape: no gradient."""
        return bottom_index == 0

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> list[torch.Tensor]:
        return [x[tuple(self.slices)]]


@register("Filter")
class Filter(Layer):
    """Keeps the items (along axis 0) of each bottom whose entry in the last bottom, the selector
    (N x 1 x ...), is non-zero; the unselected items get a zero gradient. At net build the tops have
    the full batch, as Caffe's first Reshape gives them."""

    min_bottoms, max_bottoms, min_tops, max_tops = 2, None, 1, None

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        if len(self.lp.top) != len(bottom_shapes) - 1:
            raise self.error(f"needs one top per data bottom ({len(bottom_shapes) - 1}), got "
                             f"{len(self.lp.top)}")
        selector = bottom_shapes[-1]
        if any(d != 1 for d in selector[1:]):
            raise self.error(f"selector dimensions must be 1 except the first, got {selector}")
        for s in bottom_shapes[:-1]:
            if s[0] != selector[0]:
                raise self.error(f"each bottom must have the selector's first dimension "
                                 f"{selector[0]}, got {s}")
        return [tuple(s) for s in bottom_shapes[:-1]]

    def allow_force_backward(self, bottom_index: int) -> bool:
        """The selector (the last bottom) takes no gradient."""
        return bottom_index != len(self.lp.bottom) - 1

    def forward(self, *bottoms: torch.Tensor) -> list[torch.Tensor]:
        selector = bottoms[-1].detach().reshape(-1)
        index = torch.nonzero(selector != 0).reshape(-1)
        return [b.index_select(0, index) for b in bottoms[:-1]]


@register("BatchReindex")
class BatchReindex(Layer):
    """Top item i is bottom item ``index[i]`` (bottom 1, 1-D); repeated indices add up their
    gradients."""

    min_bottoms, max_bottoms, min_tops, max_tops = 2, 2, 1, 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        data, index = bottom_shapes
        if len(index) != 1:
            raise self.error(f"the index bottom must be 1-D, got shape {index}")
        return [(index[0],) + tuple(data[1:])]

    def allow_force_backward(self, bottom_index: int) -> bool:
        """The indices (bottom 1) take no gradient."""
        return bottom_index == 0

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> list[torch.Tensor]:
        idx = index.detach().to(torch.long)
        if idx.numel() and (bool((idx < 0).any()) or bool((idx >= x.shape[0]).any())):
            bad = idx[(idx < 0) | (idx >= x.shape[0])][0].item()
            raise self.error(f"index {bad} is outside the bottom's batch [0, {x.shape[0]})")
        return [x.index_select(0, idx)]
