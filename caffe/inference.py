"""Inference mode: a faster forward of a TEST net with the same results as the plain mode.

``optimize(net)`` compiles the net's layer list into a plan of steps and, where it is safe,
folds each BatchNorm (and the Scale after it) into the Convolution or InnerProduct before it:
Caffe's TEST BatchNorm is the affine map ``(x - mean) / sqrt(var + eps)`` and Scale is
``x * gamma + beta``, so both fold into the weights ``W * g`` and bias ``(b - mean) * g + beta``
with ``g = gamma / sqrt(var + eps)``. Folding is safe when the layer's output feeds only the
BatchNorm and the BatchNorm's output feeds only the Scale (no branch sees the unnormalised
value). Blob names are tracked as versions, so in-place layers (top == bottom) fold too.
Likewise a ReLU that alone reads such a step's output runs in place inside the step, and a
BatchNorm (+ Scale) that follows no convolution runs as one ``batch_norm`` call. Split and TEST
Dropout cost nothing, and each intermediate tensor is freed after its last reader.

The plan runs under ``torch.inference_mode`` with 4-D tensors in ``torch.channels_last`` and,
optionally, under bf16/fp16 autocast (meant for GPUs; outputs are returned as float32). The
original net is not modified: folded and prepared weights are copies made at ``optimize`` time,
so call ``optimize`` again after loading new weights into the net."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import NetError
from .layers.base import TEST, Layer
from .layers.conv import Convolution, convolution
from .layers.inner_product import InnerProduct
from .layers.neuron import Dropout, ReLU
from .layers.normalization import BatchNorm, Scale
from .layers.structure import Silence, Split
from .net import Net

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
class _Chain:
    """Layers run as one step: a head (Convolution, InnerProduct or TEST BatchNorm), then
    optionally the BatchNorm, Scale and ReLU that each read only the previous one's output."""

    head: _Node
    bn: _Node | None = None
    scale: _Node | None = None
    relu: _Node | None = None

    @property
    def nodes(self) -> list[_Node]:
        return [n for n in (self.head, self.bn, self.scale, self.relu) if n is not None]


def _next(graph: _Graph, by_index: dict[int, _Node], node: _Node, accept) -> _Node | None:
    """The sole reader of ``node``'s top if ``accept(layer)`` holds for it."""
    if len(node.tops) != 1:
        return None
    index = _sole_consumer(graph, node.tops[0])
    if index is None or not accept(by_index[index].layer):
        return None
    return by_index[index]


def _find_chains(graph: _Graph) -> dict[int, _Chain]:
    """The chains to fuse, keyed by their head's layer index. A Convolution/InnerProduct absorbs
    the TEST BatchNorm (+ Scale) and the ReLU that read only its output; a BatchNorm that
    follows no such layer becomes one affine step with its Scale (+ ReLU)."""
    by_index = {n.index: n for n in graph.nodes}
    chains: dict[int, _Chain] = {}
    claimed: set[int] = set()
    for node in graph.nodes:
        if node.index in claimed:
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
    if chain.bn is None:
        return weight.clone().contiguous(), None if bias is None else bias.clone()
    g, h = _affine(chain.bn.layer, chain.scale.layer if chain.scale else None)
    n = weight.shape[0]
    folded_weight = weight.double() * g.reshape((n,) + (1,) * (weight.dim() - 1))
    folded_bias = h if bias is None else bias.double() * g + h
    return folded_weight.float().contiguous(), folded_bias.float()


def _activation(chain: _Chain | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The fused ReLU, applied in place (the chain's own fresh output has no other reader)."""
    if chain is None or chain.relu is None:
        return None
    slope = chain.relu.layer.lp.relu_param.negative_slope
    return (lambda y: F.leaky_relu_(y, slope)) if slope else F.relu_


def _conv_fn(layer: Convolution, weight: torch.Tensor, bias: torch.Tensor | None, act
             ) -> Callable[..., list[torch.Tensor]]:
    stride, pad, dilation, group = layer.stride, layer.pad, layer.dilation, layer.group

    def conv(*xs: torch.Tensor) -> list[torch.Tensor]:
        ys = [convolution(x, weight, bias, stride, pad, dilation, group, layer.axis) for x in xs]
        return [act(y) for y in ys] if act else ys
    return conv


def _linear_fn(layer: InnerProduct, weight: torch.Tensor, bias: torch.Tensor | None, act
               ) -> Callable[..., list[torch.Tensor]]:
    axis, k = layer.axis, layer.k

    def linear(x: torch.Tensor) -> list[torch.Tensor]:
        y = F.linear(x.reshape(*x.shape[:axis], k), weight, bias)
        return [act(y) if act else y]
    return linear


def _affine_fn(chain: _Chain, act) -> Callable[..., list[torch.Tensor]]:
    """A TEST BatchNorm (+ Scale) as one batch_norm call with the Scale as its affine part."""
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
    return affine


def _step_fn(layer: Layer, chain: _Chain | None
             ) -> Callable[..., list[torch.Tensor]]:
    """The function a step calls: a fused chain, a Convolution/InnerProduct on prepared copies
    of its weights, or else the layer's own forward."""
    act = _activation(chain)
    if type(layer) is BatchNorm and chain is not None:
        return _affine_fn(chain, act)
    if type(layer) not in (Convolution, InnerProduct):
        return layer.forward
    weight, bias = _head_params(chain or _Chain(_Node(-1, layer, [], [])))
    if isinstance(layer, Convolution):
        return _conv_fn(layer, weight, bias, act)
    return _linear_fn(layer, weight, bias, act)


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
        chains = _find_chains(graph) if fold else {}
        skipped = {n.index for chain in chains.values() for n in chain.nodes[1:]}
        self.folded = [tuple(net._layer_names[n.index] for n in chain.nodes)
                       for chain in chains.values() if len(chain.nodes) > 1]
        self._folded_values = {v for chain in chains.values()
                               for n in chain.nodes[:-1] for v in n.tops}
        self._steps: list[_Step] = []
        for node in graph.nodes:
            if node.index in skipped or node.layer.feeds_from_blobs:
                continue
            chain = chains.get(node.index)
            tops = chain.nodes[-1].tops if chain else node.tops
            self._steps.append(_Step(net._layer_names[node.index],
                                     _step_fn(node.layer, chain),
                                     node.bottoms, tops))
        self._plan_releases()

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
            return x.contiguous(memory_format=torch.channels_last)
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
