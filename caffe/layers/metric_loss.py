"""Margin losses: HingeLoss (one-vs-all) and ContrastiveLoss (siamese pairs)."""
from __future__ import annotations

import math

import torch

from ..functional import contrastive_loss, hinge_loss
from .base import Layer, Shape, register

_NORMS = {1: "L1", 2: "L2"}


class _MarginLoss(Layer):
    is_loss = True
    max_tops = 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return [()]


@register("HingeLoss")
class HingeLoss(_MarginLoss):
    """sum over samples and classes of max(0, 1 + s*x)^p / N with s = -1 at the true class, +1
    elsewhere; p = 1 (``norm: L1``, default) or 2 (L2). The labels get no gradient."""

    min_bottoms, max_bottoms, min_tops = 2, 2, 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        scores, label = bottom_shapes
        if math.prod(label) != scores[0]:
            raise self.error(f"needs one label per sample ({scores[0]}), got shape {label}")
        return [()]

    def forward(self, scores: torch.Tensor, label: torch.Tensor) -> list[torch.Tensor]:
        classes = math.prod(scores.shape[1:])
        lab = label.detach().reshape(-1)
        if bool(((lab < 0) | (lab >= classes)).any()):
            bad = lab[(lab < 0) | (lab >= classes)][0].item()
            raise self.error(f"label {bad:g} is outside [0, {classes})")
        return [hinge_loss(scores, label, _NORMS[self.lp.hinge_loss_param.norm])]


@register("ContrastiveLoss")
class ContrastiveLoss(_MarginLoss):
    """Bottoms a, b (N x C x 1 x 1) and a similarity label y (N x 1 x 1 x 1): similar pairs add
    d^2 = |a - b|^2, dissimilar ones max(margin - d, 0)^2 (``legacy_version``: max(margin - d^2,
    0)); the total is divided by 2N. Gradients as Caffe's (the dissimilar one divides by d + 1e-4)."""

    min_bottoms, max_bottoms, min_tops = 3, 3, 1

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        a, b, y = bottom_shapes
        if a != b:
            raise self.error(f"the two feature bottoms must have one shape, got {a} and {b}")
        if any(d != 1 for d in a[2:]) or any(d != 1 for d in y[1:]) or y[0] != a[0]:
            raise self.error(f"expects features N x C x 1 x 1 and labels N x 1 x 1 x 1, got {a} "
                             f"and {y}")
        return [()]

    def allow_force_backward(self, bottom_index: int) -> bool:
        """Both feature bottoms take gradients; only the similarity labels (bottom 2) do not."""
        return bottom_index != 2

    def forward(self, a: torch.Tensor, b: torch.Tensor, similar: torch.Tensor) -> list[torch.Tensor]:
        p = self.lp.contrastive_loss_param
        return [contrastive_loss(a, b, similar, p.margin, p.legacy_version)]
