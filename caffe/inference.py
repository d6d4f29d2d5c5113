"""Inference mode: a faster forward of a TEST net with the same results as the plain mode.

``optimize(net)`` compiles the net's layer list into a plan of steps and, where it is safe,
folds each BatchNorm (and the Scale after it) into the Convolution or InnerProduct before it:
Caffe's TEST BatchNorm is the affine map ``(x - mean) / sqrt(var + eps)`` and Scale is
``x * gamma + beta``, so both fold into the weights ``W * g`` and bias ``(b - mean) * g + beta``
with ``g = gamma / sqrt(var + eps)``. Folding is safe when the layer's output feeds only the
BatchNorm and the BatchNorm's output feeds only the Scale (no branch sees the unnormalised
value). Blob names are tracked as versions, so in-place layers (top == bottom) fold too.
Likewise a ReLU that alone reads such a step's output runs in place inside the step, and a
BatchNorm (+ Scale) that follows no convolution runs as one ``batch_norm`` call. Two more folds
keep every output channel an affine map of the convolution's (issue 19): a Concat of the
output y and Power images ``shift + scale * y`` of it (HoloNet's CReLU ``[y, 1 - y]``), with the
Scale after it, becomes one convolution with the stacked weights; an Eltwise SUM of the output
and a shortcut computed earlier is added inside the convolution's step (a Power ``x + shift``
on the shortcut going into the bias). Split and TEST Dropout cost nothing, and each
intermediate tensor is freed after its last reader.

On the CPU (float32, channels-last) the plan also takes routes PyTorch's own dispatch does not
(issue 19; the same sums in another order, tested against the plain mode): a 1x1 convolution is
one matrix product on the channels-last view; other 2-D convolutions with enough work per call
(``PACKED_MIN_MACS``) run in oneDNN with their weights packed once per input shape (kept for the
``PACKED_SHAPES`` shapes used last) and the ReLU fused, smaller ones through ``F.conv2d`` with
channels-last weights (no layout copies), and the most weight-bound ones (a batch of one through
SSE-ResNet's 7x7 heads) as im2col + GEMM like Caffe; a BatchNorm
(+ Scale) that follows no convolution is one ``addcmul``; and a chain of Concats that each
append to the previous one (a DenseNet block) fills one buffer, each reader getting its prefix
view.
``CAFFE_INFERENCE_CPU_PATHS=0`` (all of these) and ``CAFFE_INFERENCE_PACKED=0`` (the packed
convolutions) turn them off.

The plan runs under ``torch.inference_mode`` with 4-D tensors in ``torch.channels_last`` and,
optionally, under bf16/fp16 autocast (meant for GPUs; outputs are returned as float32). The
original net is not modified: folded and prepared weights are copies made at ``optimize`` time,
so call ``optimize`` again after loading new weights into the net."""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import NetError
from .functional import ConcatChain, concat_chain
from .layers.base import TEST, Layer
from .layers.conv import (PACKED_GEMM_RATIO, Convolution, channels_last, conv2d_output_hw,
                          convolution, im2col_conv2d, weight_bound)
from .layers.inner_product import InnerProduct
from .layers.neuron import Dropout, Power, ReLU
from .layers.normalization import BatchNorm, Scale
from .layers.structure import Concat, Eltwise, Silence, Split
from .net import Net
from .net_graph import concat_chains

_OUTPUT = -1  # consumer id standing for "returned as a net output"

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
                    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16}


@dataclass
class _Node:
    """One layer of the net with its bottoms and tops as value ids (versions of blob names)."""

    index: int
    layer: Layer
    bottoms: list[int]
    tops: list[int]


@dataclass
class _Graph:
    nodes: list[_Node]
    consumers: dict[int, list[int]]
    inputs: dict[str, int]
    final: dict[str, int]  # blob name -> id of its last version
    outputs: dict[str, int]


@dataclass
class _Step:
    """A call of ``fn`` on the values ``bottoms`` that yields the values ``tops``."""

    name: str
    fn: Callable[..., list[torch.Tensor]]
    bottoms: list[int]
    tops: list[int]
    release: list[int] = field(default_factory=list)


def _is_identity(layer: Layer) -> bool:
    """Layers whose tops equal their bottom in TEST: Split, and Dropout outside TRAIN."""
    return isinstance(layer, Split) or (isinstance(layer, Dropout) and not layer.is_training)


