"""Caffe's update rules (sgd_solvers), not torch.optim's: each turns a parameter's gradient, already
divided by iter_size and regularized, into the value subtracted from the parameter, and keeps its
history blobs as Caffe does (what a .solverstate stores).

    SGD       h = momentum*h + lr*g;                     update = h
    Nesterov  h' = momentum*h + lr*g;                    update = (1+momentum)*h' - momentum*h
    AdaGrad   h += g^2;                                  update = lr * g / (sqrt(h) + delta)
    RMSProp   h = rms_decay*h + (1-rms_decay)*g^2;       update = lr * g / (sqrt(h) + delta)
    AdaDelta  h = m*h + (1-m)*g^2;  s = g*sqrt((h2 + delta) / (h + delta));
              h2 = m*h2 + (1-m)*s^2;                     update = lr * s
    Adam      m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  t = iter + 1
              update = lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + delta)

``lr`` is the rate times the parameter's lr_mult. AdaDelta and Adam keep two history blobs per
parameter: the first set (in learnable_params order), then the second set."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import SolverError

f32 = np.float32


class UpdateRule:
    """Base: ``history`` holds ``history_sets`` blobs per learnable parameter."""

    type = ""
    history_sets = 1

    def __init__(self, param) -> None:
        self.param = param
        self.check(param)

    def check(self, param) -> None:
        """Caffe's constructor sanity checks."""

    def compute(self, i: int, g: torch.Tensor, local_rate: float, iteration: int) -> torch.Tensor:
        """The update of parameter ``i`` from its gradient ``g`` (may be modified in place)."""
        raise NotImplementedError

    def update_all(self, params: list[torch.Tensor], diffs: list[torch.Tensor],
                   rates: list[float], decays: list[float]) -> bool:
        """Update every parameter in one go (L2 regularization ``decays``, then the rule with
        ``rates``), where a rule has such a path; False (nothing changed) otherwise."""
        return False

    def bind(self, history: list[torch.Tensor], count: int) -> None:
        """Attach the history blobs (``history_sets * count`` tensors)."""
        self.history = history
        self.count = count


class SGD(UpdateRule):
    type = "SGD"

    def compute(self, i, g, local_rate, iteration):
        h = self.history[i]
        h.mul_(float(f32(self.param.momentum))).add_(g, alpha=local_rate)
        return h

    def update_all(self, params: list[torch.Tensor], diffs: list[torch.Tensor],
                   rates: list[float], decays: list[float]) -> bool:
        """Caffe's L2-regularized SGD step of every parameter at once, where PyTorch's fused CPU
        SGD kernel runs (float32 CPU tensors): ``diff += decay * w; h = momentum * h + rate *
        diff; w -= h`` in one pass over each tensor instead of four (bench/results/vs_bvlc.md,
        issue 19), one call per distinct (rate, decay). That kernel is torch.optim's rule
        ``h = momentum * h + (1 - dampening) * diff; w -= lr * h``: with lr 1 and dampening
        1 - rate it is Caffe's (its fused multiply-adds round within an ulp of the plain path).
        Returns False, having changed nothing, where the kernel is not available, and without
        momentum (the kernel then keeps no history, which Caffe fills with the last update)."""
        fused = getattr(torch, "_fused_sgd_", None)
        if (fused is None or self.param.momentum == 0
                or not all(t.device.type == "cpu" and t.dtype == torch.float32 for t in params)):
            return False
        groups: dict[tuple[float, float], list[int]] = {}
        for i, key in enumerate(zip(rates, decays)):
            groups.setdefault(key, []).append(i)
        momentum = float(f32(self.param.momentum))
        for (rate, decay), index in groups.items():
            fused([params[i] for i in index], [diffs[i] for i in index],
                  [self.history[i] for i in index], weight_decay=decay, momentum=momentum,
                  lr=1.0, dampening=1.0 - rate, nesterov=False, maximize=False,
                  is_first_step=False)
        return True


class Nesterov(UpdateRule):
    type = "Nesterov"

    def compute(self, i, g, local_rate, iteration):
        m = f32(self.param.momentum)
        h = self.history[i]
        previous = h.clone()
        h.mul_(float(m)).add_(g, alpha=local_rate)
        return h.mul(float(f32(1) + m)).sub_(previous, alpha=float(m))


def _no_momentum(param, name: str) -> None:
    if param.momentum != 0:
        raise SolverError(f"Momentum cannot be used with {name} (momentum is {param.momentum})")


class AdaGrad(UpdateRule):
    type = "AdaGrad"

    def check(self, param):
        _no_momentum(param, "AdaGrad")

    def compute(self, i, g, local_rate, iteration):
        h = self.history[i]
        h.add_(g * g)
        return g.div_(h.sqrt().add_(float(f32(self.param.delta)))).mul_(local_rate)


class RMSProp(UpdateRule):
    type = "RMSProp"

    def check(self, param):
        _no_momentum(param, "RMSProp")
        if not 0 <= param.rms_decay < 1:
            raise SolverError(f"rms_decay should lie between 0 and 1, got {param.rms_decay}")

    def compute(self, i, g, local_rate, iteration):
        decay = f32(self.param.rms_decay)
        h = self.history[i]
        h.mul_(float(decay)).add_(g * g, alpha=float(f32(1) - decay))
        return g.div_(h.sqrt().add_(float(f32(self.param.delta)))).mul_(local_rate)


class AdaDelta(UpdateRule):
    type = "AdaDelta"
    history_sets = 2

    def compute(self, i, g, local_rate, iteration):
        m = f32(self.param.momentum)
        delta = float(f32(self.param.delta))
        grad_sq, update_sq = self.history[i], self.history[self.count + i]
        grad_sq.mul_(float(m)).add_(g * g, alpha=float(f32(1) - m))
        step = g.mul_(((update_sq + delta) / (grad_sq + delta)).sqrt_())
        update_sq.mul_(float(m)).add_(step * step, alpha=float(f32(1) - m))
        return step.mul_(local_rate)


class Adam(UpdateRule):
    type = "Adam"
    history_sets = 2

    def compute(self, i, g, local_rate, iteration):
        b1, b2 = f32(self.param.momentum), f32(self.param.momentum2)
        t = iteration + 1
        correction = f32(math.sqrt(1.0 - float(b2) ** t) / (1.0 - float(b1) ** t))
        m, v = self.history[i], self.history[self.count + i]
        m.mul_(float(b1)).add_(g, alpha=float(f32(1) - b1))
        v.mul_(float(b2)).add_(g * g, alpha=float(f32(1) - b2))
        step = m / v.sqrt().add_(float(f32(self.param.delta)))
        return step.mul_(float(f32(local_rate) * correction))


RULES: dict[str, type[UpdateRule]] = {r.type: r for r in (SGD, Nesterov, AdaGrad, RMSProp,
                                                         AdaDelta, Adam)}


def make_rule(param) -> UpdateRule:
    """The update rule named by the solver's ``type``."""
    cls = RULES.get(param.type)
    if cls is None:
        raise SolverError(f"unknown solver type '{param.type}'; known types: {', '.join(RULES)}")
    return cls(param)
