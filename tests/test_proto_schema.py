"""caffe.proto / caffe_pb2: the committed module is what protoc generates, Caffe's field numbers are
on the wire, and every golden file written by real Caffe parses and re-serialises to the same bytes."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from google.protobuf import text_format
from google.protobuf import unknown_fields

from caffe.proto import caffe_pb2

from conftest import GOLDEN, REPO

COMMITTED = REPO / "caffe" / "proto" / "caffe_pb2.py"

BINARY_KINDS = {".caffemodel": caffe_pb2.NetParameter, ".solverstate": caffe_pb2.SolverState,
                ".binaryproto": caffe_pb2.BlobProto}


def _golden(suffix: str) -> list[Path]:
    files = sorted(GOLDEN.rglob(f"*{suffix}"))
    assert files, f"no golden {suffix} files under {GOLDEN}"
    return files


def _unknown_field_paths(msg, where: str = "") -> list[str]:
    """Paths of (sub)messages holding fields the schema does not know."""
    found = [where or "<root>"] if len(unknown_fields.UnknownFieldSet(msg)) else []
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        items = value if field.is_repeated else [value]
        for i, item in enumerate(items):
            found += _unknown_field_paths(item, f"{where}.{field.name}[{i}]")
    return found


def _serialized_descriptor(source: str) -> bytes:
    match = re.search(r"AddSerializedFile\((b'.*?')\)\n", source, re.S)
    assert match, "generated module without a serialized descriptor"
    return ast.literal_eval(match.group(1))


def _protoc_version_line(source: str) -> str:
    match = re.search(r"^# Protobuf Python Version: .*$", source, re.M)
    return match.group(0) if match else ""


def test_committed_caffe_pb2_matches_regenerated_module(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools not installed: cannot run protoc")
    from caffe.proto import regenerate

    fresh = regenerate.generate(tmp_path).read_text()
    committed = COMMITTED.read_text()
    if _protoc_version_line(fresh) == _protoc_version_line(committed):
        assert fresh == committed, "caffe_pb2.py is stale: run python -m caffe.proto.regenerate"
    else:
        # Another protoc stamps other version numbers; the schema itself must still be the same.
        assert _serialized_descriptor(fresh) == _serialized_descriptor(committed), (
            "caffe_pb2.py does not match caffe.proto: run python -m caffe.proto.regenerate")


def test_regenerate_cli_writes_module_into_given_directory(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools not installed: cannot run protoc")
    from caffe.proto import regenerate

    assert regenerate.main(["--out-dir", str(tmp_path)]) == 0
    assert _serialized_descriptor((tmp_path / "caffe_pb2.py").read_text()) == \
        _serialized_descriptor(COMMITTED.read_text())


@pytest.mark.parametrize("message, field, number", [
    (caffe_pb2.NetParameter, "layer", 100), (caffe_pb2.NetParameter, "layers", 2),
    (caffe_pb2.NetParameter, "input_dim", 4), (caffe_pb2.LayerParameter, "convolution_param", 106),
    (caffe_pb2.LayerParameter, "batch_norm_param", 139), (caffe_pb2.LayerParameter, "scale_param", 142),
    (caffe_pb2.LayerParameter, "input_param", 143), (caffe_pb2.LayerParameter, "python_param", 130),
    (caffe_pb2.BlobProto, "data", 5), (caffe_pb2.BlobProto, "shape", 7),
    (caffe_pb2.BlobProto, "double_data", 8), (caffe_pb2.Datum, "float_data", 6),
    (caffe_pb2.SolverParameter, "type", 40), (caffe_pb2.SolverParameter, "layer_wise_reduce", 41),
    (caffe_pb2.SolverParameter, "weights", 42), (caffe_pb2.SolverParameter, "iter_size", 36),
    (caffe_pb2.V1LayerParameter, "param", 1001), (caffe_pb2.SolverState, "current_step", 4),
])
def test_field_numbers_are_caffes(message, field, number):
    assert message.DESCRIPTOR.fields_by_name[field].number == number


def test_defaults_are_caffes():
    assert caffe_pb2.SolverParameter().type == "SGD"
    assert caffe_pb2.SolverParameter().solver_mode == caffe_pb2.SolverParameter.GPU
    assert caffe_pb2.NetState().phase == caffe_pb2.TEST
    assert caffe_pb2.PoolingParameter().round_mode == caffe_pb2.PoolingParameter.CEIL
    assert caffe_pb2.LossParameter().normalization == caffe_pb2.LossParameter.VALID
    assert caffe_pb2.BatchNormParameter().eps == pytest.approx(1e-5)
    assert caffe_pb2.ParamSpec().lr_mult == 1.0
    assert caffe_pb2.ConvolutionParameter().bias_term is True


def test_packed_blob_data_has_caffes_wire_bytes():
    blob = caffe_pb2.BlobProto(data=[1.0])
    # field 5, wire type 2 (packed), 4 bytes, float32 1.0 little-endian
    assert blob.SerializeToString() == b"\x2a\x04\x00\x00\x80\x3f"


@pytest.mark.parametrize("suffix", sorted(BINARY_KINDS))
def test_golden_binary_files_round_trip_to_identical_bytes(suffix):
    for path in _golden(suffix):
        data = path.read_bytes()
        msg = BINARY_KINDS[suffix]()
        msg.ParseFromString(data)
        assert _unknown_field_paths(msg) == [], path
        assert msg.SerializeToString() == data, f"{path} re-serialised differently"


def test_unknown_field_detection_sees_nested_fields():
    layer = caffe_pb2.LayerParameter(name="x")
    layer.MergeFromString(b"\xf8\x7f\x01")  # field 2047, varint 1: not in the schema
    net = caffe_pb2.NetParameter()
    net.layer.add().CopyFrom(layer)
    assert _unknown_field_paths(net) == [".layer[0]"]


def test_golden_prototxts_parse_with_the_schema():
    for path in _golden(".prototxt"):
        kind = caffe_pb2.SolverParameter if "solver" in path.stem else caffe_pb2.NetParameter
        msg = text_format.Parse(path.read_text(), kind())
        again = text_format.Parse(text_format.MessageToString(msg), kind())
        assert again == msg, path
