"""Net: a Caffe net built from a NetParameter for one phase (and level/stages), run on PyTorch.

Construction follows Caffe's Net::Init: layers are filtered by their include/exclude rules, each
layer is set up on the shapes of its bottoms, tops that reuse a bottom's name are in place, a blob
feeding several layers is shared (its gradients add up, as Caffe's implicit Split does), and
parameters with the same ``param { name }`` are one parameter. Forward gives every named blob.

Backward is Caffe's, layer by layer from the diffs stored in the blobs (``backward(start, end)``,
repeatable, after any ``forward(start, end)``): pycaffe's ``forward`` records each layer's autograd
graph on its own, and ``backward`` runs the layers it is asked for, each from its tops' diffs to its
bottoms' diffs and its parameters' diffs (which accumulate). The solver's step keeps a faster path,
``run``: one autograd graph from the weighted loss."""
from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from . import inplace, model_io
from .blob import Blob, HostSync, param_blob
from .errors import BlobNameError, NetError, WeightsError, WeightsWarning
from .functional import ConcatChain, concat_chain
from .layers import create_layer
from .layers.base import TEST, TRAIN, Layer, Shape
from .layers.conv import Convolution
from .layers.inner_product import InnerProduct
from .layers.neuron import Power, ReLU
from .layers.normalization import BatchNorm, Scale
from .layers.pooling import Pooling
from .layers.structure import Concat, Eltwise
from .memory import keep_freed_memory
from .mode import current_device, net_generator
from .net_graph import LayerSpec, concat_chains, plan_backward
from .net_pycaffe import PycaffeNetMethods
from .proto import caffe_pb2

PathLike = str | os.PathLike


# Layers whose output is a fresh tensor that their own backward does not keep: an in-place ReLU
# right after one may write over that output in the solver's step (Net._find_relus_over).
_FRESH_OUTPUT_LAYERS = (Convolution, BatchNorm, Scale, Eltwise, Concat, InnerProduct)
INPLACE_RELU_ENV = "CAFFE_INPLACE_RELU"
NEGATED_CONCAT_ENV = "CAFFE_FUSE_CRELU"
CONCAT_CHAIN_ENV = "CAFFE_CONCAT_CHAIN"


def state_meets_rule(state, rule, layer_name: str = "") -> bool:
    """Caffe's Net::StateMeetsRule for one NetStateRule."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def filter_layers(net_param, state) -> list:
    """The LayerParameters of ``net_param`` that the NetState ``state`` includes."""
    kept = []
    for lp in net_param.layer:
        if len(lp.include) and len(lp.exclude):
            raise NetError(f"layer '{lp.name}' specifies both include and exclude rules")
        if len(lp.include):
            included = any(state_meets_rule(state, r, lp.name) for r in lp.include)
        else:
            included = not any(state_meets_rule(state, r, lp.name) for r in lp.exclude)
        if included:
            kept.append(lp)
    return kept


class _ParamInfo:
    """Where a learnable parameter came from, and its lr/decay multipliers."""

    def __init__(self, layer: str, index: int, lr_mult: float, decay_mult: float) -> None:
        self.layer, self.index, self.lr_mult, self.decay_mult = layer, index, lr_mult, decay_mult


class LayerView:
    """pycaffe's view of a layer: ``type``, ``blobs`` as numpy-backed Blobs, and the module."""

    def __init__(self, module: Layer, sync: HostSync) -> None:
        self.module = module
        self.type = module.type
        self.name = module.name
        self.blobs = [param_blob(p, sync) for p in module.blobs]


