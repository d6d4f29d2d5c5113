"""Net: a Caffe net built from a NetParameter for one phase (and level/stages), run on PyTorch.

Construction follows Caffe's Net::Init: layers are filtered by their include/exclude rules, each
layer is set up on the shapes of its bottoms, tops that reuse a bottom's name are in place, a blob
feeding several layers is shared (its gradients add up, as Caffe's implicit Split does), and
parameters with the same ``param { name }`` are one parameter. Forward gives every named blob;
backward is autograd from the weighted loss tops and the diffs set on the output blobs."""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from . import model_io
from .blob import Blob, HostSync
from .errors import NetError, WeightsError
from .layers import create_layer
from .layers.base import TEST, TRAIN, Layer, Shape
from .layers.normalization import BatchNorm, Scale
from .memory import keep_freed_memory
from .mode import current_device, net_generator
from .proto import caffe_pb2

PathLike = str | os.PathLike


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
        self.blobs = [_param_blob(p, sync) for p in module.blobs]


def _param_blob(p: nn.Parameter, sync: HostSync) -> Blob:
    def diff() -> torch.Tensor:
        if p.grad is None:
            p.grad = torch.zeros_like(p.data)
        return p.grad

    def set_data(t: torch.Tensor) -> None:
        p.data = t
        p.grad = None

    return Blob(lambda: p.data, diff, set_data, sync)


