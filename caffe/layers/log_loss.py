"""Logarithmic losses beside SoftmaxWithLoss: InfogainLoss (softmax, then a gain-weighted log loss)
and MultinomialLogisticLoss (log loss on given probabilities)."""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import model_io
from ..functional import infogain_loss, multinomial_logistic_loss
from .base import Layer, Shape, register
from .loss import ignore_label_of, normalization_mode


@register("InfogainLoss")
class InfogainLoss(Layer):
    """-sum_l H[label, l] log(max(p_l, 1e-20)) / normalizer, p the softmax of the scores over
    ``infogain_loss_param.axis``; H (C x C) is the third bottom or read from the binaryproto
    ``infogain_loss_param.source``. ``loss_param``: ignore_label, normalization (default VALID; the
    legacy ``normalize`` is refused, as Caffe does). A second top gives the probabilities."""

    min_bottoms, max_bottoms, min_tops, max_tops = 2, 3, 1, 2
    is_loss = True

    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        if lp.loss_param.HasField("normalize"):
            raise self.error("loss_param.normalize is deprecated here; use normalization")
        self.register_buffer("infogain", torch.empty(0), persistent=False)
        if len(lp.bottom) < 3:
            source = lp.infogain_loss_param.source
            if not source:
                raise self.error("infogain_loss_param.source (the H matrix) must be given when H "
                                 "is not a third bottom")
            h = model_io.blobproto_to_array(model_io.read_blobproto(source))
            self.infogain = torch.from_numpy(np.ascontiguousarray(h, dtype=np.float32))

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        scores, label = bottom_shapes[:2]
        self.axis = self.canonical_axis(self.lp.infogain_loss_param.axis, len(scores))
        outer, inner = math.prod(scores[:self.axis]), math.prod(scores[self.axis + 1:])
        if math.prod(label) != outer * inner:
            raise self.error(f"label count {math.prod(label)} (shape {label}) must equal the number "
                             f"of predictions {outer * inner} (scores {scores}, axis {self.axis})")
        classes = scores[self.axis]
        h_count = math.prod(bottom_shapes[2]) if len(bottom_shapes) > 2 else self.infogain.numel()
        if h_count != classes * classes:
            raise self.error(f"H must be {classes} x {classes}, it has {h_count} entries")
        return [()] if len(self.lp.top) == 1 else [(), tuple(scores)]

    def allow_force_backward(self, bottom_index: int) -> bool:
        """Neither the labels nor H take a gradient."""
        return bottom_index == 0

    def forward(self, scores: torch.Tensor, label: torch.Tensor, *h: torch.Tensor) -> list[torch.Tensor]:
        infogain = h[0] if h else self.infogain
        classes = scores.shape[self.axis]
        ignore = ignore_label_of(self.lp)
        lab = label.detach()
        valid = lab if ignore is None else lab[lab != ignore]
        if valid.numel() and bool(((valid < 0) | (valid >= classes)).any()):
            bad = valid[(valid < 0) | (valid >= classes)][0].item()
            raise self.error(f"label {bad:g} is outside [0, {classes}) (classes of the scores)")
        loss = infogain_loss(scores, label, infogain, self.axis, ignore, normalization_mode(self.lp))
        if len(self.lp.top) == 2:
            return [loss, torch.softmax(scores, dim=self.axis).detach()]
        return [loss]


@register("MultinomialLogisticLoss")
class MultinomialLogisticLoss(Layer):
    """-sum log(max(p[label], 1e-20)) / N over probabilities N x C (x 1 x 1); the gradient at the
    label is -1 / (N * max(p, 1e-20)) even where the clamp holds, as Caffe's."""

    min_bottoms, max_bottoms, min_tops, max_tops = 2, 2, 1, 1
    is_loss = True

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        prob, label = bottom_shapes
        if math.prod(label) != prob[0] or any(d != 1 for d in label[1:]):
            raise self.error(f"needs one label per sample (N x 1 x 1 x 1 with N = {prob[0]}), got "
                             f"shape {label}")
        return [()]

    def forward(self, prob: torch.Tensor, label: torch.Tensor) -> list[torch.Tensor]:
        classes = math.prod(prob.shape[1:])
        lab = label.detach()
        if bool(((lab < 0) | (lab >= classes)).any()):
            bad = lab[(lab < 0) | (lab >= classes)][0].item()
            raise self.error(f"label {bad:g} is outside [0, {classes})")
        return [multinomial_logistic_loss(prob, label)]