class Net(PycaffeNetMethods):
    """pycaffe's ``caffe.Net``.

    ``Net(prototxt, caffe.TEST, weights=...)``, ``Net(prototxt, phase, level=0, stages=[...])`` and
    the old ``Net(prototxt, weights, caffe.TEST)`` are accepted; ``net_param=`` builds from a
    NetParameter message instead of a file."""

    def __init__(self, network_file: PathLike | None = None, *args, phase: int | None = None,
                 weights: PathLike | None = None, level: int = 0, stages: Sequence[str] = (),
                 net_param=None) -> None:
        args = list(args)
        if args and isinstance(args[0], (str, os.PathLike)):
            weights = args.pop(0)
        if args:
            phase = args.pop(0)
        if args:
            level = args.pop(0)
        if args:
            stages = args.pop(0)
        if phase not in (TRAIN, TEST):
            raise NetError(f"phase must be caffe.TRAIN or caffe.TEST, got {phase!r}")
        if net_param is None:
            if network_file is None:
                raise NetError("Net needs a prototxt file or a NetParameter")
            net_param = model_io.read_net(network_file)
            self.source = str(network_file)
        else:
            self.source = "<NetParameter>"
        self.phase = phase
        keep_freed_memory()
        self._sync = HostSync()
        self._build(net_param, phase, level, list(stages or ()))
        if weights is not None:
            self.copy_from(weights)

    # ------------------------------------------------------------------ construction
    def _build(self, net_param, phase: int, level: int, stages: list[str]) -> None:
        state = caffe_pb2.NetState()
        state.CopyFrom(net_param.state)
        state.phase = phase
        state.level = level
        state.stage.extend(s for s in stages if s not in state.stage)
        self.state = state
        self.name = net_param.name
        self.force_backward = net_param.force_backward
        self.net_param = caffe_pb2.NetParameter()
        self.net_param.CopyFrom(net_param)
        del self.net_param.layer[:]
        layer_params = filter_layers(net_param, state)
        if not layer_params:
            phase_name = caffe_pb2.Phase.Name(phase)
            raise NetError(f"{self.source}: no layers in phase {phase_name} (the file defines "
                           f"{len(net_param.layer)}; check the path and the include/exclude rules)")
        self.net_param.layer.extend(layer_params)
        self.modules = nn.ModuleList()
        self.bottom_names: OrderedDict[str, list[str]] = OrderedDict()
        self.top_names: OrderedDict[str, list[str]] = OrderedDict()
        self._layer_names: list[str] = []
        self._shapes: OrderedDict[str, Shape] = OrderedDict()
        self.blob_loss_weights: OrderedDict[str, float] = OrderedDict()
        self.loss_tops: list[tuple[str, float]] = []
        self.inputs: list[str] = []
        self._param_infos: dict[int, _ParamInfo] = {}
        self._param_owner: dict[str, nn.Parameter] = {}
        self._param_spec_owner: dict[str, tuple[str, int]] = {}
        producers: dict[str, str] = {}
        consumed: set[str] = set()
        shapes_in: list[list[Shape]] = []
        shapes_out: list[list[Shape]] = []
        capacity: dict[str, int] = {}
        generator = net_generator()
        for lp in layer_params:
            if lp.name in self.bottom_names:
                raise NetError(f"{self.source}: two layers are named '{lp.name}'")
            layer = create_layer(lp, phase)
            layer.generator = generator
            bottom_shapes = []
            for i, b in enumerate(lp.bottom):
                if b not in self._shapes:
                    raise NetError(f"{self.source}: Unknown bottom blob '{b}' (layer '{lp.name}', "
                                   f"bottom index {i}); no earlier layer produces it")
                bottom_shapes.append(self._shapes[b])
                consumed.add(b)
            layer.setup(bottom_shapes)
            top_shapes = layer.reshape(bottom_shapes)
            if len(top_shapes) != len(lp.top):
                raise layer.error(f"produced {len(top_shapes)} tops for {len(lp.top)} top names")
            for t, shape in zip(lp.top, top_shapes):
                if t in producers and t not in lp.bottom:
                    raise NetError(f"{self.source}: top blob '{t}' of layer '{lp.name}' is already "
                                   f"produced by layer '{producers[t]}'")
                producers.setdefault(t, lp.name)
                consumed.discard(t)
                if any(int(d) < 1 for d in shape):
                    raise layer.error(f"top '{t}' would have the shape {tuple(shape)} from bottoms "
                                      f"{bottom_shapes}: every dimension must be at least 1")
                self._shapes[t] = tuple(int(s) for s in shape)
                capacity[t] = max(capacity.get(t, 0), math.prod(self._shapes[t]))
            shapes_in.append(bottom_shapes)
            shapes_out.append([self._shapes[t] for t in lp.top])
            self._set_loss_weights(layer, lp)
            self._register_params(layer, lp)
            if layer.feeds_from_blobs:
                self.inputs.extend(lp.top)
            self.modules.append(layer)
            self.bottom_names[lp.name] = list(lp.bottom)
            self.top_names[lp.name] = list(lp.top)
            self._layer_names.append(lp.name)
        # Caffe keeps the blobs that no layer consumes in a std::set: outputs are sorted by name.
        self.outputs = sorted(b for b in self._shapes if b not in consumed)
        self._bn_scale = self._find_bn_scale_pairs()
        self.layer_dict = OrderedDict((l.name, l) for l in self.modules)
        self._layer_index = {name: i for i, name in enumerate(self._layer_names)}
        self.requires_backward = phase == TRAIN or self.force_backward
        self._plan = plan_backward(self._layer_specs(), self.force_backward)
        self._records: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self._split_diff: dict[tuple[int, int], torch.Tensor] = {}
        self._data: dict[str, torch.Tensor] = {}
        self._diff: dict[str, torch.Tensor] = {}
        self._buffers: dict[str, inplace.SharedBuffer] = {}
        self._emulators: dict[int, inplace.InplaceEmulator] = {}
        self._buffer_backward: dict[int, inplace.BufferBackward] = {}
        self._setup_inplace_reshapes(shapes_in, shapes_out, capacity)
        self._relu_over = self._find_relus_over()
        self._relu_pool = self._find_relu_pools()
        self._bn_scale_relu = self._find_bn_scale_relus()
        self._negated_concat = self._find_negated_concats()
        self._concat_chain = self._find_concat_chains()
        self.device = torch.device("cpu")
        self._allocate()
        for name, w in self.loss_tops:
            self._diff[name] = torch.full(self._shapes[name], float(w))
        self.to(current_device())

    def _layer_specs(self) -> list[LayerSpec]:
        """What Caffe's backward bookkeeping needs of each layer (net_graph.plan_backward)."""
        specs = []
        for layer, lp in zip(self.modules, self.net_param.layer):
            lr = [self._param_infos[id(p)].lr_mult for p in layer.blobs if id(p) in self._param_infos]
            specs.append(LayerSpec(
                list(lp.bottom), list(lp.top), [w != 0 for w in _top_loss_weights(layer, lp)],
                any(m != 0 for m in lr),
                [layer.allow_force_backward(j) for j in range(len(lp.bottom))]))
        return specs

    def _setup_inplace_reshapes(self, shapes_in: list[list[Shape]], shapes_out: list[list[Shape]],
                                capacity: dict[str, int]) -> None:
        """Caffe's shared-buffer arithmetic for the layers that change their blob's shape in place
        (caffe/inplace.py), or the mathematical layer with CAFFE_INPLACE_RESHAPE=math; warns."""
        found = inplace.find_inplace_reshapes(list(self.modules), list(self.bottom_names.values()),
                                              list(self.top_names.values()), shapes_in, shapes_out)
        if not found:
            return
        emulate = inplace.caffe_arithmetic_enabled()
        names = ", ".join(f"'{self._layer_names[i]}' ({self.modules[i].type})" for i in found)
        other = [self._layer_names[i] for i in found
                 if self.modules[i].type not in inplace.EMULATED_TYPES
                 or len(self.bottom_names[self._layer_names[i]]) != 1]
        if emulate:
            how = ("they compute Caffe's arithmetic on the shared buffer, as real Caffe does (not the "
                   f"mathematical layer; {inplace.ENV}=math gives that)")
            if other:
                how += f"; {', '.join(other)} compute(s) the mathematical layer (no emulation)"
        else:
            how = (f"{inplace.ENV}=math: they compute the mathematical layer, which is not what real "
                   "Caffe computes (a caffemodel trained in Caffe gives other outputs)")
        warnings.warn(f"{self.source}: layers {names} work in place on a blob whose shape they "
                      f"change, or multiply into the memory they read (1x1 Convolution, "
                      f"InnerProduct); {how}", inplace.InplaceReshapeWarning, stacklevel=3)
        if not emulate:
            return
        for i in found:
            name = self._layer_names[i]
            if name in other:
                continue
            blob = self.bottom_names[name][0]
            buf = self._buffers.setdefault(blob, inplace.SharedBuffer(capacity[blob]))
            self._emulators[i] = inplace.InplaceEmulator(self.modules[i], buf,
                                                         lambda b=blob: self._data[b])
        # ReLU, Scale, BatchNorm in place on such a blob: Caffe's backward reads the blob as it is
        # at backward time (its final data and shape), see caffe/inplace.py
        for i, layer in enumerate(self.modules):
            name = self._layer_names[i]
            bottoms = self.bottom_names[name]
            if (i in self._emulators or len(bottoms) != 1 or bottoms[0] not in self._buffers
                    or not inplace.wants_buffer_backward(layer, bottoms, self.top_names[name])):
                continue
            self._buffer_backward[i] = inplace.BufferBackward(
                layer, self._buffers[bottoms[0]], lambda b=bottoms[0]: self._data[b])
        self._bn_scale = {i: j for i, j in self._bn_scale.items()
                          if i not in self._buffer_backward and j not in self._buffer_backward}

    def _find_bn_scale_pairs(self) -> dict[int, int]:
        """BatchNorm layer index -> index of the Scale right after it that works in place on the
        BatchNorm's top (the BVLC ResNet/DenseNet pattern). The BatchNorm's own output is then
        never visible as blob data, so the two may run as one batch_norm call (see ``run``)."""
        pairs = {}
        for i, (bn, scale) in enumerate(zip(self.modules, list(self.modules)[1:])):
            if not isinstance(bn, BatchNorm) or not isinstance(scale, Scale):
                continue
            top = self.top_names[bn.name]
            if self.bottom_names[scale.name] != top or self.top_names[scale.name] != top:
                continue
            blobs = scale.per_channel_blobs()
            if blobs is not None and blobs[0].numel() == bn.blobs[0].numel():
                pairs[i] = i + 1
        return pairs

    def _find_relus_over(self) -> dict[int, bool]:
        """In-place ReLU layer index -> whether its backward may mask its incoming gradient in
        place, for each in-place ReLU that ``run`` writes over its bottom tensor: the layer right
        before it produces that tensor fresh (``_FRESH_OUTPUT_LAYERS``) and no other layer reads
        it, so no blob Caffe exposes sees the difference. The gradient is masked in place when
        the ReLU's only reader is a Convolution, whose input gradient is a fresh tensor.
        CAFFE_INPLACE_RELU=0 turns both off."""
        if os.environ.get(INPLACE_RELU_ENV, "1") == "0":
            return {}
        special = set(self._emulators) | set(self._buffer_backward)
        found = {}
        for k in range(1, len(self.modules)):
            relu, producer = self.modules[k], self.modules[k - 1]
            bottoms, tops = self.bottom_names[relu.name], self.top_names[relu.name]
            produced = self.top_names[producer.name]
            if (not isinstance(relu, ReLU) or not relu.writes_over_bottom or bottoms != tops
                    or k in special or k - 1 in special
                    or not isinstance(producer, _FRESH_OUTPUT_LAYERS)
                    or (isinstance(producer, Concat) and len(self.bottom_names[producer.name]) < 2)
                    or bottoms[0] not in produced
                    or (k - 1, produced.index(bottoms[0])) in self._plan.splits):
                continue
            reader = self._only_reader(k, bottoms[0])
            found[k] = reader is not None and type(self.modules[reader]) is Convolution
        return found

    def _find_bn_scale_relus(self) -> dict[int, int]:
        """In-place ReLU index (one of ``_find_relus_over``, not taken by a ReLU + pooling pair)
        -> index of the BatchNorm whose in-place Scale it follows: ``run`` computes the three as
        one normalisation with the ReLU inside (``BatchNorm.normalize``). Off with
        CAFFE_INPLACE_RELU=0."""
        return {j + 1: i for i, j in self._bn_scale.items()
                if j + 1 in self._relu_over and j + 1 not in self._relu_pool}

    def _find_relu_pools(self) -> dict[int, int]:
        """In-place ReLU index (one of ``_find_relus_over``) -> index of the MAX Pooling right
        after it that is the only reader of its top: ``run`` computes the two as one autograd node
        (``Pooling.forward_after_relu``), whose backward masks the pooled gradient instead of the
        ReLU's input gradient (same values). Off with CAFFE_INPLACE_RELU=0."""
        found = {}
        for k in self._relu_over:
            pool = self.modules[k + 1] if k + 1 < len(self.modules) else None
            blob = self.top_names[self._layer_names[k]][0]
            if (isinstance(pool, Pooling) and pool.fuses_relu()
                    and self.bottom_names[pool.name] == [blob]
                    and self._only_reader(k, blob) == k + 1):
                found[k] = k + 1
        return found

    def _find_negated_concats(self) -> dict[int, int]:
        """Power layer index -> index of the Concat right after it, for CReLU's pair: a Power
        ``shift - x`` (``Power.negation_shift``) whose top only that Concat reads, concatenated
        after its own bottom. ``run`` computes the two as one node
        (``Concat.forward_with_negation``). CAFFE_FUSE_CRELU=0 turns it off."""
        if os.environ.get(NEGATED_CONCAT_ENV, "1") == "0":
            return {}
        special = set(self._emulators) | set(self._buffer_backward)
        found = {}
        for i in range(len(self.modules) - 1):
            power, concat = self.modules[i], self.modules[i + 1]
            if (not isinstance(power, Power) or not isinstance(concat, Concat)
                    or power.negation_shift() is None or i in special or i + 1 in special):
                continue
            bottom, top = self.bottom_names[power.name][0], self.top_names[power.name][0]
            if (top != bottom and self.bottom_names[concat.name] == [bottom, top]
                    and self._only_reader(i, top) == i + 1):
                found[i] = i + 1
        return found

    def _find_concat_chains(self) -> dict[int, tuple[ConcatChain, bool]]:
        """Concat layer index -> (its chain, whether it is the chain's first step), for chains of
        channel Concats of 4-D blobs in which each one's first bottom is the previous one's top
        (DenseNet's blocks; ``functional.concat_chain``), each such top read by one Concat of
        the chain and written by no other layer (no in-place layer on it, which would write into
        the shared buffer). ``run`` computes them into one buffer per chain when it records for
        a backward (the solver's step). CAFFE_CONCAT_CHAIN=0 turns it off."""
        if os.environ.get(CONCAT_CHAIN_ENV, "1") == "0":
            return {}
        special = set(self._emulators) | set(self._buffer_backward)
        writers: dict[str, int] = {}
        for tops in self.top_names.values():
            for t in tops:
                writers[t] = writers.get(t, 0) + 1
        concats = {}  # index -> (top, bottoms), for the Concats a chain may hold
        for i, layer in enumerate(self.modules):
            bottoms, tops = self.bottom_names[layer.name], self.top_names[layer.name]
            if (isinstance(layer, Concat) and i not in special and len(bottoms) >= 2
                    and len(tops) == 1 and tops[0] not in bottoms and writers[tops[0]] == 1
                    and layer.axis == 1 and len(self._shapes[tops[0]]) == 4):
                concats[i] = (tops[0], bottoms)
        found: dict[int, tuple[ConcatChain, bool]] = {}
        for chain in concat_chains(concats):
            state = ConcatChain(self._shapes[concats[chain[-1]][0]][1])
            for position, i in enumerate(chain):
                found[i] = (state, position == 0)
            state.accumulate_at = {self._shapes[concats[i][0]][1] for i in chain[:-1]
                                   if self._sole_batch_norm_reader(concats[i][0], special)}
        return found

    def _sole_batch_norm_reader(self, blob: str, special: set[int]) -> bool:
        """Whether ``blob`` (a Concat chain's top) is read by exactly two layers, the chain's
        next Concat and one BatchNorm computed plainly: that BatchNorm may then add its input
        gradient into the chain's gradient buffer in place (``ConcatChain.grad_target``), no
        other gradient of the top being summed with the buffer's prefix behind its back."""
        readers = [i for i, layer in enumerate(self.modules)
                   if blob in self.bottom_names[layer.name]]
        return (len(readers) == 2 and not any(t == blob for t, _ in self.loss_tops)
                and sum(isinstance(self.modules[i], BatchNorm) and i not in special
                        for i in readers) == 1
                and sum(isinstance(self.modules[i], Concat) for i in readers) == 1)

    def _only_reader(self, k: int, blob: str) -> int | None:
        """The index of the one layer that reads the version of ``blob`` that layer k writes,
        computed plainly (no in-place emulation), when that version feeds no other layer and no
        loss; else None."""
        if (k, 0) in self._plan.splits or any(t == blob for t, _ in self.loss_tops):
            return None
        for m in range(k + 1, len(self.modules)):
            name = self._layer_names[m]
            if blob in self.bottom_names[name]:
                plain = m not in self._emulators and m not in self._buffer_backward
                return m if plain else None
            if blob in self.top_names[name]:
                return None
        return None

    def _set_loss_weights(self, layer: Layer, lp) -> None:
        n = len(lp.top)
        if len(lp.loss_weight) and len(lp.loss_weight) != n:
            raise layer.error(f"loss_weight must be unspecified or given once per top ({n}), got "
                              f"{len(lp.loss_weight)}")
        for t, w in zip(lp.top, _top_loss_weights(layer, lp)):
            if w != 0:
                self.loss_tops.append((t, w))
                self.blob_loss_weights[t] = w
            else:
                self.blob_loss_weights.setdefault(t, 0.0)

    def _register_params(self, layer: Layer, lp) -> None:
        for i, p in enumerate(layer.blobs):
            if i < len(lp.param):
                spec = lp.param[i]
                lr_mult, decay_mult, name = spec.lr_mult, spec.decay_mult, spec.name
            else:
                spec, lr_mult, decay_mult, name = None, layer.default_lr_mult, 1.0, ""
            if name and name in self._param_owner:
                owner = self._param_owner[name]
                strict = spec is None or spec.share_mode == caffe_pb2.ParamSpec.STRICT
                same = owner.shape == p.shape if strict else owner.numel() == p.numel()
                if not same:
                    owner_layer, owner_index = self._param_spec_owner[name]
                    raise layer.error(
                        f"shared param '{name}' (blob {i}) has shape {tuple(p.shape)} but its owner "
                        f"'{owner_layer}' blob {owner_index} has {tuple(owner.shape)}")
                if owner.shape != p.shape:
                    owner.data = owner.data.reshape(p.shape) if strict else owner.data
                layer.blobs[i] = owner
                continue
            if name:
                self._param_owner[name] = p
                self._param_spec_owner[name] = (lp.name, i)
            self._param_infos[id(p)] = _ParamInfo(lp.name, i, lr_mult, decay_mult)

    def _allocate(self) -> None:
        for name, shape in self._shapes.items():
            self._data[name] = torch.zeros(shape, dtype=torch.float32)
        for layer, tops in zip(self.modules, self.top_names.values()):
            for t, data in zip(tops, layer.initial_top_data()):
                if data is not None:
                    self._data[t] = data

    # ------------------------------------------------------------------ pycaffe attributes
    @property
    def blobs(self) -> OrderedDict[str, Blob]:
        """Every blob by name; the views are made once (they read the current tensors)."""
        if getattr(self, "_blob_views", None) is None:
            self._blob_views = OrderedDict((name, self._blob(name)) for name in self._data)
        return self._blob_views

    def _blob(self, name: str) -> Blob:
        def get_diff() -> torch.Tensor:
            buf = self._buffers.get(name)
            if buf is not None:
                shape = tuple(self._data[name].shape)
                buf.ensure(math.prod(shape), self._data[name].device)
                return buf.view("diff", shape)
            d = self._diff.get(name)
            if d is None or d.shape != self._data[name].shape:
                d = torch.zeros_like(self._data[name], requires_grad=False)
                self._diff[name] = d
            return d

        def set_data(t: torch.Tensor) -> None:
            self._data[name] = t
            self._diff.pop(name, None)

        return Blob(lambda: self._data[name].detach(), get_diff, set_data, self._sync)

    @property
    def params(self) -> OrderedDict[str, list[Blob]]:
        return OrderedDict((l.name, [param_blob(p, self._sync) for p in l.blobs])
                           for l in self.modules if len(l.blobs))

    @property
    def layers(self) -> list[LayerView]:
        return [LayerView(l, self._sync) for l in self.modules]

    @property
    def learnable_params(self) -> list[nn.Parameter]:
        """Every distinct parameter blob in net order (BatchNorm statistics included, lr_mult 0)."""
        seen, out = set(), []
        for layer in self.modules:
            for p in layer.blobs:
                if id(p) not in seen and id(p) in self._param_infos:
                    seen.add(id(p))
                    out.append(p)
        return out

    @property
    def params_lr(self) -> list[float]:
        return [self._param_infos[id(p)].lr_mult for p in self.learnable_params]

    @property
    def params_weight_decay(self) -> list[float]:
        return [self._param_infos[id(p)].decay_mult for p in self.learnable_params]

    def param_info(self, p: nn.Parameter) -> _ParamInfo:
        return self._param_infos[id(p)]

    def blob_shape(self, name: str) -> Shape:
        return tuple(self._data[name].shape)

    # ------------------------------------------------------------------ execution
    def to(self, device: torch.device | str) -> "Net":
        """Move parameters and blobs to ``device``."""
        device = torch.device(device)
        self._sync.flush()
        self.modules.to(device)
        self._data = {k: v.detach().to(device) for k, v in self._data.items()}
        self._diff = {k: v.to(device) for k, v in self._diff.items()}
        self._split_diff = {k: v.to(device) for k, v in self._split_diff.items()}
        self._records.clear()
        self.device = device
        return self

    def _layer_index_of(self, name: str) -> int:
        if name not in self._layer_index:
            raise NetError(f"no layer named '{name}' in net '{self.name}'")
        return self._layer_index[name]

    def _layer_range(self, start: str | None, end: str | None) -> range:
        first = 0 if start is None else self._layer_index_of(start)
        last = len(self.modules) - 1 if end is None else self._layer_index_of(end)
        return range(first, last + 1)

    def _feed(self, inputs: dict[str, object]) -> None:
        """Copy ``inputs`` into their blobs; an input of a new shape reshapes the net, and one that
        a layer cannot take is a NetError naming the input, both shapes and the layer, with the
        net left as it was."""
        saved = dict(self._data)
        reshaped = []
        for name, value in inputs.items():
            if name not in self._data:
                raise BlobNameError(f"'{name}' is not a blob of net '{self.name}'")
            t = torch.as_tensor(np.asarray(value, dtype=np.float32) if not isinstance(value, torch.Tensor)
                                else value, dtype=torch.float32)
            if tuple(t.shape) != tuple(self._data[name].shape):
                reshaped.append(f"'{name}' {tuple(t.shape)} (was {tuple(self._data[name].shape)})")
                self._data[name] = t.to(self.device).clone()
            else:
                with torch.no_grad():
                    self._data[name].copy_(t)
        if not reshaped:
            return
        try:
            self.reshape()
        except (NetError, RuntimeError) as exc:
            self._data.clear()
            self._data.update(saved)
            raise NetError(f"net '{self.name}': input {', '.join(reshaped)} does not fit: {exc}") from exc

    def run(self, layers: Iterable[int] | None = None) -> torch.Tensor:
        """The solver's fast forward over the given layer indices (all by default): one autograd
        graph when recording, BatchNorm fused with its in-place Scale (and the in-place ReLU after
        them). Returns the weighted loss as a tensor (the root for ``backward()``); blob diffs
        are not kept."""
        self._sync.flush()
        self._records.clear()
        record = self.requires_backward and torch.is_grad_enabled()
        indices = list(layers) if layers is not None else range(len(self.modules))
        with torch.set_grad_enabled(record):
            skip: set[int] = set()
            previous = None
            for pos, i in enumerate(indices):
                if i in skip:
                    previous = i
                    continue
                following = indices[pos + 1] if pos + 1 < len(indices) else None
                if following is not None and self._bn_scale.get(i) == following:
                    after = indices[pos + 2] if pos + 2 < len(indices) else None
                    relu = (after if self._bn_scale_relu.get(after) == i
                            and after in self._relu_over else None)
                    self._forward_bn_scale(i, following, relu)
                    skip = {following} if relu is None else {following, relu}
                elif following is not None and self._negated_concat.get(i) == following:
                    self._forward_negated_concat(i, following)
                    skip = {following}
                elif record and i in self._concat_chain and self.device.type == "cpu":
                    self._forward_concat_chain(i)
                elif i in self._relu_over and previous == i - 1:
                    if following is not None and self._relu_pool.get(i) == following:
                        self._forward_relu_pool(i, following)
                        skip = {following}
                    else:
                        self._forward_relu_over(i)
                else:
                    self._forward_layer(i)
                previous = i
        return self._weighted_loss()

    def _weighted_loss(self) -> torch.Tensor:
        loss = None
        for name, w in self.loss_tops:
            term = self._data[name].sum() * w
            loss = term if loss is None else loss + term
        if loss is None:
            return torch.zeros((), device=self.device)
        return loss

    def _layer_inputs(self, i: int) -> list[torch.Tensor]:
        name = self._layer_names[i]
        bottoms, tops = self.bottom_names[name], self.top_names[name]
        inputs = bottoms + tops if self.modules[i].reads_own_tops else bottoms
        return [self._data[b] for b in inputs]

    def _compute(self, i: int, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        emulator = self._emulators.get(i) or self._buffer_backward.get(i)
        if emulator is not None:
            return [emulator(inputs[0])]
        return self.modules[i].forward(*inputs)

    def _forward_layer(self, i: int) -> None:
        if self.modules[i].feeds_from_blobs:
            return
        outputs = self._compute(i, self._layer_inputs(i))
        for t, y in zip(self.top_names[self._layer_names[i]], outputs):
            self._data[t] = y

    def _forward_bn_scale(self, i: int, j: int, relu: int | None = None) -> None:
        """Layers i (BatchNorm) and j (its in-place Scale) as one normalisation with affine, and
        the in-place ReLU ``relu`` after them (one of ``_relu_over``) where given: with the C
        kernels the ReLU then costs no pass of its own (caffe.functional.batch_norm)."""
        name = self._layer_names[i]
        bottom, top = self.bottom_names[name][0], self.top_names[name][0]
        weight, bias = self.modules[j].per_channel_blobs()
        grad_in_place = relu is not None and self._relu_over[relu]
        self._data[top] = self.modules[i].normalize(self._data[bottom], weight, bias,
                                                    relu is not None, grad_in_place)

    def _forward_relu_over(self, i: int) -> None:
        """In-place ReLU i written over the fresh tensor the layer before it made in this run (a
        view, such as a convolution's reshaped product, takes the plain forward: autograd would
        copy its base's whole gradient to write over it)."""
        top = self.top_names[self._layer_names[i]][0]
        x = self._data[top]
        if x._base is not None:
            self._forward_layer(i)
            return
        self._data[top] = self.modules[i].forward_over(x, self._relu_over[i])[0]

    def _forward_negated_concat(self, i: int, j: int) -> None:
        """Power i (``shift - x``) and the Concat j of its bottom and top, as one node."""
        name = self._layer_names[i]
        x = self._data[self.bottom_names[name][0]]
        top, negated = self.modules[j].forward_with_negation(x, self.modules[i].negation_shift())
        self._data[self.top_names[name][0]] = negated
        self._data[self.top_names[self._layer_names[j]][0]] = top

    def _forward_concat_chain(self, i: int) -> None:
        """Concat i as a step of its chain (``_find_concat_chains``)."""
        chain, first = self._concat_chain[i]
        name = self._layer_names[i]
        xs = [self._data[b] for b in self.bottom_names[name]]
        self._data[self.top_names[name][0]] = concat_chain(chain, first, xs)

    def _forward_relu_pool(self, i: int, j: int) -> None:
        """In-place ReLU i and the MAX Pooling j that alone reads its top, as one node (a view
        takes the plain layers, as in ``_forward_relu_over``)."""
        top = self.top_names[self._layer_names[i]][0]
        x = self._data[top]
        if x._base is not None:
            self._forward_layer(i)
            self._forward_layer(j)
            return
        self._data[top], pooled = self.modules[j].forward_after_relu(x)
        self._data[self.top_names[self._layer_names[j]][0]] = pooled

    def _forward_recorded(self, i: int) -> None:
        """Layer i on its own: its bottoms enter as fresh autograd leaves (those that need backward
        require grad), so that ``backward`` can run it alone from its tops' diffs."""
        if self.modules[i].feeds_from_blobs:
            return
        record = torch.is_grad_enabled() and self._plan.layer_need[i]
        inputs = [x.detach() for x in self._layer_inputs(i)]
        if record:
            for x, need in zip(inputs, self._plan.bottom_need[i]):
                x.requires_grad_(need)
        with torch.set_grad_enabled(record):
            outputs = list(self._compute(i, inputs))
        if record:
            self._records[i] = (inputs, outputs)
        else:
            self._records.pop(i, None)
        for t, y in zip(self.top_names[self._layer_names[i]], outputs):
            self._data[t] = y.detach()

    def forward(self, blobs: Sequence[str] | None = None, start: str | None = None,
                end: str | None = None, **kwargs) -> dict[str, np.ndarray]:
        """pycaffe's forward: feed ``kwargs`` into input blobs, run the layers from ``start`` to
        ``end`` on the data the blobs hold, and return the output blobs (the tops of ``end`` if
        given) and the ``blobs`` asked for as numpy arrays."""
        self._feed(kwargs)
        self._sync.flush()
        indices = self._layer_range(start, end)
        if torch.is_grad_enabled() and any(self._plan.layer_need[i] for i in indices):
            for i in indices:
                self._forward_recorded(i)
            loss = self._weighted_loss()
        else:
            # Nothing to record (a deploy net, or no_grad): the fast path, BatchNorm + Scale fused.
            with torch.no_grad():
                loss = self.run(indices)
        self.last_loss = float(loss.detach())
        names = list(self.outputs) if end is None else list(self.top_names[end])
        names += [b for b in (blobs or []) if b not in names]
        return {n: self._blob(n).data for n in names}

    def backward(self, diffs: Sequence[str] | None = None, start: str | None = None,
                 end: str | None = None, **kwargs) -> dict[str, np.ndarray]:
        """pycaffe's backward: set the diffs given in ``kwargs``, then run Caffe's backward of the
        layers from ``start`` (default: the last) down to ``end`` (default: the first), each from
        the diffs its tops hold. Bottom diffs are replaced, parameter diffs accumulate, a loss
        top's diff is its loss weight. Returns the bottoms of ``end`` (the inputs by default) and
        the ``diffs`` asked for."""
        for name, value in kwargs.items():
            if name not in self._data:
                raise BlobNameError(f"'{name}' is not a blob of net '{self.name}'")
            self._blob(name).diff[...] = value
        self._sync.flush()
        first = len(self.modules) - 1 if start is None else self._layer_index_of(start)
        last = 0 if end is None else self._layer_index_of(end)
        for i in range(first, last - 1, -1):
            if i < first:
                self._backward_splits(i)
            if self._plan.layer_need[i]:
                self._backward_layer(i)
        names = list(self.inputs) if end is None else list(self.bottom_names[end])
        names += [d for d in (diffs or []) if d not in names]
        return {n: self._blob(n).diff for n in names}

    def _diff_for(self, name: str, shape: Shape) -> torch.Tensor:
        """The diff blob ``name`` holds, read with ``shape`` (what a layer's backward reads)."""
        buf = self._buffers.get(name)
        if buf is not None and buf.diff is not None:
            return buf.view("diff", shape)
        d = self._diff.get(name)
        if d is None or d.numel() != math.prod(shape):
            return torch.zeros(shape, device=self.device)
        return d.reshape(shape)

    def _write_diff(self, name: str, g: torch.Tensor) -> None:
        """Replace blob ``name``'s diff with ``g`` (in its memory when the shapes agree, so numpy
        views stay valid)."""
        buf = self._buffers.get(name)
        if buf is not None:
            buf.put("diff", g)
            self._diff[name] = buf.view("diff", tuple(g.shape))
            return
        d = self._diff.get(name)
        if d is not None and d.shape == g.shape:
            d.copy_(g)
        else:
            self._diff[name] = g.detach().clone()

    def _backward_splits(self, i: int) -> None:
        """Caffe's Split layers after layer i: each blob version of layer i that feeds several
        layers gets the sum of its consumers' diffs."""
        name = self._layer_names[i]
        for k, t in enumerate(self.top_names[name]):
            users = self._plan.splits.get((i, k))
            if not users or not self._plan.split_need.get((i, k)):
                continue
            shape = tuple(self._data[t].shape)
            total = torch.zeros(shape, device=self.device)
            for c in users:
                part = self._split_diff.get(c)
                if part is not None and part.shape == total.shape:
                    total += part
            self._write_diff(t, total)

    def _backward_layer(self, i: int) -> None:
        """Layer i's backward from its tops' diffs (Caffe's Layer::Backward)."""
        layer = self.modules[i]
        if layer.feeds_from_blobs:
            return
        record = self._records.get(i)
        if record is None:
            with torch.enable_grad():
                self._forward_recorded(i)
            record = self._records.get(i)
            if record is None:
                return
        inputs, outputs = record
        name = self._layer_names[i]
        roots, grads = [], []
        for t, y in zip(self.top_names[name], outputs):
            if y.requires_grad:
                roots.append(y)
                grads.append(self._diff_for(t, tuple(y.shape)))
        wanted = [j for j, x in enumerate(inputs) if x.requires_grad]
        params = [p for p in dict.fromkeys(layer.blobs) if p.requires_grad and
                  (self.force_backward or id(p) not in self._param_infos
                   or self._param_infos[id(p)].lr_mult != 0)]
        if roots and (wanted or params):
            got = torch.autograd.grad(roots, [inputs[j] for j in wanted] + params, grads,
                                      retain_graph=True, allow_unused=True)
        else:
            got = [None] * (len(wanted) + len(params))
        for p, g in zip(params, got[len(wanted):]):
            if g is not None:
                p.grad = (g.detach().clone(memory_format=torch.contiguous_format) if p.grad is None
                          else p.grad.add_(g))
        bottoms = self.bottom_names[name]
        for j, g in zip(wanted, got[:len(wanted)]):
            if g is None:
                g = torch.zeros_like(inputs[j])
            if (i, j) in self._plan.split_of:
                self._split_diff[(i, j)] = g.detach()
            else:
                self._write_diff(bottoms[j], g.detach())

    def forward_backward(self) -> float:
        """One forward and backward from the weighted loss; returns the loss."""
        loss = self.run()
        if loss.requires_grad:
            loss.backward()
        return float(loss.detach())

    def reshape(self) -> None:
        """Recompute every blob's shape from the input blobs, as Caffe's Net::Reshape."""
        for i, layer in enumerate(self.modules):
            name = self._layer_names[i]
            if layer.feeds_from_blobs:
                continue
            shapes = layer.reshape([tuple(self._data[b].shape) for b in self.bottom_names[name]])
            for t, s in zip(self.top_names[name], shapes):
                if tuple(self._data[t].shape) != tuple(s):
                    self._data[t] = torch.zeros(s, device=self.device)

    def clear_param_diffs(self) -> None:
        for p in self.learnable_params:
            if p.grad is not None:
                p.grad.zero_()

    # ------------------------------------------------------------------ weights
    def copy_from(self, path: PathLike) -> None:
        """Load weights from a caffemodel by layer name; layers absent from the file keep their
        values; a blob count or shape mismatch is a WeightsError naming the layer."""
        self.copy_from_param(model_io.read_binary_net(path), str(path))

    def copy_from_param(self, source, origin: str = "<NetParameter>") -> None:
        """Copy the blobs of ``source``'s layers into the layers of the same name. No layer with
        weights matching is a WeightsError; layers with weights left out (a file cut short, a
        classifier being fine-tuned) keep their values, with a WeightsWarning naming them."""
        copied = set()
        for src in source.layer:
            layer = self.layer_dict.get(src.name)
            if layer is None or not len(src.blobs):
                continue
            copied.add(src.name)
            if len(src.blobs) != len(layer.blobs):
                raise WeightsError(f"{origin}: incompatible number of blobs for layer '{src.name}': "
                                   f"the file has {len(src.blobs)}, the net has {len(layer.blobs)}")
            for i, (bp, p) in enumerate(zip(src.blobs, layer.blobs)):
                shape = model_io.blob_shape(bp)
                if not _shapes_match(shape, tuple(p.shape), bool(bp.HasField("shape"))):
                    raise WeightsError(
                        f"{origin}: cannot copy param {i} of layer '{src.name}': shape mismatch; "
                        f"source param shape is {shape}, target param shape is {tuple(p.shape)}")
                arr = model_io.blobproto_to_array(bp).reshape(tuple(p.shape))
                with torch.no_grad():
                    p.copy_(torch.from_numpy(arr))
        missing = [m.name for m in self.modules if len(m.blobs) and m.name not in copied]
        if missing and not copied:
            raise WeightsError(f"{origin}: none of its {len(source.layer)} layers matches a layer "
                               f"with weights of net '{self.name}' (by name: the net has "
                               f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
        if missing:
            warnings.warn(f"{origin}: no weights for {len(missing)} layer(s) of net '{self.name}', "
                          f"which keep their initial values: {', '.join(missing[:10])}"
                          f"{', ...' if len(missing) > 10 else ''}", WeightsWarning, stacklevel=3)

    def share_with(self, other: "Net") -> None:
        """Make this net use ``other``'s parameter blobs for every layer of the same name (Caffe's
        ShareTrainedLayersWith, used by test nets)."""
        for layer in self.modules:
            src = other.layer_dict.get(layer.name)
            if src is None or not len(layer.blobs):
                continue
            if len(src.blobs) != len(layer.blobs):
                raise WeightsError(f"cannot share layer '{layer.name}': {len(src.blobs)} vs "
                                   f"{len(layer.blobs)} blobs")
            for i, p in enumerate(src.blobs):
                if p.shape != layer.blobs[i].shape:
                    raise WeightsError(f"cannot share layer '{layer.name}' blob {i}: shapes "
                                       f"{tuple(p.shape)} vs {tuple(layer.blobs[i].shape)}")
                info = self._param_infos.pop(id(layer.blobs[i]), None)
                layer.blobs[i] = p
                if info is not None:
                    self._param_infos[id(p)] = info

    def to_proto(self, write_diff: bool = False):
        """The net as a NetParameter with every layer's blobs (what a caffemodel holds)."""
        out = caffe_pb2.NetParameter()
        out.CopyFrom(self.net_param)
        for lp, layer in zip(out.layer, self.modules):
            del lp.blobs[:]
            for p in layer.blobs:
                data = p.detach().cpu().numpy()
                diff = p.grad.detach().cpu().numpy() if write_diff and p.grad is not None else None
                lp.blobs.append(model_io.array_to_blobproto(data, diff))
        return out

    def save(self, path: PathLike, write_diff: bool = False) -> None:
        """Write the weights as a binary caffemodel, atomically."""
        self._sync.flush()
        model_io.write_binary(self.to_proto(write_diff), path)

    def __repr__(self) -> str:
        return (f"Net('{self.name}', phase={'TRAIN' if self.phase == TRAIN else 'TEST'}, "
                f"{len(self.modules)} layers, {len(self._data)} blobs)")


def _top_loss_weights(layer: Layer, lp) -> list[float]:
    """Each top's loss weight: ``loss_weight`` if given, else 1 for a loss layer's first top."""
    if len(lp.loss_weight):
        return [float(w) for w in lp.loss_weight]
    return [1.0 if layer.is_loss and j == 0 else 0.0 for j in range(len(lp.top))]


def _shapes_match(source: Shape, target: Shape, source_has_shape: bool) -> bool:
    if source == target:
        return True
    if source_has_shape:
        return False
    padded = (1,) * (4 - len(target)) + target if len(target) <= 4 else target
    return source == padded or math.prod(source) == math.prod(target) and \
        tuple(d for d in source if d != 1) == tuple(d for d in target if d != 1)