def _trace(net: Net) -> _Graph:
    """Give every blob version an id and record which layers read each version."""
    current: dict[str, int] = {}
    consumers: dict[int, list[int]] = {}
    inputs: dict[str, int] = {}
    nodes: list[_Node] = []
    next_id = 0
    for i, layer in enumerate(net.modules):
        name = net._layer_names[i]
        if isinstance(layer, Silence):
            continue
        bottoms = [current[b] for b in net.bottom_names[name]]
        if _is_identity(layer):
            for t in net.top_names[name]:
                current[t] = bottoms[0]
            continue
        for v in bottoms:
            consumers[v].append(i)
        tops = []
        for t in net.top_names[name]:
            tops.append(next_id)
            consumers[next_id] = []
            current[t] = next_id
            if layer.feeds_from_blobs:
                inputs[t] = next_id
            next_id += 1
        nodes.append(_Node(i, layer, bottoms, tops))
    outputs = {name: current[name] for name in net.outputs}
    for v in outputs.values():
        consumers[v].append(_OUTPUT)
    return _Graph(nodes, consumers, inputs, dict(current), outputs)


def _sole_consumer(graph: _Graph, value: int) -> int | None:
    users = graph.consumers[value]
    return users[0] if len(users) == 1 and users[0] != _OUTPUT else None


def _foldable_head(layer: Layer) -> bool:
    if type(layer) is Convolution:
        return len(layer.lp.bottom) == 1 and layer.axis == 1
    if type(layer) is InnerProduct:
        return layer.axis == 1
    return False


def _global_bn(layer: Layer) -> bool:
    return type(layer) is BatchNorm and layer.use_global_stats


def _foldable_scale(layer: Layer, channels: int) -> bool:
    return (type(layer) is Scale and len(layer.lp.bottom) == 1 and layer.axis == 1
            and layer.param_shape == (channels,))


@dataclass
class _Mirror:
    """A Concat along the channels of a chain's output y and of Power images ``shift + scale * y``
    of it (HoloNet's CReLU: [y, 1 - y]), optionally followed by a per-channel Scale of the
    concatenation: every output channel is still an affine map of one channel of y."""

    source: int
    powers: list[_Node]
    concat: _Node
    scale: _Node | None = None

    @property
    def nodes(self) -> list[_Node]:
        return self.powers + [n for n in (self.concat, self.scale) if n is not None]


@dataclass
class _Residual:
    """An Eltwise SUM (coefficients 1) of a chain's output and a value computed before the
    chain's head (a shortcut), or a Power ``x + shift`` of one, whose shift then goes into the
    chain's bias: the chain's step adds the shortcut into its own output."""

    eltwise: _Node
    shortcut: int
    power: _Node | None = None

    @property
    def nodes(self) -> list[_Node]:
        return [n for n in (self.power, self.eltwise) if n is not None]

    @property
    def shift(self) -> float:
        return self.power.layer.lp.power_param.shift if self.power is not None else 0.0


@dataclass
class _Chain:
    """Layers run as one step: a head (Convolution, InnerProduct or TEST BatchNorm), then
    optionally the BatchNorm, Scale, a ``_Mirror`` or a ``_Residual`` (Convolution heads only)
    and the ReLU, each reading only what the previous one wrote."""

    head: _Node
    bn: _Node | None = None
    scale: _Node | None = None
    relu: _Node | None = None
    mirror: _Mirror | None = None
    residual: _Residual | None = None

    @property
    def nodes(self) -> list[_Node]:
        before = [n for n in (self.head, self.bn, self.scale) if n is not None]
        after = [self.relu] if self.relu is not None else []
        middle = ((self.mirror.nodes if self.mirror else [])
                  + (self.residual.nodes if self.residual else []))
        return before + middle + after


def _next(graph: _Graph, by_index: dict[int, _Node], node: _Node, accept) -> _Node | None:
    """The sole reader of ``node``'s top if ``accept(layer)`` holds for it."""
    if len(node.tops) != 1:
        return None
    index = _sole_consumer(graph, node.tops[0])
    if index is None or not accept(by_index[index].layer):
        return None
    return by_index[index]


def _affine_power(layer: Layer) -> bool:
    return type(layer) is Power and layer.lp.power_param.power == 1


