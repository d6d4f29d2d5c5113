"""What every SSE net generator shares: the data configuration, the build context (NetSpec + stage +
label), Caffe's output-size arithmetic, the data/output layers, and the Input form used for checks.

A net is generated in one of three stages:

* ``train``: a Data (LMDB) layer per phase, BatchNorm layers with ``use_global_stats: false``
  where the release wrote it, every loss, Accuracy in the TEST phase;
* ``test``: an ImageData layer over a list file, BatchNorm with ``use_global_stats: true``,
  ``prob`` (Softmax), the losses and Accuracy (what ``extract_features`` runs);
* ``deploy``: an Input layer ``data``, no label, no loss, ``prob``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from caffe.errors import CaffeError
from caffe.net_spec import NetSpec, Top
from caffe.net_spec import layers as L
from caffe.proto import caffe_pb2

STAGES = ("train", "test", "deploy")

XAVIER = {"type": "xavier"}
MSRA = {"type": "msra"}
BIAS_01 = {"type": "constant", "value": 0.1}


class NetConfigError(CaffeError, ValueError):
    """A generator parameter that cannot give a valid net (names the parameter and the rule)."""


@dataclass(frozen=True)
class DataConfig:
    """Input and data-source parameters of a generated net.

    ``mean_file`` and ``mean_value`` are exclusive (give neither for no mean subtraction);
    ``channels`` is 1 (grayscale: ImageData gets ``is_color: false``) or 3 (BGR colour).
    ``crop_size`` (0: none) crops stored images larger than the net input to ``input_size``
    (random in TRAIN, centred in TEST, as Caffe); ``max_rotation`` and ``max_scale_jitter`` are
    the toolkit's TRAIN-only transform_param extension (real Caffe rejects them)."""

    input_size: int = 128
    channels: int = 1
    mean_file: str | None = None
    mean_value: tuple[float, ...] = ()
    scale: float | None = None
    mirror: bool = False
    crop_size: int = 0
    max_rotation: float = 0.0
    max_scale_jitter: float = 0.0
    train_source: str = "train_lmdb"
    val_source: str = "val_lmdb"
    backend: str = "LMDB"
    test_list: str = "test_file_list.txt"
    test_root: str = ""
    train_batch: int = 32
    val_batch: int = 32
    test_batch: int = 32
    deploy_batch: int = 1
    num_classes: int = 7

    def check(self) -> None:
        if self.channels not in (1, 3):
            raise NetConfigError(f"channels must be 1 (gray) or 3 (colour), got {self.channels}")
        if self.mean_file and self.mean_value:
            raise NetConfigError("give mean_file or mean_value, not both")
        if self.mean_value and len(self.mean_value) not in (1, self.channels):
            raise NetConfigError(f"mean_value needs 1 or {self.channels} values "
                                 f"(one per channel), got {len(self.mean_value)}")
        if self.crop_size not in (0, self.input_size):
            raise NetConfigError(f"crop_size must be 0 or the input size {self.input_size}, "
                                 f"got {self.crop_size}")
        if self.input_size < 1 or self.num_classes < 2:
            raise NetConfigError(f"input_size must be >= 1 and num_classes >= 2 "
                                 f"(got {self.input_size}, {self.num_classes})")
        for key in ("train_batch", "val_batch", "test_batch", "deploy_batch"):
            if getattr(self, key) < 1:
                raise NetConfigError(f"{key} must be >= 1, got {getattr(self, key)}")


def conv_out(size: int, kernel: int, stride: int = 1, pad: int = 0) -> int:
    """Caffe's convolution output size (floor)."""
    return (size + 2 * pad - kernel) // stride + 1


def pool_out(size: int, kernel: int, stride: int = 1, pad: int = 0) -> int:
    """Caffe's pooling output size: ceil, minus one when the last window starts in the padding."""
    out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@dataclass(frozen=True)
class Feature:
    """A feature map of the trunk: its top, channels and (square) spatial size."""

    top: Top
    channels: int
    size: int


@dataclass
class Builder:
    """A NetSpec being filled in network order, with the stage and the label top.

    Trunk generators call ``tap`` at every feature map a branch may attach to and ``point`` at
    every place a branch head may be written; the variant driver decides what happens there."""

    n: NetSpec
    stage: str
    label: Top | None = None
    features: dict[str, Feature] = field(default_factory=dict)
    on_point: dict[str, list] = field(default_factory=dict)

    def put(self, key: str, top: Top) -> Top:
        if key in self.n:
            raise NetConfigError(f"two layers would write the NetSpec entry '{key}'")
        self.n[key] = top
        return top

    def __getitem__(self, key: str) -> Top:
        return self.n[key]

    @property
    def global_stats(self) -> bool:
        """``use_global_stats`` where the release wrote it: false to train, true otherwise."""
        return self.stage != "train"

    @property
    def has_loss(self) -> bool:
        return self.stage != "deploy"

    def loss(self, name: str, scores: Top) -> None:
        """A SoftmaxWithLoss on ``scores`` (weight 1), except in deploy nets."""
        if self.has_loss:
            self.put(name, L.SoftmaxWithLoss(scores, self.label))

    def tap(self, name: str, feature: Feature) -> Feature:
        self.features[name] = feature
        self.point(name)
        return feature

    def point(self, name: str) -> None:
        for action in self.on_point.pop(name, []):
            action(self)


