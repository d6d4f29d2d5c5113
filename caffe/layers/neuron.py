"""Element-wise layers: ReLU, PReLU, Sigmoid, TanH, Power, Exp, Log, AbsVal, ELU, BNLL, Threshold,
Dropout, Swish, Clip. Each keeps its bottom's shape and may run in place (top == bottom)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..functional import relu_, swish
from .base import Layer, Shape, register


class _Neuron(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1


@register("ReLU")
class ReLU(_Neuron):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        slope = self.lp.relu_param.negative_slope
        return [F.leaky_relu(x, slope) if slope else F.relu(x)]

    @property
    def writes_over_bottom(self) -> bool:
        """Whether ``forward_over`` may run it: a plain ReLU (no negative slope)."""
        return not self.lp.relu_param.negative_slope

    def forward_over(self, x: torch.Tensor, grad_in_place: bool = False) -> list[torch.Tensor]:
        """The ReLU written over ``x`` itself (caffe.functional.relu_), for a Net that knows no
        other layer reads ``x``."""
        return [relu_(x, grad_in_place)]


@register("PReLU")
class PReLU(_Neuron):
    def setup(self, bottom_shapes: list[Shape]) -> None:
        p = self.lp.prelu_param
        if len(bottom_shapes[0]) < 2:
            raise self.error("needs a bottom with a channel axis")
        if len(self.blobs):
            return
        filler = p.filler if p.HasField("filler") else None
        shape = (1,) if p.channel_shared else (bottom_shapes[0][1],)
        blob = self.add_blob(shape, filler)
        if filler is None:
            blob.data.fill_(0.25)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        slope = self.blobs[0].reshape((1, -1) + (1,) * (x.dim() - 2))
        return [torch.where(x > 0, x, x * slope)]


@register("Sigmoid")
class Sigmoid(_Neuron):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.sigmoid(x)]


@register("TanH")
class TanH(_Neuron):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.tanh(x)]


@register("AbsVal")
class AbsVal(_Neuron):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.abs(x)]


@register("BNLL")
class BNLL(_Neuron):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.softplus(x)]


@register("ELU")
class ELU(_Neuron):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.elu(x, self.lp.elu_param.alpha)]


@register("Power")
class Power(_Neuron):
    """(shift + scale * x) ^ power; SSE uses scale -1, shift 1 (1 - x) and shift 1 (x + 1)."""

    def negation_shift(self) -> float | None:
        """``shift`` when the layer is ``shift - x`` (scale -1, power 1, shift not 0), else None."""
        p = self.lp.power_param
        return p.shift if p.scale == -1 and p.power == 1 and p.shift != 0 else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p = self.lp.power_param
        y = x
        if p.scale == -1 and p.shift != 0:
            y = torch.rsub(y, p.shift)
        else:
            if p.scale != 1:
                y = y * p.scale
            if p.shift != 0:
                y = y + p.shift
        if p.power != 1:
            y = torch.pow(y, p.power)
        return [y]


@register("Exp")
class Exp(_Neuron):
    """base ^ (shift + scale * x); base -1 means e."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p = self.lp.exp_param
        ln_base = 1.0 if p.base == -1 else math.log(p.base)
        return [torch.exp((p.shift + p.scale * x) * ln_base)]


@register("Log")
class Log(_Neuron):
    """log_base(shift + scale * x); base -1 means e."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p = self.lp.log_param
        inv_ln_base = 1.0 if p.base == -1 else 1.0 / math.log(p.base)
        return [torch.log(p.shift + p.scale * x) * inv_ln_base]


@register("Threshold")
class Threshold(_Neuron):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [(x > self.lp.threshold_param.threshold).to(x.dtype)]


@register("Dropout")
class Dropout(_Neuron):
    """TRAIN: zero with probability p and scale the rest by 1/(1-p). TEST: identity."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        ratio = self.lp.dropout_param.dropout_ratio
        if not self.is_training or ratio == 0:
            return [x]
        if x.device.type == "cpu":
            keep = torch.rand(x.shape, generator=self.generator) > ratio
        else:
            keep = torch.rand(x.shape, device=x.device) > ratio
        return [x * keep.to(x.dtype) * (1.0 / (1.0 - ratio))]


@register("Swish")
class Swish(_Neuron):
    """x * sigmoid(beta * x)."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [swish(x, self.lp.swish_param.beta)]


@register("Clip")
class Clip(_Neuron):
    """max(min, min(x, max)); the gradient passes where min <= x <= max (limits included)."""

    def setup(self, bottom_shapes: list[Shape]) -> None:
        p = self.lp.clip_param
        if not (p.HasField("min") and p.HasField("max")):
            raise self.error("clip_param needs both min and max")
        if p.min > p.max:
            raise self.error(f"clip_param min {p.min:g} is greater than max {p.max:g}")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p = self.lp.clip_param
        return [torch.clamp(x, p.min, p.max)]
