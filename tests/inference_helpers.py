"""Helpers for the inference-mode and OpenCV cross-check tests: meaningful random weights."""
from __future__ import annotations

import numpy as np
import torch

from caffe.layers.normalization import BatchNorm, Scale
from caffe.net import Net


def randomize_weights(net: Net, seed: int = 0) -> None:
    """Give every BatchNorm random statistics stored with a scale factor != 1 (Caffe's
    ``mean*s, var*s, s``) and every Scale a random gamma/beta, so that folding and importers
    are exercised on more than identity normalisation. Other blobs keep their filler values."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for layer in net.modules:
            if isinstance(layer, BatchNorm):
                c = layer.blobs[0].numel()
                s = rng.uniform(0.5, 4.0)
                mean = rng.normal(0.0, 0.5, c)
                var = rng.uniform(0.3, 2.0, c)
                layer.blobs[0].copy_(torch.from_numpy(mean * s))
                layer.blobs[1].copy_(torch.from_numpy(var * s))
                layer.blobs[2].fill_(s)
            elif isinstance(layer, Scale):
                for i, p in enumerate(layer.blobs):
                    base = 1.0 if i == 0 else 0.0
                    p.copy_(torch.from_numpy(base + rng.normal(0.0, 0.2, tuple(p.shape))))




def rename_inplace_tops(net_param, types: tuple[str, ...] = ("Convolution", "InnerProduct")):
    """A copy of ``net_param`` in which layers of ``types`` never run in place: such a layer's
    top gets a new name (``<top>/<layer>``) and the later layers that read that blob (or update
    it in place) use the new name. Readers that reject in-place convolution (OpenCV's importer)
    can then load nets such as SSE-ResNet. The computation is unchanged."""
    out = type(net_param)()
    out.CopyFrom(net_param)
    alias: dict[str, str] = {}
    for lp in out.layer:
        original_bottoms = list(lp.bottom)
        bottoms = [alias.get(b, b) for b in original_bottoms]
        tops = []
        for t in lp.top:
            if t in original_bottoms and lp.type in types:
                alias[t] = f"{t}/{lp.name}"
                tops.append(alias[t])
            elif t in original_bottoms:
                tops.append(alias.get(t, t))
            else:
                alias.pop(t, None)
                tops.append(t)
        del lp.bottom[:]
        lp.bottom.extend(bottoms)
        del lp.top[:]
        lp.top.extend(tops)
    return out


DATA_LAYER_TYPES = ("Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData",
                    "AnnotatedData")
LOSS_LAYER_TYPES = ("SoftmaxWithLoss", "Accuracy", "EuclideanLoss", "SigmoidCrossEntropyLoss",
                    "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss")


def with_input_layer(net_param, phase: int, shape: tuple[int, ...], drop_losses: bool = True):
    """The layers of ``net_param`` for ``phase`` with its data layer(s) replaced by one Input
    layer: its first top (``data``) has ``shape`` and a second top (``label``) has shape (N,).
    With ``drop_losses`` the loss and accuracy layers and the label go, so the score blobs
    become the outputs (a deploy-style net). Include/exclude rules are removed."""
    from caffe.net import filter_layers
    from caffe.proto import caffe_pb2

    state = caffe_pb2.NetState(phase=phase)
    out = caffe_pb2.NetParameter(name=net_param.name)
    data_top = None
    for lp in filter_layers(net_param, state):
        if lp.type in DATA_LAYER_TYPES or lp.type == "Input":
            if data_top is None:
                data_top = lp.top[0]
                tops = list(lp.top[:1] if drop_losses else lp.top[:2])
                inp = out.layer.add(name=lp.name, type="Input", top=tops)
                inp.input_param.shape.add(dim=list(shape))
                if len(tops) == 2:
                    inp.input_param.shape.add(dim=[shape[0]])
            continue
        if drop_losses and lp.type in LOSS_LAYER_TYPES:
            continue
        layer = out.layer.add()
        layer.CopyFrom(lp)
        del layer.include[:]
        del layer.exclude[:]
    return out


def last_writers(net_param) -> dict[str, str]:
    """Blob name -> name of the last layer that writes it (how OpenCV names a layer's output)."""
    writers: dict[str, str] = {}
    for lp in net_param.layer:
        for t in lp.top:
            writers[t] = lp.name
    return writers
