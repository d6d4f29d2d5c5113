"""Reading and writing Caffe's files: prototxt nets and solvers (protobuf text format), .caffemodel,
.binaryproto and .solverstate (protobuf binary), with the upgrades Caffe applies on load.

Upgrades (as Caffe's upgrade_proto does when it reads a net, text or binary):
  * V1 nets (`layers { type: CONVOLUTION blobs_lr: 1 weight_decay: 1 param: "w" }`) become
    current ones (`layer { type: "Convolution" param { lr_mult: 1 decay_mult: 1 name: "w" } }`),
    legacy transformation fields of V1 data layers (`data_param { scale mean_file crop_size mirror }`)
    moving to `transform_param` first;
  * legacy inputs (`input:` with `input_shape` or `input_dim`) become an Input layer named "input"
    placed first;
  * BatchNorm layers declaring three `param`s get lr_mult and decay_mult 0 on them;
  * solvers: the legacy `solver_type` enum becomes the `type` string, and `snapshot_prefix` defaults
    to the solver file's path without extension (a directory prefix gets the file's stem appended).
V0 nets (pre-2014, `layers { layer { ... } }`) are refused with a clear error.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TypeVar

import numpy as np
from google.protobuf import message as pb_message
from google.protobuf import text_format, unknown_fields

from caffe import atomic
from caffe.errors import DataError, ParseError, WeightsError
from caffe.proto import caffe_pb2

__all__ = [
    "parse_net_text", "read_net", "parse_solver_text", "read_solver", "upgrade_net", "upgrade_solver",
    "write_text", "read_binary_net", "write_binary", "read_blobproto", "write_blobproto",
    "read_solverstate", "blob_shape", "blobproto_to_array", "array_to_blobproto",
]

PathLike = str | os.PathLike
Msg = TypeVar("Msg", bound=pb_message.Message)

_V1 = caffe_pb2.V1LayerParameter

# V1 enum type -> current type string (the V1 types Caffe's upgrade knows; NONE maps to "").
V1_TYPE_NAMES: dict[int, str] = {
    _V1.NONE: "", _V1.ABSVAL: "AbsVal", _V1.ACCURACY: "Accuracy", _V1.ARGMAX: "ArgMax",
    _V1.BNLL: "BNLL", _V1.CONCAT: "Concat", _V1.CONTRASTIVE_LOSS: "ContrastiveLoss",
    _V1.CONVOLUTION: "Convolution", _V1.DECONVOLUTION: "Deconvolution", _V1.DATA: "Data",
    _V1.DROPOUT: "Dropout", _V1.DUMMY_DATA: "DummyData", _V1.EUCLIDEAN_LOSS: "EuclideanLoss",
    _V1.ELTWISE: "Eltwise", _V1.EXP: "Exp", _V1.FLATTEN: "Flatten", _V1.HDF5_DATA: "HDF5Data",
    _V1.HDF5_OUTPUT: "HDF5Output", _V1.HINGE_LOSS: "HingeLoss", _V1.IM2COL: "Im2col",
    _V1.IMAGE_DATA: "ImageData", _V1.INFOGAIN_LOSS: "InfogainLoss",
    _V1.INNER_PRODUCT: "InnerProduct", _V1.LRN: "LRN", _V1.MEMORY_DATA: "MemoryData",
    _V1.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss", _V1.MVN: "MVN",
    _V1.POOLING: "Pooling", _V1.POWER: "Power", _V1.RELU: "ReLU", _V1.SIGMOID: "Sigmoid",
    _V1.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss", _V1.SILENCE: "Silence",
    _V1.SOFTMAX: "Softmax", _V1.SOFTMAX_LOSS: "SoftmaxWithLoss", _V1.SPLIT: "Split",
    _V1.SLICE: "Slice", _V1.TANH: "TanH", _V1.WINDOW_DATA: "WindowData",
    _V1.THRESHOLD: "Threshold",
}

# The *_param messages a V1 layer carries; each is copied unchanged to the upgraded layer.
_V1_COPIED_PARAMS = (
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param", "convolution_param",
    "data_param", "dropout_param", "dummy_data_param", "eltwise_param", "exp_param",
    "hdf5_data_param", "hdf5_output_param", "hinge_loss_param", "image_data_param",
    "infogain_loss_param", "inner_product_param", "lrn_param", "memory_data_param", "mvn_param",
    "pooling_param", "power_param", "relu_param", "sigmoid_param", "softmax_param", "slice_param",
    "tanh_param", "threshold_param", "window_data_param", "transform_param", "loss_param",
)

# V1 data layers whose *_param held the transformation fields before transform_param existed.
_V1_DATA_PARAMS = {_V1.DATA: "data_param", _V1.IMAGE_DATA: "image_data_param",
                   _V1.WINDOW_DATA: "window_data_param"}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")

_SOLVER_TYPE_NAMES = {
    caffe_pb2.SolverParameter.SGD: "SGD", caffe_pb2.SolverParameter.NESTEROV: "Nesterov",
    caffe_pb2.SolverParameter.ADAGRAD: "AdaGrad", caffe_pb2.SolverParameter.RMSPROP: "RMSProp",
    caffe_pb2.SolverParameter.ADADELTA: "AdaDelta", caffe_pb2.SolverParameter.ADAM: "Adam",
}


# ------------------------------------------------------------------------------------------------
# Text format
# ------------------------------------------------------------------------------------------------

def _read_text_file(path: PathLike, what: str) -> str:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ParseError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise ParseError(f"{path}: cannot read {what} file: {exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ParseError(f"{path}:{line}:{col}: {what} file is not UTF-8 text "
                         f"(byte 0x{data[exc.start]:02x})") from None


def _parse_text(text: str, msg: Msg, source: str) -> Msg:
    """Parse protobuf text into `msg`, turning protobuf's errors into ParseError 'file:line:col: ...'.

    Like Caffe (C++ TextFormat::Parse), unknown fields, values of the wrong type and a non-repeated
    field given twice are errors.
    """
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        line, col = exc.GetLine(), exc.GetColumn()
        detail = str(exc)
        if line is not None:
            prefix = f"{line}:{col} : "
            if detail.startswith(prefix):
                detail = detail[len(prefix):]
            lines = text.splitlines()
            if 0 < line <= len(lines):
                quoted = f"'{lines[line - 1]}': "
                if detail.startswith(quoted):
                    detail = detail[len(quoted):]
                field = _field_before(lines[line - 1], col)
                if field and field not in detail:
                    detail = f"{detail} (field '{field}')"
            raise ParseError(f"{source}:{line}:{col}: {detail}") from None
        raise ParseError(f"{source}: {detail}") from None
    return msg


def _field_before(line: str, col: int) -> str | None:
    """The name of the last ``field:`` that starts before column ``col`` (1-based) of ``line``."""
    match = None
    for match in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)\s*:", line[: max(col, 1) - 1 + 1]):
        pass
    return match.group(1) if match else None


def parse_net_text(text: str, source: str = "<string>") -> caffe_pb2.NetParameter:
    """Parse a net in prototxt form and apply Caffe's upgrades (V1 layers, legacy inputs)."""
    net = _parse_text(text, caffe_pb2.NetParameter(), source)
    return upgrade_net(net, source)