class Net:
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
                if t not in lp.bottom:
                    consumed.discard(t)
                self._shapes[t] = tuple(int(s) for s in shape)
            self._set_loss_weights(layer, lp)
            self._register_params(layer, lp)
            if layer.feeds_from_blobs:
                self.inputs.extend(lp.top)
            self.modules.append(layer)
            self.bottom_names[lp.name] = list(lp.bottom)
            self.top_names[lp.name] = list(lp.top)
            self._layer_names.append(lp.name)
        self.outputs = [b for b in self._shapes if b not in consumed]
        self._bn_scale = self._find_bn_scale_pairs()
        self.layer_dict = OrderedDict((l.name, l) for l in self.modules)
        self._layer_index = {name: i for i, name in enumerate(self._layer_names)}
        self.requires_backward = phase == TRAIN or self.force_backward
        self.retain_blob_diffs = True
        self._data: dict[str, torch.Tensor] = {}
        self._diff: dict[str, torch.Tensor] = {}
        self._first: dict[str, torch.Tensor] = {}
        self.device = torch.device("cpu")
        self._allocate()
        self.to(current_device())

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

    def _set_loss_weights(self, layer: Layer, lp) -> None:
        n = len(lp.top)
        if len(lp.loss_weight) and len(lp.loss_weight) != n:
            raise layer.error(f"loss_weight must be unspecified or given once per top ({n}), got "
                              f"{len(lp.loss_weight)}")
        for j, t in enumerate(lp.top):
            if len(lp.loss_weight):
                w = lp.loss_weight[j]
            else:
                w = 1.0 if layer.is_loss and j == 0 else 0.0
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
        return OrderedDict((l.name, [_param_blob(p, self._sync) for p in l.blobs])
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
        self._first = {}
        self.device = device
        return self

    def _layer_range(self, start: str | None, end: str | None) -> range:
        def index(name: str | None, default: int) -> int:
            if name is None:
                return default
            if name not in self._layer_index:
                raise NetError(f"no layer named '{name}' in net '{self.name}'")
            return self._layer_index[name]
        return range(index(start, 0), index(end, len(self.modules) - 1) + 1)

    def _feed(self, inputs: dict[str, object]) -> None:
        for name, value in inputs.items():
            if name not in self._data:
                raise NetError(f"'{name}' is not a blob of net '{self.name}'")
            t = torch.as_tensor(np.asarray(value, dtype=np.float32) if not isinstance(value, torch.Tensor)
                                else value, dtype=torch.float32)
            if tuple(t.shape) != tuple(self._data[name].shape):
                self._data[name] = t.to(self.device).clone()
            else:
                with torch.no_grad():
                    self._data[name].copy_(t)

    def run(self, layers: Iterable[int] | None = None) -> torch.Tensor:
        """Forward over the given layer indices (all by default) and return the weighted loss as
        a tensor (the autograd root when recording)."""
        self._sync.flush()
        record = self.requires_backward and torch.is_grad_enabled()
        indices = list(layers) if layers is not None else range(len(self.modules))
        # Fusing BatchNorm with its in-place Scale would change the retained diff of a
        # BatchNorm top that is not in place, so it is skipped when blob diffs are kept.
        fuse = not (record and self.retain_blob_diffs)
        with torch.set_grad_enabled(record):
            skip = None
            for pos, i in enumerate(indices):
                if i == skip:
                    continue
                j = self._bn_scale.get(i) if fuse else None
                if j is not None and pos + 1 < len(indices) and indices[pos + 1] == j:
                    self._forward_bn_scale(i, j)
                    skip = j
                else:
                    self._forward_layer(i, record)
        loss = None
        for name, w in self.loss_tops:
            term = self._data[name].sum() * w
            loss = term if loss is None else loss + term
        if loss is None:
            return torch.zeros((), device=self.device)
        return loss

    def _forward_layer(self, i: int, record: bool) -> None:
        layer = self.modules[i]
        name = self._layer_names[i]
        bottoms, tops = self.bottom_names[name], self.top_names[name]
        if layer.feeds_from_blobs:
            for t in tops:
                data = self._data[t]
                if record and self.force_backward and not data.requires_grad:
                    data = data.detach().requires_grad_(True)
                    self._data[t] = data
                self._first[t] = data
            return
        inputs = bottoms + tops if layer.reads_own_tops else bottoms
        outputs = layer.forward(*[self._data[b] for b in inputs])
        for t, y in zip(tops, outputs):
            self._data[t] = y
            if t not in bottoms:
                if record and self.retain_blob_diffs and y.requires_grad:
                    y.retain_grad()
                self._first[t] = y

    def _forward_bn_scale(self, i: int, j: int) -> None:
        """Layers i (BatchNorm) and j (its in-place Scale) as one normalisation with affine."""
        name = self._layer_names[i]
        bottom, top = self.bottom_names[name][0], self.top_names[name][0]
        weight, bias = self.modules[j].per_channel_blobs()
        y = self.modules[i].normalize(self._data[bottom], weight, bias)
        self._data[top] = y
        if top != bottom:
            self._first[top] = y

    def forward(self, blobs: Sequence[str] | None = None, start: str | None = None,
                end: str | None = None, **kwargs) -> dict[str, np.ndarray]:
        """pycaffe's forward: feed ``kwargs`` into input blobs, run from ``start`` to ``end``, and
        return the output blobs (and the ``blobs`` asked for) as numpy arrays."""
        self._feed(kwargs)
        self.last_loss = float(self.run(self._layer_range(start, end)).detach())
        names = list(self.outputs) if end is None else list(self.top_names[end])
        names += [b for b in (blobs or []) if b not in names]
        return {n: self._blob(n).data for n in names}

    def backward(self, diffs: Sequence[str] | None = None, start: str | None = None,
                 end: str | None = None, **kwargs) -> dict[str, np.ndarray]:
        """Backpropagate from the loss tops (weighted) and from the diffs of the output blobs;
        parameter diffs accumulate, blob diffs are replaced. Returns the ``diffs`` asked for and
        the input diffs."""
        self._sync.flush()
        for name, value in kwargs.items():
            self._blob(name).diff[...] = value
        roots, grads = [], []
        loss_names = {n for n, _ in self.loss_tops}
        for name, w in self.loss_tops:
            t = self._data[name]
            if t.requires_grad:
                roots.append(t)
                grads.append(torch.full_like(t, w))
        for name in self.outputs:
            t = self._data[name]
            d = self._diff.get(name)
            if name in loss_names or d is None or not t.requires_grad or d.shape != t.shape:
                continue
            roots.append(t)
            grads.append(d)
        if roots:
            torch.autograd.backward(roots, grads)
        for name, first in self._first.items():
            if first.grad is not None:
                self._diff[name] = first.grad.detach()
        names = list(diffs or []) + [n for n in self.inputs if n not in (diffs or [])]
        return {n: self._blob(n).diff for n in names}

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
        for src in source.layer:
            layer = self.layer_dict.get(src.name)
            if layer is None or not len(src.blobs):
                continue
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


def _shapes_match(source: Shape, target: Shape, source_has_shape: bool) -> bool:
    if source == target:
        return True
    if source_has_shape:
        return False
    padded = (1,) * (4 - len(target)) + target if len(target) <= 4 else target
    return source == padded or math.prod(source) == math.prod(target) and \
        tuple(d for d in source if d != 1) == tuple(d for d in target if d != 1)
