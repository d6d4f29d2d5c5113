"""Layers that move data without arithmetic on it (or with a little): Eltwise, Concat, Slice,
Split, Flatten, Reshape, Silence, Tile."""
from __future__ import annotations

import math

import torch

from ..functional import concat_shifted_negation
from .base import Layer, Shape, register

_ELTWISE_OPS = {0: "PROD", 1: "SUM", 2: "MAX"}


@register("Eltwise")
class Eltwise(Layer):
    """PROD, SUM (with per-bottom ``coeff``) or MAX of bottoms of one shape."""

    min_bottoms, max_bottoms, min_tops, max_tops = 2, None, 1, 1

    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        p = lp.eltwise_param
        self.op = _ELTWISE_OPS[p.operation]
        if len(p.coeff) and (self.op != "SUM" or len(p.coeff) != len(lp.bottom)):
            raise self.error("coeff is for SUM only, one per bottom")
        self.coeff = list(p.coeff) or [1.0] * len(lp.bottom)

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        for s in bottom_shapes[1:]:
            if s != bottom_shapes[0]:
                raise self.error(f"bottoms must have one shape, got {bottom_shapes[0]} and {s}")
        return [bottom_shapes[0]]

    def forward(self, *bottoms: torch.Tensor) -> list[torch.Tensor]:
        if self.op == "SUM":
            y = bottoms[0] if self.coeff[0] == 1 else bottoms[0] * self.coeff[0]
            for c, b in zip(self.coeff[1:], bottoms[1:]):
                y = y + b if c == 1 else y + c * b
            return [y]
        if self.op == "PROD":
            y = bottoms[0]
            for b in bottoms[1:]:
                y = y * b
            return [y]
        return [torch.stack(bottoms).max(dim=0).values]


def _legacy_axis(layer: Layer, p, legacy_field: str, default: int, ndim: int) -> int:
    if p.HasField(legacy_field):
        return getattr(p, legacy_field)
    return layer.canonical_axis(p.axis if p.HasField("axis") else default, ndim)


@register("Concat")
class Concat(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 1, None, 1, 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        self.axis = _legacy_axis(self, self.lp.concat_param, "concat_dim", 1, len(bottom_shapes[0]))
        first = bottom_shapes[0]
        total = 0
        for s in bottom_shapes:
            if len(s) != len(first) or s[:self.axis] + s[self.axis + 1:] != first[:self.axis] + first[self.axis + 1:]:
                raise self.error(f"bottoms must match except along axis {self.axis}: {first} vs {s}")
            total += s[self.axis]
        return [first[:self.axis] + (total,) + first[self.axis + 1:]]

    def forward(self, *bottoms: torch.Tensor) -> list[torch.Tensor]:
        return [bottoms[0] if len(bottoms) == 1 else torch.cat(bottoms, dim=self.axis)]

    def forward_with_negation(self, x: torch.Tensor, shift: float) -> list[torch.Tensor]:
        """This Concat of bottoms ``x`` and ``shift - x`` (a Power layer's top that only this
        Concat reads) as one node (``functional.concat_shifted_negation``): [top, Power's top]."""
        return list(concat_shifted_negation(x, shift, self.axis))


@register("Slice")
class Slice(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, None

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        p = self.lp.slice_param
        shape = bottom_shapes[0]
        self.axis = _legacy_axis(self, p, "slice_dim", 1, len(shape))
        n = len(self.lp.top)
        size = shape[self.axis]
        if len(p.slice_point):
            points = list(p.slice_point)
            if len(points) != n - 1 or points != sorted(points) or points[-1] >= size:
                raise self.error(f"slice_point {points} does not split {size} into {n} parts")
            bounds = [0] + points + [size]
            self.sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
        else:
            if size % n:
                raise self.error(f"axis size {size} is not divisible by {n} tops")
            self.sizes = [size // n] * n
        return [shape[:self.axis] + (s,) + shape[self.axis + 1:] for s in self.sizes]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(x, self.sizes, dim=self.axis))


@register("Split")
class Split(Layer):
    """Copies its bottom to every top; gradients of the tops add up."""

    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, None

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return [bottom_shapes[0]] * len(self.lp.top)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x] * len(self.lp.top)


@register("Flatten")
class Flatten(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        p = self.lp.flatten_param
        shape = bottom_shapes[0]
        start = self.canonical_axis(p.axis, len(shape))
        end = self.canonical_axis(p.end_axis, len(shape))
        self.out_shape = shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]
        return [self.out_shape]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p = self.lp.flatten_param
        start = p.axis % x.dim()
        end = p.end_axis % x.dim()
        return [torch.flatten(x, start, end)]


@register("Reshape")
class Reshape(Layer):
    """``shape`` with 0 = copy the bottom's dimension and -1 = infer, over ``axis``/``num_axes``."""

    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        p = self.lp.reshape_param
        shape = bottom_shapes[0]
        ndim = len(shape)
        start = p.axis if p.axis >= 0 else ndim + p.axis + 1
        if not 0 <= start <= ndim:
            raise self.error(f"axis {p.axis} out of range for a {ndim}-D bottom")
        end = ndim if p.num_axes == -1 else start + p.num_axes
        if end > ndim:
            raise self.error(f"axis {p.axis} + num_axes {p.num_axes} exceeds {ndim} axes")
        dims = list(p.shape.dim)
        if dims.count(-1) > 1:
            raise self.error("at most one -1 in shape")
        middle = []
        for i, d in enumerate(dims):
            if d == 0:
                if start + i >= ndim:
                    raise self.error(f"shape dim {i} is 0 but the bottom has no axis {start + i}")
                middle.append(shape[start + i])
            else:
                middle.append(d)
        out = list(shape[:start]) + middle + list(shape[end:])
        if -1 in out:
            known = math.prod(d for d in out if d != -1)
            if known == 0 or math.prod(shape) % known:
                raise self.error(f"cannot infer -1 in {out} for {math.prod(shape)} elements")
            out[out.index(-1)] = math.prod(shape) // known
        if math.prod(out) != math.prod(shape):
            raise self.error(f"shape {tuple(out)} has {math.prod(out)} elements, bottom {shape} "
                             f"has {math.prod(shape)}")
        self.in_shape, self.out_shape = tuple(shape), tuple(out)
        return [self.out_shape]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if tuple(x.shape) != self.in_shape:
            self.reshape([tuple(x.shape)])
        return [x.reshape(self.out_shape)]


@register("Silence")
class Silence(Layer):
    """Consumes its bottoms so they are not net outputs; no tops."""

    min_bottoms, max_bottoms, min_tops, max_tops = 1, None, 0, 0

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return []

    def forward(self, *bottoms: torch.Tensor) -> list[torch.Tensor]:
        return []


@register("Tile")
class Tile(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        p = self.lp.tile_param
        shape = list(bottom_shapes[0])
        self.axis = self.canonical_axis(p.axis, len(shape))
        shape[self.axis] *= p.tiles
        return [tuple(shape)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        reps = [1] * x.dim()
        reps[self.axis] = self.lp.tile_param.tiles
        return [x.repeat(*reps)]
