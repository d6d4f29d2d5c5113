"""BatchNorm (Caffe's three-blob form, no affine), Scale, Bias and LRN."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..functional import batch_norm, relu_
from .base import TEST, Layer, Shape, register


@register("BatchNorm")
class BatchNorm(Layer):
    """Blobs: mean*s, var*s, s. Statistics are blob/s (0 when s == 0). With global stats off
    (TRAIN default) it normalises with the batch mean and biased variance and updates
    s = s*maf + 1, mean = mean*maf + mu, var = var*maf + m/(m-1)*sigma^2."""

    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1
    default_lr_mult = 0.0

    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        p = lp.batch_norm_param
        self.use_global_stats = p.use_global_stats if p.HasField("use_global_stats") else phase == TEST
        self.maf = p.moving_average_fraction
        self.eps = p.eps
        for spec in lp.param:
            if spec.lr_mult != 0:
                raise self.error("BatchNorm statistics cannot be learned: lr_mult must be 0")

    def setup(self, bottom_shapes: list[Shape]) -> None:
        shape = bottom_shapes[0]
        if len(shape) < 2:
            raise self.error(f"needs a bottom with a channel axis, got {shape}")
        if len(self.blobs):
            return
        channels = shape[1]
        for blob_shape in ((channels,), (channels,), (1,)):
            self.add_blob(blob_shape, None, learnable=False)

    def global_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The running mean and variance the blobs encode."""
        s = self.blobs[2].detach()[0]
        factor = torch.where(s == 0, torch.zeros_like(s), 1.0 / s)
        return self.blobs[0].detach() * factor, self.blobs[1].detach() * factor

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.normalize(x)]

    def normalize(self, x: torch.Tensor, weight: torch.Tensor | None = None,
                  bias: torch.Tensor | None = None, relu: bool = False,
                  relu_grad_in_place: bool = False) -> torch.Tensor:
        """BatchNorm of ``x``, then ``* weight + bias`` per channel when given (the Net passes a
        following in-place Scale's blobs, so both run as one kernel), then with ``relu`` the
        in-place ReLU after them (``caffe.functional.batch_norm``)."""
        shape = x.shape
        x4 = x if x.dim() == 4 else x.reshape(shape[0], shape[1], -1, 1)
        relu_args = (relu, relu_grad_in_place)
        if self.use_global_stats:
            mean, var = self.global_stats()
            y = batch_norm(x4, mean, var, weight, bias, False, 0.0, self.eps, *relu_args)
        elif x4.numel() // x4.shape[1] > 1:
            # running buffers with momentum 1 receive the batch mean and m/(m-1) times the
            # biased variance (m = N*H*W), as Caffe accumulates them
            channels = x4.shape[1]
            mean = torch.zeros(channels, dtype=self.blobs[0].dtype, device=x.device)
            var = torch.ones(channels, dtype=self.blobs[1].dtype, device=x.device)
            y = batch_norm(x4, mean, var, weight, bias, True, 1.0, self.eps, *relu_args)
            self._update_stats(mean, var)
        else:
            y, mean, var = self._single_value_norm(x4, weight, bias)
            self._update_stats(mean, var)
            y = relu_(y, relu_grad_in_place) if relu else y
        return y if x4 is x else y.reshape(shape)

    def _single_value_norm(self, x: torch.Tensor, weight: torch.Tensor | None,
                           bias: torch.Tensor | None
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One value per channel (PyTorch's kernel refuses it): Caffe gives x - mean = 0; the
        statistics are the value and variance 0."""
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        y = (x - mean) * (1.0 / math.sqrt(self.eps))
        if weight is not None:
            y = y * weight.reshape(1, -1, 1, 1)
        if bias is not None:
            y = y + bias.reshape(1, -1, 1, 1)
        return y, mean.detach().flatten(), torch.zeros_like(mean).flatten()

    @torch.no_grad()
    def _update_stats(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        self.blobs[2].mul_(self.maf).add_(1.0)
        self.blobs[0].mul_(self.maf).add_(mean)
        self.blobs[1].mul_(self.maf).add_(var)


def _broadcast_shape(bottom: Shape, axis: int, param_shape: Shape) -> tuple[int, ...]:
    return (1,) * axis + tuple(param_shape) + (1,) * (len(bottom) - axis - len(param_shape))


class _AxisParam(Layer):
    """Shared logic of Scale and Bias: a parameter (or second bottom) spanning
    ``num_axes`` axes from ``axis``, broadcast over the rest."""

    min_bottoms, max_bottoms, min_tops, max_tops = 1, 2, 1, 1

    def param_of(self):
        raise NotImplementedError

    def setup(self, bottom_shapes: list[Shape]) -> None:
        p = self.param_of()
        shape = bottom_shapes[0]
        if len(bottom_shapes) == 2:
            self.axis = self.canonical_axis(p.axis, len(shape)) if len(shape) else 0
            self.param_shape = tuple(bottom_shapes[1])
        else:
            self.axis = self.canonical_axis(p.axis, len(shape)) if len(shape) else 0
            if p.num_axes < -1:
                raise self.error("num_axes must be -1 or non-negative")
            end = len(shape) if p.num_axes == -1 else self.axis + p.num_axes
            if end > len(shape):
                raise self.error(f"axis {p.axis} + num_axes {p.num_axes} exceeds the bottom's "
                                 f"{len(shape)} axes")
            self.param_shape = tuple(shape[self.axis:end])
        if tuple(shape[self.axis:self.axis + len(self.param_shape)]) != self.param_shape:
            raise self.error(f"parameter shape {self.param_shape} does not match bottom shape "
                             f"{shape} from axis {self.axis}")
        if not len(self.blobs):
            self.create_blobs(p, len(bottom_shapes) == 1)

    def create_blobs(self, p, own_param: bool) -> None:
        raise NotImplementedError

    def expand(self, t: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
        return t.reshape(_broadcast_shape(tuple(bottom.shape), self.axis, self.param_shape))


@register("Scale")
class Scale(_AxisParam):
    """y = x * scale (+ bias); the scale is a blob (filler default constant 1) or bottom 1."""

    def param_of(self):
        return self.lp.scale_param

    def create_blobs(self, p, own_param: bool) -> None:
        if own_param:
            blob = self.add_blob(self.param_shape, p.filler if p.HasField("filler") else None)
            if not p.HasField("filler"):
                blob.data.fill_(1.0)
        if p.bias_term:
            self.add_blob(self.param_shape, p.bias_filler)
        self.bias_index = 1 if own_param else 0

    def per_channel_blobs(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """(scale, bias or None) when this Scale multiplies axis 1 by its own blob, else None."""
        if len(self.lp.bottom) != 1 or self.axis != 1 or len(self.param_shape) != 1:
            return None
        bias = self.blobs[self.bias_index] if self.lp.scale_param.bias_term else None
        return self.blobs[0], bias

    def forward(self, x: torch.Tensor, *scale_bottom: torch.Tensor) -> list[torch.Tensor]:
        per_channel = None if scale_bottom else self.per_channel_blobs()
        if (per_channel is not None and x.device.type == "cpu" and x.dim() >= 2
                and x.dtype == per_channel[0].dtype  # not under autocast (bf16 x, fp32 scale)
                and torch.is_grad_enabled()
                and (x.requires_grad or any(p.requires_grad for p in per_channel if p is not None))):
            return [channel_affine(x, *per_channel)]
        scale = self.expand(scale_bottom[0] if scale_bottom else self.blobs[0], x)
        if self.lp.scale_param.bias_term:
            return [torch.addcmul(self.expand(self.blobs[self.bias_index], x), x, scale)]
        return [x * scale]


def channel_affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
                   ) -> torch.Tensor:
    """``x * weight + bias`` per channel (axis 1) as an inference batch_norm with mean 0, variance
    1 and eps 0: the same values as the broadcast product, and a backward that is one fused
    kernel (input, scale and bias gradients in one pass), 2.5-6x faster on the CPU than the
    autograd of the broadcast product (bench/results/vs_bvlc_layers.md, issue 19). Scale takes it
    only when a backward will follow: a forward alone is faster as the product (fewer calls)."""
    channels = x.shape[1]
    zeros = torch.zeros(channels, dtype=x.dtype, device=x.device)
    ones = torch.ones(channels, dtype=x.dtype, device=x.device)
    return batch_norm(x, zeros, ones, weight, bias, False, 0.0, 0.0)


@register("Bias")
class Bias(_AxisParam):
    """y = x + bias; the bias is a blob or bottom 1."""

    def param_of(self):
        return self.lp.bias_param

    def create_blobs(self, p, own_param: bool) -> None:
        if own_param:
            self.add_blob(self.param_shape, p.filler if p.HasField("filler") else None)

    def forward(self, x: torch.Tensor, *bias_bottom: torch.Tensor) -> list[torch.Tensor]:
        bias = bias_bottom[0] if bias_bottom else self.blobs[0]
        return [x + self.expand(bias, x)]


@register("LRN")
class LRN(Layer):
    """Local response normalisation. ACROSS_CHANNELS: x / (k + alpha/n * sum x^2) ^ beta over n
    neighbouring channels. WITHIN_CHANNEL: x / (1 + alpha/n^2 * sum x^2) ^ beta over the n x n
    window, zero-padded cells counting in n^2 and ``k`` ignored, as Caffe computes it."""

    min_bottoms, max_bottoms, min_tops, max_tops = 1, 1, 1, 1

    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        if lp.lrn_param.local_size % 2 == 0:
            raise self.error("local_size must be odd")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p = self.lp.lrn_param
        if p.norm_region == 0:
            return [F.local_response_norm(x, p.local_size, p.alpha, p.beta, p.k)]
        mean_sq = F.avg_pool2d(x * x, p.local_size, 1, (p.local_size - 1) // 2,
                               count_include_pad=True)
        return [x * torch.pow(1 + p.alpha * mean_sq, -p.beta)]