def read_net(path: PathLike) -> caffe_pb2.NetParameter:
    """Read a net .prototxt, upgraded to the current format."""
    return parse_net_text(_read_text_file(path, "net prototxt"), str(path))


def parse_solver_text(text: str, source: str = "<string>",
                      solver_path: PathLike | None = None) -> caffe_pb2.SolverParameter:
    """Parse a solver in prototxt form and apply Caffe's upgrades; `solver_path`, if given, is used
    for the default snapshot_prefix as Caffe does."""
    solver = _parse_text(text, caffe_pb2.SolverParameter(), source)
    return upgrade_solver(solver, source, solver_path)


def read_solver(path: PathLike) -> caffe_pb2.SolverParameter:
    """Read a solver .prototxt: legacy solver_type becomes type, snapshot_prefix gets its default."""
    return parse_solver_text(_read_text_file(path, "solver prototxt"), str(path), solver_path=path)


def write_text(msg: pb_message.Message, path: PathLike) -> None:
    """Write a message in protobuf text format (a prototxt real Caffe can read), atomically."""
    _atomic_write(path, text_format.MessageToString(msg).encode("utf-8"))


# ------------------------------------------------------------------------------------------------
# Upgrades
# ------------------------------------------------------------------------------------------------

def upgrade_net(net: caffe_pb2.NetParameter, source: str = "<net>") -> caffe_pb2.NetParameter:
    """Upgrade a net in place to the current format, as Caffe does on load; returns it."""
    if any(v1.HasField("layer") for v1 in net.layers):
        raise ParseError(f"{source}: V0 net format (layers {{ layer {{ ... }} }}) is not supported; "
                         "upgrade it with Caffe's upgrade_net_proto_text")
    if net.layers:
        if net.layer:
            raise ParseError(f"{source}: the net has both 'layer' (current) and 'layers' (V1) "
                             "fields; write every layer in one format")
        _upgrade_v1_data_transformation(net)
        _upgrade_v1_layers(net)
    if net.input:
        _upgrade_input_fields(net, source)
    _upgrade_batch_norm_params(net)
    return net