def _find_mirror(graph: _Graph, by_index: dict[int, _Node], node: _Node, channels: int
                 ) -> _Mirror | None:
    """The ``_Mirror`` reading ``node``'s top y (``channels`` channels), if y's readers are one
    Concat along the channels and Power layers (power 1) that only that Concat reads, and the
    Concat reads nothing else."""
    if len(node.tops) != 1:
        return None
    y = node.tops[0]
    readers = set(graph.consumers[y])
    if _OUTPUT in readers:
        return None
    concats = [i for i in readers if type(by_index[i].layer) is Concat]
    powers = [by_index[i] for i in sorted(readers) if i not in concats]
    if len(concats) != 1 or not all(_affine_power(p.layer) and len(p.tops) == 1 for p in powers):
        return None
    concat = by_index[concats[0]]
    images = {p.tops[0] for p in powers}
    if (getattr(concat.layer, "axis", None) != 1 or len(concat.tops) != 1
            or any(set(graph.consumers[v]) != {concat.index} for v in images)
            or not set(concat.bottoms) <= images | {y} or not images <= set(concat.bottoms)):
        return None
    total = channels * len(concat.bottoms)
    return _Mirror(y, powers, concat, _next(graph, by_index, concat,
                                            lambda l: _foldable_scale(l, total)))


def _find_residual(graph: _Graph, by_index: dict[int, _Node], node: _Node, head: _Node,
                   producer: dict[int, int]) -> _Residual | None:
    """The ``_Residual`` reading ``node``'s top (the end of a chain starting at ``head``): an
    Eltwise SUM of it and a shortcut produced before ``head`` (directly, or through a Power
    ``x + shift`` that only the Eltwise reads)."""
    eltwise = _next(graph, by_index, node, lambda l: type(l) is Eltwise and l.op == "SUM"
                    and l.coeff == [1.0, 1.0])
    if eltwise is None or len(set(eltwise.bottoms)) != 2 or len(eltwise.tops) != 1:
        return None
    other = next(v for v in eltwise.bottoms if v != node.tops[0])
    power = None
    if other in producer:
        source = by_index[producer[other]]
        p = source.layer.lp.power_param if type(source.layer) is Power else None
        if (p is not None and p.power == 1 and p.scale == 1
                and set(graph.consumers[other]) == {eltwise.index}):
            power, other = source, source.bottoms[0]
    if producer.get(other, -1) >= head.index:
        return None
    return _Residual(eltwise, other, power)


def _find_chains(graph: _Graph, exclude: set[int] = frozenset()) -> dict[int, _Chain]:
    """The chains to fuse, keyed by their head's layer index. A Convolution/InnerProduct absorbs
    the TEST BatchNorm (+ Scale) and the ReLU that read only its output; a BatchNorm that
    follows no such layer becomes one affine step with its Scale (+ ReLU). Layers in ``exclude``
    (those the net computes on a shared buffer, caffe/inplace.py) head no chain."""
    by_index = {n.index: n for n in graph.nodes}
    producer = {v: n.index for n in graph.nodes for v in n.tops}
    chains: dict[int, _Chain] = {}
    claimed: set[int] = set()
    for node in graph.nodes:
        if node.index in claimed or node.index in exclude:
            continue
        if _foldable_head(node.layer):
            chain = _Chain(node, bn=_next(graph, by_index, node, _global_bn))
            channels = node.layer.num_output
        elif _global_bn(node.layer):
            chain = _Chain(node)
            channels = node.layer.blobs[0].numel()
        else:
            continue
        last = chain.bn or chain.head
        if _global_bn(last.layer):
            chain.scale = _next(graph, by_index, last, lambda l: _foldable_scale(l, channels))
        if _foldable_head(node.layer) and getattr(node.layer, "group", 1) == 1:
            chain.mirror = _find_mirror(graph, by_index, chain.nodes[-1], channels)
        if type(node.layer) is Convolution and chain.mirror is None:
            chain.residual = _find_residual(graph, by_index, chain.nodes[-1], node, producer)
            if chain.residual is not None and chain.residual.power is not None:
                claimed.add(chain.residual.power.index)
        chain.relu = _next(graph, by_index, chain.nodes[-1], lambda l: type(l) is ReLU)
        if len(chain.nodes) > 1 or _global_bn(node.layer):
            chains[node.index] = chain
            claimed.update(n.index for n in chain.nodes)
    return chains


