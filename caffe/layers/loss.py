"""Softmax, the loss layers (SoftmaxWithLoss, EuclideanLoss, SigmoidCrossEntropyLoss) and the
non-differentiable readouts Accuracy and ArgMax."""
from __future__ import annotations

import math

import torch

from ..functional import caffe_accuracy, caffe_softmax_loss
from .base import Layer, Shape, register

_NORMALIZATION = {0: "FULL", 1: "VALID", 2: "BATCH_SIZE", 3: "NONE"}


def normalization_mode(lp, default: str = "VALID") -> str:
    """LossParameter's mode: ``normalization`` if given, else legacy ``normalize`` (false means
    BATCH_SIZE), else the layer's default (VALID; SigmoidCrossEntropyLoss: BATCH_SIZE)."""
    p = lp.loss_param
    if p.HasField("normalization"):
        return _NORMALIZATION[p.normalization]
    if p.HasField("normalize"):
        return "VALID" if p.normalize else "BATCH_SIZE"
    return default


def ignore_label_of(lp) -> int | None:
    return lp.loss_param.ignore_label if lp.loss_param.HasField("ignore_label") else None


@register("Softmax")
class Softmax(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        self.axis = self.canonical_axis(self.lp.softmax_param.axis, len(bottom_shapes[0]))
        return [bottom_shapes[0]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.softmax(x, dim=self.axis)]


class _Loss(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 2, 2, 1, 1
    is_loss = True

    def check_labels(self, label: torch.Tensor, classes: int) -> None:
        """Labels must be class indices in [0, classes) unless ignored (Caffe CHECKs this)."""
        ignore = ignore_label_of(self.lp)
        valid = label if ignore is None else label[label != ignore]
        if valid.numel() and (bool((valid < 0).any()) or bool((valid >= classes).any())):
            bad = valid[(valid < 0) | (valid >= classes)][0].item()
            raise self.error(f"label {bad:g} is outside [0, {classes}) (classes of the scores)")

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return [()]


@register("SoftmaxWithLoss")
class SoftmaxWithLoss(_Loss):
    """Softmax over ``softmax_param.axis`` and multinomial logistic loss, normalised as
    ``loss_param`` says. A second top (the probabilities) is allowed here."""

    max_tops = 2

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        scores, label = bottom_shapes
        self.axis = self.canonical_axis(self.lp.softmax_param.axis, len(scores))
        outer = math.prod(scores[:self.axis])
        inner = math.prod(scores[self.axis + 1:])
        if math.prod(label) != outer * inner:
            raise self.error(f"label count {math.prod(label)} (shape {label}) must equal the number "
                             f"of predictions {outer * inner} (scores {scores}, axis {self.axis})")
        self.normalization = normalization_mode(self.lp)
        self.ignore_label = ignore_label_of(self.lp)
        return [()] if len(self.lp.top) == 1 else [(), scores]

    def forward(self, scores: torch.Tensor, label: torch.Tensor) -> list[torch.Tensor]:
        self.check_labels(label, scores.shape[self.axis])
        loss = caffe_softmax_loss(scores, label, self.axis, self.ignore_label, self.normalization)
        if len(self.lp.top) == 2:
            return [loss, torch.softmax(scores, dim=self.axis).detach()]
        return [loss]


@register("EuclideanLoss")
class EuclideanLoss(_Loss):
    def allow_force_backward(self, bottom_index: int) -> bool:
        """Both bottoms are data here (Caffe's EuclideanLossLayer allows both)."""
        return True

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        a, b = bottom_shapes
        if math.prod(a[1:]) != math.prod(b[1:]) or a[0] != b[0]:
            raise self.error(f"bottoms must have the same count per sample: {a} vs {b}")
        return [()]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        return [((a - b.reshape(a.shape)) ** 2).sum() / (2.0 * a.shape[0])]


@register("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLoss(_Loss):
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
        target = target.reshape(logits.shape)
        ignore = ignore_label_of(self.lp)
        valid = torch.ones_like(target, dtype=torch.bool) if ignore is None else target != ignore
        per = torch.nn.functional.binary_cross_entropy_with_logits(logits, target.clamp(0, 1),
                                                                   reduction="none") * valid
        mode = normalization_mode(self.lp, default="BATCH_SIZE")
        if mode == "FULL":
            norm = float(logits.numel())
        elif mode == "VALID":
            norm = float(valid.sum())
        elif mode == "BATCH_SIZE":
            norm = float(logits.shape[0])
        else:
            norm = 1.0
        return [per.sum() / max(norm, 1.0)]


@register("Accuracy")
class Accuracy(Layer):
    """Top-k accuracy with Caffe's tie rule; optional second top with per-class accuracy."""

    min_bottoms, max_bottoms, min_tops, max_tops = 2, 2, 1, 2

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        p = self.lp.accuracy_param
        scores, label = bottom_shapes
        self.axis = self.canonical_axis(p.axis, len(scores))
        self.top_k = p.top_k
        if self.top_k > scores[self.axis]:
            raise self.error(f"top_k {self.top_k} exceeds the {scores[self.axis]} classes")
        outer = math.prod(scores[:self.axis])
        inner = math.prod(scores[self.axis + 1:])
        if math.prod(label) != outer * inner:
            raise self.error(f"label count {math.prod(label)} must equal {outer * inner} predictions")
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None
        return [()] if len(self.lp.top) == 1 else [(), (scores[self.axis],)]

    @torch.no_grad()
    def forward(self, scores: torch.Tensor, label: torch.Tensor) -> list[torch.Tensor]:
        acc, per_class = caffe_accuracy(scores, label, self.axis, self.top_k, self.ignore_label)
        return [acc] if len(self.lp.top) == 1 else [acc, per_class]


@register("ArgMax")
class ArgMax(Layer):
    """Indices (or values, or both) of the ``top_k`` largest entries, over ``axis`` or over all
    but the first axis."""

    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        p = self.lp.argmax_param
        shape = bottom_shapes[0]
        self.has_axis = p.HasField("axis")
        if self.has_axis:
            self.axis = self.canonical_axis(p.axis, len(shape))
            out = list(shape)
            out[self.axis] = p.top_k
            return [tuple(out)]
        n = shape[0]
        return [(n, 2 if p.out_max_val else 1, p.top_k)]

    @staticmethod
    def _top_k(x: torch.Tensor, k: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k largest values along ``dim`` and their indices, in Caffe's order: it sorts
        (value, index) pairs descending, so equal values go to the higher index first."""
        last = x.shape[dim] - 1
        values, flipped = torch.sort(x.flip(dim), dim=dim, descending=True, stable=True)
        return values.narrow(dim, 0, k), last - flipped.narrow(dim, 0, k)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p = self.lp.argmax_param
        if self.has_axis:
            values, idx = self._top_k(x, p.top_k, self.axis)
            return [values if p.out_max_val else idx.to(x.dtype)]
        values, idx = self._top_k(x.reshape(x.shape[0], -1), p.top_k, 1)
        if p.out_max_val:
            return [torch.stack([idx.to(x.dtype), values], dim=1)]
        return [idx.to(x.dtype)[:, None, :]]
