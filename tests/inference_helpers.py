"""Helpers for the inference-mode and OpenCV cross-check tests and the engine benchmarks:
meaningful random weights, Input instead of data layers, OpenCV-readable copies, the SSE nets."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import caffe
from caffe.layers.normalization import BatchNorm, Scale
from caffe.model_io import read_net, write_text
from caffe.net import Net, filter_layers
from caffe.proto import caffe_pb2


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


REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class SSEModel:
    """One released SSE net: where its prototxts are and what its input is."""

    key: str
    title: str
    folder: str
    stem: str
    input_chw: tuple[int, int, int]

    def prototxt(self, stage: str) -> Path:
        """script/<folder>/<stem>_<stage>.prototxt (stage: train, test or deploy); the
        environment variable SSE_SCRIPT_DIR replaces script/ (e.g. the original release's)."""
        root = Path(os.environ.get("SSE_SCRIPT_DIR", REPO / "script"))
        path = root / self.folder / f"{self.stem}_{stage}.prototxt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: generate the SSE prototxts first "
                                    f"(sse-gen-nets)")
        return path


MODELS = {
    "holonet": SSEModel("holonet", "SSE-HoloNet", "SSE-HoloNet", "SSE_holonet", (1, 128, 128)),
    "densenet": SSEModel("densenet", "SSE-DenseNet-121", "SSE-DenseNet", "SSE-densenet-121",
                         (3, 128, 128)),
    "resnet": SSEModel("resnet", "SSE-ResNet-50", "SSE-ResNet", "SSE-resnet-50", (3, 224, 224)),
}


def sse_train_net_param(model: SSEModel, batch: int):
    """The TRAIN net with Input tops ``data`` and ``label`` instead of its data layer."""
    return with_input_layer(read_net(model.prototxt("train")), caffe.TRAIN,
                            (batch,) + model.input_chw, drop_losses=False)


def sse_train_net(model: SSEModel, batch: int, seed: int = 0) -> caffe.Net:
    """The TRAIN net of ``sse_train_net_param``."""
    caffe.set_random_seed(seed)
    return caffe.Net(net_param=sse_train_net_param(model, batch), phase=caffe.TRAIN)


def sse_test_net_param(model: SSEModel, batch: int):
    """The TEST net with an Input ``data`` top and without its loss/accuracy layers."""
    return with_input_layer(read_net(model.prototxt("test")), caffe.TEST,
                            (batch,) + model.input_chw, drop_losses=True)


def random_sse_test_net(model: SSEModel, batch: int, seed: int = 0) -> caffe.Net:
    """The TEST net of ``sse_test_net_param`` with random weights (``randomize_weights``)."""
    caffe.set_random_seed(seed)
    net = caffe.Net(net_param=sse_test_net_param(model, batch), phase=caffe.TEST)
    randomize_weights(net, seed)
    return net


def sse_test_net_files(model: SSEModel, batch: int, folder: Path, seed: int = 0
                   ) -> tuple[caffe.Net, Path, Path, Path]:
    """Build the TEST net with random weights (random BatchNorm statistics and Scale values),
    save it, and write the prototxt twice: as is, and with in-place convolutions renamed for
    OpenCV. Returns (net, prototxt, opencv_prototxt, caffemodel)."""
    folder.mkdir(parents=True, exist_ok=True)
    param = sse_test_net_param(model, batch)
    caffe.set_random_seed(seed)
    net = caffe.Net(net_param=param, phase=caffe.TEST)
    randomize_weights(net, seed)
    prototxt = folder / f"{model.key}_test_input.prototxt"
    opencv_prototxt = folder / f"{model.key}_test_input_opencv.prototxt"
    weights = folder / f"{model.key}_random.caffemodel"
    write_text(param, prototxt)
    write_text(rename_inplace_tops(param), opencv_prototxt)
    net.save(weights)
    return net, prototxt, opencv_prototxt, weights