@torch.no_grad()
def _affine(bn: BatchNorm, scale: Scale | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, h) with BatchNorm(+Scale)(x) = x * g + h per channel, computed in float64."""
    mean, var = (t.double() for t in bn.global_stats())
    g = torch.rsqrt(var + bn.eps)
    h = torch.zeros_like(g)
    if scale is not None:
        g = g * scale.blobs[0].detach().double()
        if scale.lp.scale_param.bias_term:
            h = scale.blobs[scale.bias_index].detach().double()
    return g, h - mean * g


@torch.no_grad()
def _head_params(chain: _Chain) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight (out, ...) and bias of the chain's Convolution/InnerProduct, with its BatchNorm
    and Scale folded in: W * g and b * g + h."""
    head = chain.head.layer
    weight = head.blobs[0].detach()
    if isinstance(head, InnerProduct) and head.transpose:
        weight = weight.t()
    bias = head.blobs[1].detach() if head.bias_term else None
    shift = chain.residual.shift if chain.residual is not None else 0.0
    if chain.bn is None and chain.mirror is None and shift == 0:
        return weight.clone().contiguous(), None if bias is None else bias.clone()
    weight = weight.double()
    bias = torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None else bias.double()
    if chain.bn is not None:
        g, h = _affine(chain.bn.layer, chain.scale.layer if chain.scale else None)
        weight, bias = _scale_rows(weight, g), bias * g + h
    if chain.mirror is not None:
        weight, bias = _mirror_params(chain.mirror, weight, bias)
    bias = bias + shift
    return weight.float().contiguous(), bias.float()