def param_specs(lr_w: float, decay_w: float, lr_b: float | None = None,
              decay_b: float | None = None) -> list[dict]:
    """``param`` specs: one for the weights, optionally one for the bias."""
    specs = [{"lr_mult": lr_w, "decay_mult": decay_w}]
    if lr_b is not None:
        specs.append({"lr_mult": lr_b, "decay_mult": decay_b})
    return specs


BN_FROZEN_PARAMS = param_specs(0, 0) * 3


def data_layers(b: Builder, cfg: DataConfig) -> Top:
    """The data layer(s) of the stage; returns the data top and sets ``b.label``.

    In the train stage this writes the TRAIN Data layer; ``test_phase_data_layer`` gives the TEST
    one, which shares the layer name and tops and so is inserted after ``to_proto``."""
    if b.stage == "deploy":
        shape = {"dim": [cfg.deploy_batch, cfg.channels, cfg.input_size, cfg.input_size]}
        return b.put("data", L.Input(input_param={"shape": [shape]}))
    if b.stage == "train":
        data, label = L.Data(ntop=2, include={"phase": "TRAIN"}, transform_param=_transform(cfg, True),
                             data_param=_db(cfg, cfg.train_source, cfg.train_batch))
    else:
        image = {"source": cfg.test_list, "batch_size": cfg.test_batch}
        if cfg.channels == 1:
            image["is_color"] = False
        if cfg.test_root:
            image["root_folder"] = cfg.test_root
        data, label = L.ImageData(ntop=2, transform_param=_transform(cfg, False),
                                  image_data_param=image)
    b.put("data", data)
    b.label = b.put("label", label)
    return data


def test_phase_data_layer(cfg: DataConfig) -> caffe_pb2.LayerParameter:
    """The TEST-phase Data layer of a train prototxt (validation LMDB, no mirroring)."""
    spec = NetSpec()
    spec.data, spec.label = L.Data(ntop=2, include={"phase": "TEST"},
                                   transform_param=_transform(cfg, False),
                                   data_param=_db(cfg, cfg.val_source, cfg.val_batch))
    return spec.to_proto().layer[0]


def _transform(cfg: DataConfig, train: bool) -> dict:
    spec: dict = {"mirror": bool(cfg.mirror and train)}
    if cfg.crop_size:
        spec["crop_size"] = cfg.crop_size
    if train and cfg.max_rotation:
        spec["max_rotation"] = cfg.max_rotation
    if train and cfg.max_scale_jitter:
        spec["max_scale_jitter"] = cfg.max_scale_jitter
    if cfg.scale is not None:
        spec["scale"] = cfg.scale
    if cfg.mean_file:
        spec["mean_file"] = cfg.mean_file
    if cfg.mean_value:
        spec["mean_value"] = list(cfg.mean_value)
    return spec


def _db(cfg: DataConfig, source: str, batch: int) -> dict:
    return {"source": source, "batch_size": batch, "backend": cfg.backend}


def outputs(b: Builder, scores: Top, loss_name: str) -> None:
    """The net's end: ``prob`` (test, deploy), the final loss, Accuracy (TEST phase)."""
    if b.stage != "train":
        b.put("prob", L.Softmax(scores))
    b.loss(loss_name, scores)
    if b.has_loss:
        b.put("accuracy", L.Accuracy(scores, b.label, include={"phase": "TEST"}, top_k=1))


def input_form(net: caffe_pb2.NetParameter, data_shape: list[int],
               label_shape: list[int] | None = None) -> caffe_pb2.NetParameter:
    """A copy of ``net`` with its data layers replaced by one Input layer (tops data and label),
    as the golden shape records were made: lets a net build without its databases."""
    data_types = {"Data", "ImageData", "Input", "MemoryData", "HDF5Data"}
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    first = True
    for layer in net.layer:
        if layer.type not in data_types:
            out.layer.add().CopyFrom(layer)
            continue
        if not first:
            continue
        first = False
        new = out.layer.add()
        new.name, new.type = "data", "Input"
        new.top.append("data")
        new.input_param.shape.add().dim.extend(data_shape)
        if label_shape is not None and "label" in layer.top:
            new.top.append("label")
            new.input_param.shape.add().dim.extend(label_shape)
    return out