def _upgrade_v1_data_transformation(net: caffe_pb2.NetParameter) -> None:
    for v1 in net.layers:
        field = _V1_DATA_PARAMS.get(v1.type)
        if field is None:
            continue
        legacy = getattr(v1, field)
        for name in _TRANSFORM_FIELDS:
            if legacy.HasField(name):
                setattr(v1.transform_param, name, getattr(legacy, name))
                legacy.ClearField(name)


def _upgrade_v1_layers(net: caffe_pb2.NetParameter) -> None:
    upgraded = caffe_pb2.NetParameter()
    for v1 in net.layers:
        _upgrade_v1_layer(v1, upgraded.layer.add())
    net.ClearField("layers")
    net.layer.MergeFrom(upgraded.layer)


def _upgrade_v1_layer(v1: caffe_pb2.V1LayerParameter, layer: caffe_pb2.LayerParameter) -> None:
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    if v1.HasField("name"):
        layer.name = v1.name
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    if v1.HasField("type"):
        layer.type = V1_TYPE_NAMES[v1.type]
    layer.blobs.extend(v1.blobs)

    def param(i: int) -> caffe_pb2.ParamSpec:
        while len(layer.param) <= i:
            layer.param.add()
        return layer.param[i]

    for i, name in enumerate(v1.param):
        param(i).name = name
    for i, mode in enumerate(v1.blob_share_mode):
        param(i).share_mode = mode  # STRICT/PERMISSIVE have the same numbers in both enums
    for i, lr in enumerate(v1.blobs_lr):
        param(i).lr_mult = lr
    for i, decay in enumerate(v1.weight_decay):
        param(i).decay_mult = decay
    layer.loss_weight.extend(v1.loss_weight)
    for field in _V1_COPIED_PARAMS:
        if v1.HasField(field):
            getattr(layer, field).CopyFrom(getattr(v1, field))


def _upgrade_input_fields(net: caffe_pb2.NetParameter, source: str) -> None:
    """Legacy `input` (+ `input_shape` or 4 `input_dim`s per input) -> a first layer of type Input.

    An `input` without shapes (old caffemodels) is simply dropped, as Caffe does.
    """
    inputs = list(net.input)
    if net.input_shape or net.input_dim:
        if net.input_shape and len(net.input_shape) != len(inputs):
            raise ParseError(f"{source}: {len(inputs)} legacy 'input' fields but "
                             f"{len(net.input_shape)} 'input_shape' fields")
        if not net.input_shape and len(net.input_dim) != 4 * len(inputs):
            raise ParseError(f"{source}: {len(inputs)} legacy 'input' fields need "
                             f"{4 * len(inputs)} 'input_dim' values, got {len(net.input_dim)}")
        layer = caffe_pb2.LayerParameter(name="input", type="Input", top=inputs)
        for i in range(len(inputs)):
            shape = layer.input_param.shape.add()
            if net.input_shape:
                shape.CopyFrom(net.input_shape[i])
            else:
                shape.dim.extend(net.input_dim[4 * i:4 * i + 4])
        reordered = caffe_pb2.NetParameter(layer=[layer])
        reordered.layer.MergeFrom(net.layer)
        net.ClearField("layer")
        net.layer.MergeFrom(reordered.layer)
    for field in ("input", "input_shape", "input_dim"):
        net.ClearField(field)


def _upgrade_batch_norm_params(net: caffe_pb2.NetParameter) -> None:
    """Old BatchNorm definitions declared three `param {}`: their statistics must not learn."""
    for layer in net.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0


def upgrade_solver(solver: caffe_pb2.SolverParameter, source: str = "<solver>",
                   solver_path: PathLike | None = None) -> caffe_pb2.SolverParameter:
    """Upgrade a solver in place as Caffe does when reading one; returns it."""
    if solver.HasField("solver_type"):
        if solver.HasField("type"):
            raise ParseError(f"{source}: both the legacy 'solver_type' (enum) and 'type' (string) "
                             "are given; keep only 'type'")
        solver.type = _SOLVER_TYPE_NAMES[solver.solver_type]
        solver.ClearField("solver_type")
    if solver_path is not None:
        if not solver.HasField("snapshot_prefix"):
            solver.snapshot_prefix = str(Path(solver_path).with_suffix(""))
        elif os.path.isdir(solver.snapshot_prefix):
            solver.snapshot_prefix = os.path.join(solver.snapshot_prefix, Path(solver_path).stem)
    return solver


# ------------------------------------------------------------------------------------------------
# Binary format
# ------------------------------------------------------------------------------------------------

_atomic_write = atomic.write_bytes


def write_binary(msg: pb_message.Message, path: PathLike) -> None:
    """Write a message in protobuf binary form (.caffemodel, .solverstate, .binaryproto), atomically."""
    _atomic_write(path, msg.SerializeToString())


def _read_bytes(path: PathLike, what: str, error: type[Exception]) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} file: {exc}") from None