def _scale_rows(weight: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``weight`` (out, ...) with output channel j multiplied by g[j]."""
    return weight * g.reshape((weight.shape[0],) + (1,) * (weight.dim() - 1))


@torch.no_grad()
def _mirror_params(mirror: _Mirror, weight: torch.Tensor, bias: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 weight and bias of the concatenation ``mirror`` makes of its source (made with
    ``weight``, ``bias``) and the source's Power images, then of its Scale if any."""
    images = {p.tops[0]: p.layer.lp.power_param for p in mirror.powers}
    weights, biases = [], []
    for v in mirror.concat.bottoms:
        a, c = (1.0, 0.0) if v == mirror.source else (images[v].scale, images[v].shift)
        weights.append(weight * a)
        biases.append(bias * a + c)
    weight, bias = torch.cat(weights), torch.cat(biases)
    if mirror.scale is not None:
        scale = mirror.scale.layer
        gamma = scale.blobs[0].detach().double()
        weight, bias = _scale_rows(weight, gamma), bias * gamma
        if scale.lp.scale_param.bias_term:
            bias = bias + scale.blobs[scale.bias_index].detach().double()
    return weight, bias


def _activation(chain: _Chain | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The fused ReLU, applied in place (the chain's own fresh output has no other reader)."""
    if chain is None or chain.relu is None:
        return None
    slope = chain.relu.layer.lp.relu_param.negative_slope
    return (lambda y: F.leaky_relu_(y, slope)) if slope else F.relu_


_PACKED_CONV: bool | None = None
# A convolution packed for oneDNN pays a fixed cost per call that PyTorch's own dispatch of small
# convolutions does not: below this many multiply-adds per call (batch 1 on DenseNet-121's 9x9 and
# 5x5 maps, HoloNet's 32x32 and 16x16 stages) F.conv2d is as fast or faster
# (bench/bench_conv_routes.py).
PACKED_MIN_MACS = 1 << 22
PACKED_SHAPES = 4  # input shapes whose packed weights a convolution keeps (the least recently used
# is dropped): a stream of batches of many sizes (the last batch of every chunk sse-predict scores)
# would otherwise keep one more copy of every weight per batch size it has seen


class ShapeCache:
    """The values made for the last ``capacity`` keys used (least recently used dropped)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.values: OrderedDict = OrderedDict()

    def get(self, key, make: Callable):
        """The value of ``key``, made by ``make()`` if it is not kept."""
        value = self.values.get(key)
        if value is None:
            value = self.values[key] = make()
            while len(self.values) > self.capacity:
                self.values.popitem(last=False)
        else:
            self.values.move_to_end(key)
        return value

    def __len__(self) -> int:
        return len(self.values)


def packed_conv_available() -> bool:
    """Whether this PyTorch build runs oneDNN convolutions with pre-packed weights and a fused
    ReLU (``torch.ops.mkldnn._convolution_pointwise``, what PyTorch's own compiler emits for
    frozen CPU graphs); checked once on a small case against ``F.conv2d``. The environment
    variable CAFFE_INFERENCE_PACKED=0 turns the packed path off."""
    global _PACKED_CONV
    if _PACKED_CONV is None:
        _PACKED_CONV = False
        if os.environ.get("CAFFE_INFERENCE_PACKED", "1") != "0":
            try:
                with torch.inference_mode():
                    gen = torch.Generator().manual_seed(0)
                    x = torch.randn(1, 3, 6, 6, generator=gen).contiguous(
                        memory_format=torch.channels_last)
                    w = torch.randn(4, 3, 3, 3, generator=gen)
                    b = torch.randn(4, generator=gen)
                    packed = _pack_conv_weight(w, (1, 1), (1, 1), (1, 1), 1, x.shape)
                    y = _packed_conv(x, packed, b, (1, 1), (1, 1), (1, 1), 1, True)
                    _PACKED_CONV = bool(torch.allclose(
                        y, F.relu(F.conv2d(x, w, b, 1, 1)), rtol=1e-4, atol=1e-4))
            except (AttributeError, RuntimeError, NotImplementedError):
                _PACKED_CONV = False
    return _PACKED_CONV


def _pack_conv_weight(weight: torch.Tensor, stride, pad, dilation, group: int, shape
                      ) -> torch.Tensor:
    """The weight reordered once into oneDNN's blocked layout for inputs of ``shape``."""
    return torch._C._nn.mkldnn_reorder_conv2d_weight(
        weight.contiguous().to_mkldnn(), list(pad), list(stride), list(dilation), group,
        list(shape))


def _packed_conv(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, stride, pad,
                 dilation, group: int, relu: bool) -> torch.Tensor:
    return torch.ops.mkldnn._convolution_pointwise(
        x, packed, bias, list(pad), list(stride), list(dilation), group,
        "relu" if relu else "none", [], "")


def _pointwise_conv(x: torch.Tensor, weight2d: torch.Tensor, bias: torch.Tensor | None,
                    stride: tuple[int, int]) -> torch.Tensor:
    """A 1x1 convolution without padding as one matrix product on the channels-last view of
    ``x``: (N*H*W, C) x (C, out). The output is N x out x H x W with channels-last strides."""
    if stride != (1, 1):
        x = x[:, :, ::stride[0], ::stride[1]]
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
    y = F.linear(rows, weight2d, bias)
    return y.view(n, h, w, weight2d.shape[0]).permute(0, 3, 1, 2)


def _conv_fn(layer: Convolution, weight: torch.Tensor, bias: torch.Tensor | None, act,
             cpu_paths: bool = False) -> Callable[..., list[torch.Tensor]]:
    """The step of a Convolution with prepared weights. With ``cpu_paths`` (a float32 plan on
    the CPU) 2-D convolutions take faster routes (the same sums, in another order), chosen once
    per input shape (``_conv_route``)."""
    stride, pad, dilation, group = layer.stride, layer.pad, layer.dilation, layer.group
    fast = (cpu_paths and layer.axis == 1 and len(stride) == 2 and weight.dim() == 4)
    routes = ShapeCache(PACKED_SHAPES)  # input shape -> its route (packed weights included)

    def plain(x: torch.Tensor) -> torch.Tensor:
        y = convolution(x, weight, bias, stride, pad, dilation, group, layer.axis)
        return act(y) if act else y

    def one(x: torch.Tensor) -> torch.Tensor:
        if fast and x.dim() == 4 and x.dtype == torch.float32 and x.device.type == "cpu":
            return routes.get(x.shape, lambda: _conv_route(layer, weight, bias, act, x, plain))(x)
        return plain(x)

    def conv(*xs: torch.Tensor) -> list[torch.Tensor]:
        return [one(x) for x in xs]
    return conv


def _conv_route(layer: Convolution, weight: torch.Tensor, bias: torch.Tensor | None, act,
                x: torch.Tensor, plain: Callable[[torch.Tensor], torch.Tensor]
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The CPU route of a 2-D float32 convolution for inputs shaped as ``x``:

    - a 1x1 convolution without padding: one matrix product on the channels-last view;
    - a kernel covering the whole input: ``plain`` (``conv2d`` runs it as one matrix product);
    - the most weight-bound ones (``weight_bound`` with PACKED_GEMM_RATIO: a batch of one through
      SSE-ResNet's 7x7 heads): im2col + GEMM, as Caffe;
    - at least PACKED_MIN_MACS multiply-adds per call: oneDNN with the weights packed once for
      this shape and the ReLU fused;
    - the rest (small maps at batch 1: DenseNet-121's last two blocks, HoloNet's 32x32 and 16x16
      stages): ``F.conv2d`` with channels-last weights, whose dispatch costs less per call than
      the packed kernel's."""
    stride, pad, dilation, group = layer.stride, layer.pad, layer.dilation, layer.group
    if tuple(weight.shape[2:]) == (1, 1) and pad == (0, 0) and group == 1 and dilation == (1, 1):
        weight2d = weight.reshape(weight.shape[0], -1)

        def pointwise(x: torch.Tensor) -> torch.Tensor:
            y = _pointwise_conv(x, weight2d, bias, stride)
            return act(y) if act else y
        return pointwise
    shape = tuple(x.shape)
    if shape[2:] == tuple(weight.shape[2:]) and pad == (0, 0) and dilation == (1, 1) and group == 1:
        return plain
    if weight_bound(x, weight, stride, pad, dilation, group, PACKED_GEMM_RATIO):
        def im2col(x: torch.Tensor) -> torch.Tensor:
            y = im2col_conv2d(x, weight, bias, stride, pad, dilation)
            return act(y) if act else y
        return im2col
    h_o, w_o = conv2d_output_hw(shape[2:], tuple(weight.shape[2:]), stride, pad, dilation)
    macs = shape[0] * h_o * w_o * weight.numel()
    if macs < PACKED_MIN_MACS or not packed_conv_available():
        weight_cl = weight.contiguous(memory_format=torch.channels_last)

        def small(x: torch.Tensor) -> torch.Tensor:
            y = F.conv2d(x, weight_cl, bias, stride, pad, dilation, group)
            return act(y) if act else y
        return small
    packed = _pack_conv_weight(weight, stride, pad, dilation, group, shape)
    fused_relu = act is F.relu_

    def packed_conv(x: torch.Tensor) -> torch.Tensor:
        y = _packed_conv(x, packed, bias, stride, pad, dilation, group, fused_relu)
        return act(y) if act and not fused_relu else y
    return packed_conv


def _linear_fn(layer: InnerProduct, weight: torch.Tensor, bias: torch.Tensor | None, act
               ) -> Callable[..., list[torch.Tensor]]:
    axis, k = layer.axis, layer.k

    def linear(x: torch.Tensor) -> list[torch.Tensor]:
        y = F.linear(x.reshape(*x.shape[:axis], k), weight, bias)
        return [act(y) if act else y]
    return linear


def _affine_fn(chain: _Chain, act, cpu_paths: bool = False) -> Callable[..., list[torch.Tensor]]:
    """A TEST BatchNorm (+ Scale) as one batch_norm call with the Scale as its affine part; with
    ``cpu_paths`` as one ``x * g + h`` (``addcmul``, g and h folded in float64 as for the
    convolutions), which costs about half a CPU batch_norm and keeps that speed on a channel
    slice of a larger blob (a Concat chain's prefix view), where batch_norm copies."""
    bn = chain.bn or chain.head
    mean, var = (t.clone() for t in bn.layer.global_stats())
    weight = bias = None
    if chain.scale is not None:
        scale = chain.scale.layer
        weight = scale.blobs[0].detach().clone()
        if scale.lp.scale_param.bias_term:
            bias = scale.blobs[scale.bias_index].detach().clone()
    eps = bn.layer.eps

    def affine(x: torch.Tensor) -> list[torch.Tensor]:
        y = F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)
        return [act(y) if act else y]
    if not cpu_paths:
        return affine
    g, h = (t.float() for t in _affine(bn.layer, chain.scale.layer if chain.scale else None))
    shaped: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def affine_mul(x: torch.Tensor) -> list[torch.Tensor]:
        if x.dtype != torch.float32 or x.device != g.device or x.dim() < 2:
            return affine(x)
        gh = shaped.get(x.dim())
        if gh is None:
            view = (1, -1) + (1,) * (x.dim() - 2)
            gh = shaped[x.dim()] = (g.view(view), h.view(view))
        y = torch.addcmul(gh[1], x, gh[0])
        return [act(y) if act else y]
    return affine_mul


def _step_fn(layer: Layer, chain: _Chain | None, cpu_paths: bool = False
             ) -> Callable[..., list[torch.Tensor]]:
    """The function a step calls: a fused chain, a Convolution/InnerProduct on prepared copies
    of its weights, or else the layer's own forward."""
    act = _activation(chain)
    if type(layer) is BatchNorm and chain is not None:
        return _affine_fn(chain, act, cpu_paths)
    if type(layer) not in (Convolution, InnerProduct):
        return layer.forward
    weight, bias = _head_params(chain or _Chain(_Node(-1, layer, [], [])))
    if isinstance(layer, Convolution) and chain is not None and chain.residual is not None:
        return _residual_fn(_conv_fn(layer, weight, bias, None, cpu_paths), act)
    if isinstance(layer, Convolution):
        return _conv_fn(layer, weight, bias, act, cpu_paths)
    return _linear_fn(layer, weight, bias, act)


def _residual_fn(conv: Callable[..., list[torch.Tensor]], act) -> Callable[..., list[torch.Tensor]]:
    """A convolution step that adds the shortcut (its last argument) into its fresh output, then
    applies ``act`` in place: one pass instead of an Eltwise's new tensor (and a Power's)."""
    def residual(x: torch.Tensor, shortcut: torch.Tensor) -> list[torch.Tensor]:
        y = conv(x)[0].add_(shortcut)
        return [act(y) if act else y]
    return residual


def _emulated_fn(emulator: Callable[[torch.Tensor], torch.Tensor]
                 ) -> Callable[..., list[torch.Tensor]]:
    """A layer the net computes on its blob's shared buffer (an in-place Convolution or
    InnerProduct whose arithmetic is not the mathematical layer's): the net's own emulator, outside
    inference mode so that the buffer it keeps between passes stays an ordinary tensor."""
    def run(x: torch.Tensor) -> list[torch.Tensor]:
        with torch.inference_mode(False), torch.no_grad():
            return [emulator(x.float().clone())]
    return run


def _concat_chain_fn(chain: ConcatChain, first: bool) -> Callable[..., list[torch.Tensor]]:
    """A Concat step of a chain that fills one buffer (``caffe.functional.concat_chain``)."""
    def concat(*xs: torch.Tensor) -> list[torch.Tensor]:
        return [concat_chain(chain, first, xs)]
    return concat


def _autocast_dtype(autocast: str | torch.dtype | None) -> torch.dtype | None:
    if autocast is None or isinstance(autocast, torch.dtype):
        return autocast
    key = str(autocast).lower()
    if key not in _AUTOCAST_DTYPES:
        raise ValueError(f"autocast must be None, 'bf16' or 'fp16' (or a torch dtype), got {autocast!r}")
    return _AUTOCAST_DTYPES[key]


class InferenceNet:
    """The optimised forward of a TEST net (see ``optimize``).

    ``run({name: tensor})`` returns the output blobs as tensors on the net's device;
    ``forward(**inputs)`` takes and returns numpy arrays like pycaffe's ``Net.forward``. Inputs
    that are not given are read from the net's input blobs. The batch size may differ from the
    prototxt's. ``folded`` lists the layer chains that were folded into one step."""

    def __init__(self, net: Net, fold: bool, channels_last: bool, autocast: torch.dtype | None
                 ) -> None:
        self.net = net
        self.channels_last = channels_last
        self.autocast = autocast
        self.device = net.device
        self.inputs = list(net.inputs)
        self.outputs = list(net.outputs)
        graph = _trace(net)
        self._graph = graph
        # in-place layers that Caffe computes on the blob's shared buffer (caffe/inplace.py) run
        # as the plain mode runs them, never folded
        emulated = dict(getattr(net, "_emulators", {}))
        chains = _find_chains(graph, set(emulated)) if fold else {}
        skipped = {n.index for chain in chains.values() for n in chain.nodes[1:]}
        self.folded = [tuple(net._layer_names[n.index] for n in chain.nodes)
                       for chain in chains.values() if len(chain.nodes) > 1]
        self._folded_values = {v for chain in chains.values()
                               for n in chain.nodes[:-1] for v in n.tops}
        self._steps: list[_Step] = []
        cpu_paths = (self.device.type == "cpu" and channels_last and autocast is None
                     and os.environ.get("CAFFE_INFERENCE_CPU_PATHS", "1") != "0")
        for node in graph.nodes:
            if node.index in skipped or node.layer.feeds_from_blobs:
                continue
            chain = chains.get(node.index)
            tops = chain.nodes[-1].tops if chain else node.tops
            fn = (_emulated_fn(emulated[node.index]) if node.index in emulated
                  else _step_fn(node.layer, chain, cpu_paths))
            bottoms = node.bottoms + ([chain.residual.shortcut] if chain and chain.residual else [])
            self._steps.append(_Step(net._layer_names[node.index], fn, bottoms, tops))
        self.concat_chains: list[tuple[str, ...]] = []
        if cpu_paths:
            self._chain_concats()
        self._plan_releases()

    def _chain_concats(self) -> None:
        """Give the Concat steps that grow one blob along the channels one buffer each chain
        (``caffe.functional.concat_chain``)."""
        layers = {self.net._layer_names[n.index]: n.layer for n in self._graph.nodes}
        concat_steps = {k: (step.tops[0], step.bottoms) for k, step in enumerate(self._steps)
                        if type(layers.get(step.name)) is Concat and len(step.bottoms) >= 2
                        and len(step.tops) == 1
                        and getattr(layers[step.name], "axis", None) == 1}
        for chain in concat_chains(concat_steps):
            last = self._steps[chain[-1]]
            top_name = self.net.top_names[last.name][0]
            shape = self.net.blob_shape(top_name)
            if len(shape) != 4:
                continue
            state = ConcatChain(int(shape[1]), torch.channels_last if self.channels_last
                                else torch.contiguous_format)
            for position, k in enumerate(chain):
                self._steps[k].fn = _concat_chain_fn(state, position == 0)
            self.concat_chains.append(tuple(self._steps[k].name for k in chain))

    def _plan_releases(self) -> None:
        """Drop each intermediate value after the last step that reads it."""
        keep = set(self._graph.outputs.values())
        last: dict[int, int] = {}
        for k, step in enumerate(self._steps):
            for v in step.bottoms:
                last[v] = k
        for v, k in last.items():
            if v not in keep:
                self._steps[k].release.append(v)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=self.device, dtype=torch.float32)
        if self.channels_last and x.dim() == 4:
            return channels_last(x)
        return x

    def _values_for(self, names: Sequence[str]) -> list[int]:
        ids = []
        for name in names:
            if name not in self._graph.final:
                raise NetError(f"'{name}' is not a blob of net '{self.net.name}'")
            v = self._graph.final[name]
            if v in self._folded_values:
                raise NetError(f"blob '{name}' was folded away by the inference mode; build it with "
                               f"optimize(net, fold=False) to read it")
            ids.append(v)
        return ids

    def run(self, inputs: Mapping[str, torch.Tensor] | None = None, blobs: Sequence[str] = ()
            ) -> dict[str, torch.Tensor]:
        """Run the plan; return the net outputs (and the ``blobs`` asked for) as float32 tensors."""
        inputs = dict(inputs or {})
        unknown = set(inputs) - set(self.inputs)
        if unknown:
            raise NetError(f"{sorted(unknown)} are not inputs of net '{self.net.name}' "
                           f"(inputs: {self.inputs})")
        extra = [b for b in blobs if b not in self.outputs]
        extra_ids = self._values_for(extra)
        self.net._sync.flush()
        values: dict[int, torch.Tensor] = {}
        with torch.inference_mode():
            for name in self.inputs:
                given = inputs.get(name)
                source = given if given is not None else self.net._data[name]
                values[self._graph.inputs[name]] = self._prepare(torch.as_tensor(source))
            with self._autocast_context():
                self._execute(values, keep=set(extra_ids))
            names = self.outputs + extra
            ids = [self._graph.outputs[n] for n in self.outputs] + extra_ids
            return {n: values[v].float().contiguous() for n, v in zip(names, ids)}

    def _autocast_context(self):
        if self.autocast is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast)

    def _execute(self, values: dict[int, torch.Tensor], keep: set[int]) -> None:
        for step in self._steps:
            results = step.fn(*[values[v] for v in step.bottoms])
            for v, y in zip(step.tops, results):
                values[v] = y
            for v in step.release:
                if v not in keep:
                    values.pop(v, None)

    def forward(self, blobs: Sequence[str] | None = None, **inputs) -> dict[str, np.ndarray]:
        """pycaffe-style forward: numpy inputs by name, numpy outputs (and ``blobs``) by name."""
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
                   if not isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        out = self.run(tensors, blobs or ())
        return {k: v.cpu().numpy() for k, v in out.items()}

    __call__ = run

    def __repr__(self) -> str:
        return (f"InferenceNet('{self.net.name}', {len(self._steps)} steps, {len(self.folded)} "
                f"folds, channels_last={self.channels_last}, autocast={self.autocast})")


def optimize(net: Net, fold: bool = True, channels_last: bool = True,
             autocast: str | torch.dtype | None = None) -> InferenceNet:
    """Build the inference mode of a TEST ``net``.

    ``fold``: fold BatchNorm (+ Scale) into the preceding Convolution/InnerProduct where that
    layer's output feeds only them; ``channels_last``: run 4-D tensors in channels-last memory
    format; ``autocast``: None (float32), 'bf16' or 'fp16' (or a torch dtype) to run under
    ``torch.autocast`` on the net's device. The net itself is left unchanged."""
    if net.phase != TEST:
        raise NetError(f"the inference mode needs a TEST net; '{net.name}' was built for TRAIN")
    return InferenceNet(net, fold, channels_last, _autocast_dtype(autocast))
