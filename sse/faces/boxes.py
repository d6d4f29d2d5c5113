"""Axis-aligned face boxes in pixel coordinates of the full-size frame."""

from __future__ import annotations

from dataclasses import dataclass

import dlib
import numpy as np


@dataclass(frozen=True, slots=True)
class Box:
    """A rectangle [left, right) x [top, bottom) in float pixels."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def size(self) -> float:
        """Side length of the square with the same area (a scale-like measure)."""
        return float(np.sqrt(self.area))

    def iou(self, other: "Box") -> float:
        """Intersection over union with `other` (0 when they do not overlap)."""
        w = min(self.right, other.right) - max(self.left, other.left)
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        if w <= 0 or h <= 0:
            return 0.0
        inter = w * h
        return inter / (self.area + other.area - inter)

    def scaled(self, factor: float) -> "Box":
        """The box with every coordinate multiplied by `factor` (frame resizing)."""
        return Box(self.left * factor, self.top * factor, self.right * factor, self.bottom * factor)

    def visible_fraction(self, width: int, height: int) -> float:
        """Fraction of the box's area inside a width x height frame."""
        clipped = Box(max(0.0, self.left), max(0.0, self.top), min(width, self.right), min(height, self.bottom))
        return clipped.area / self.area if self.area > 0 else 0.0

    def to_dlib(self) -> dlib.rectangle:
        return dlib.rectangle(int(round(self.left)), int(round(self.top)), int(round(self.right)), int(round(self.bottom)))

    @classmethod
    def from_dlib(cls, rect) -> "Box":
        """From a dlib.rectangle or dlib.drectangle."""
        return cls(float(rect.left()), float(rect.top()), float(rect.right()), float(rect.bottom()))

    def as_list(self) -> list[float]:
        return [round(self.left, 1), round(self.top, 1), round(self.right, 1), round(self.bottom, 1)]

    @staticmethod
    def interpolate(a: "Box", b: "Box", t: float) -> "Box":
        """Linear interpolation between `a` (t=0) and `b` (t=1)."""
        return Box(*(x + t * (y - x) for x, y in zip((a.left, a.top, a.right, a.bottom), (b.left, b.top, b.right, b.bottom))))