def _parse_binary(data: bytes, msg: Msg, path: PathLike, what: str, error: type[Exception]) -> Msg:
    try:
        msg.ParseFromString(data)
    except (pb_message.DecodeError, RuntimeError, ValueError) as exc:
        raise error(f"{path}: not a valid {what} (protobuf decoding failed: {exc}); the file may be "
                    "truncated or of another format") from None
    return msg


def _has_unknown_fields(msg: pb_message.Message) -> bool:
    return len(unknown_fields.UnknownFieldSet(msg)) > 0


def read_binary_net(path: PathLike) -> caffe_pb2.NetParameter:
    """Read a .caffemodel (a binary NetParameter holding the layers' blobs), upgraded like a net.

    Raises WeightsError if the file is missing, truncated or not a caffemodel.
    """
    data = _read_bytes(path, "caffemodel", WeightsError)
    net = _parse_binary(data, caffe_pb2.NetParameter(), path, "caffemodel", WeightsError)
    if _has_unknown_fields(net) or not (net.layer or net.layers):
        raise WeightsError(f"{path}: not a valid caffemodel (no layers found; the file may be "
                           "truncated or of another format)")
    try:
        return upgrade_net(net, str(path))
    except ParseError as exc:
        raise WeightsError(str(exc)) from None


def read_blobproto(path: PathLike) -> caffe_pb2.BlobProto:
    """Read a .binaryproto blob (e.g. a mean image from compute_image_mean)."""
    data = _read_bytes(path, "binaryproto", ParseError)
    return _parse_binary(data, caffe_pb2.BlobProto(), path, "binaryproto blob", ParseError)


def write_blobproto(blob: caffe_pb2.BlobProto, path: PathLike) -> None:
    """Write a BlobProto as a .binaryproto, atomically."""
    write_binary(blob, path)


def read_solverstate(path: PathLike) -> caffe_pb2.SolverState:
    """Read a .solverstate (iteration, update history, multistep position)."""
    data = _read_bytes(path, "solverstate", ParseError)
    return _parse_binary(data, caffe_pb2.SolverState(), path, "solverstate", ParseError)


# ------------------------------------------------------------------------------------------------
# Blobs <-> arrays
# ------------------------------------------------------------------------------------------------

_LEGACY_DIMS = ("num", "channels", "height", "width")


def blob_shape(bp: caffe_pb2.BlobProto) -> tuple[int, ...]:
    """The shape of a BlobProto as Caffe reads it: any of the legacy num/channels/height/width set
    means the 4-D shape (num, channels, height, width); otherwise `shape`."""
    if any(bp.HasField(name) for name in _LEGACY_DIMS):
        return tuple(int(getattr(bp, name)) for name in _LEGACY_DIMS)
    return tuple(int(d) for d in bp.shape.dim)


def blobproto_to_array(bp: caffe_pb2.BlobProto, return_diff: bool = False) -> np.ndarray:
    """The values (or, with return_diff, the gradients) of a BlobProto as a float32 array of its
    shape. Blobs saved as double are converted to float32, as Caffe's float nets read them."""
    shape = blob_shape(bp)
    single, double = (bp.diff, bp.double_diff) if return_diff else (bp.data, bp.double_data)
    values = np.array(double if len(double) and not len(single) else single, dtype=np.float32)
    expected = int(np.prod(shape, dtype=np.int64))
    if values.size != expected:
        raise ParseError(f"blob of shape {shape} holds {values.size} "
                         f"{'diff' if return_diff else 'data'} values, expected {expected}")
    return values.reshape(shape)


def _packed_floats(field_number: int, values: np.ndarray) -> bytes:
    """Wire encoding of a packed repeated float field: tag, byte length, little-endian float32s.

    Merging these bytes fills the field about 15x faster than extending it from Python floats.
    """
    raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
    header = bytearray([(field_number << 3) | 2])
    n = len(raw)
    while True:
        byte, n = n & 0x7F, n >> 7
        header.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes(header) + raw


def array_to_blobproto(arr: np.ndarray, diff: np.ndarray | None = None) -> caffe_pb2.BlobProto:
    """A BlobProto with `shape` set from the array and its values (and diff) as float data."""
    arr = np.asarray(arr)
    bp = caffe_pb2.BlobProto()
    bp.shape.dim.extend(int(d) for d in arr.shape)
    data_field = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name["data"].number
    bp.MergeFromString(_packed_floats(data_field, arr.reshape(-1)))
    if diff is not None:
        diff = np.asarray(diff)
        if diff.size != arr.size:
            raise DataError(f"diff has {diff.size} values, data has {arr.size}")
        diff_field = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name["diff"].number
        bp.MergeFromString(_packed_floats(diff_field, diff.reshape(-1)))
    return bp
