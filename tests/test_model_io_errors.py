"""Bad input to model_io: each raises the package's own error naming the file (and line:column for
text), never a bare protobuf exception."""
from __future__ import annotations

import numpy as np
import pytest

from caffe import model_io
from caffe.errors import CaffeError, ParseError, WeightsError

from conftest import GOLDEN

GOLDEN_CASES = ("layers_forward",)


def test_malformed_prototxt_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text('name: "x"\nlayer {\n  name: "conv"\n  type: "Convolution"\n  convolution_param { num_output: 4\n}\n')
    with pytest.raises(ParseError) as err:
        model_io.read_net(path)
    assert str(err.value) == f'{path}:6:1: Expected "}}".'


def test_unknown_field_names_file_line_column_and_field(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text('name: "x"\nlayer {\n  name: "a"\n  bottm: "data"\n}\n')
    with pytest.raises(ParseError, match=rf"^{path}:4:3: .*no field named \"bottm\""):
        model_io.read_net(path)


@pytest.mark.parametrize("value, col, complaint", [
    ('num_output: "four"', 35, "Couldn't parse integer"),
    ("num_output: 1.5", 35, "Couldn't parse integer"),
    ("bias_term: maybe", 34, 'Expected "true" or "false"'),
])
def test_wrong_field_type_is_parse_error_at_the_value(value, col, complaint):
    with pytest.raises(ParseError) as err:
        model_io.parse_net_text(f"layer {{\n  convolution_param {{ {value} }}\n}}", source="net.prototxt")
    assert str(err.value).startswith(f"net.prototxt:2:{col}: {complaint}"), str(err.value)


def test_scalar_given_for_message_field_is_parse_error():
    with pytest.raises(ParseError, match=r'^net.prototxt:2:22: Expected "\{"'):
        model_io.parse_net_text("layer {\n  convolution_param: 3\n}", source="net.prototxt")


def test_field_given_twice_is_parse_error():
    with pytest.raises(ParseError, match=r"^n.prototxt:2:.*multiple \"name\""):
        model_io.parse_net_text('name: "a"\nname: "b"', source="n.prototxt")


def test_unknown_solver_field_names_file_line_column_and_field(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text('net: "train.prototxt"\nbase_lr: 0.01\nlearning_rate: 0.1\n')
    with pytest.raises(ParseError, match=rf"^{path}:3:1: .*no field named \"learning_rate\""):
        model_io.read_solver(path)


def test_unknown_enum_value_is_parse_error():
    with pytest.raises(ParseError, match="CONVOLUTIO"):
        model_io.parse_net_text('layers { type: CONVOLUTIO }', source="v1.prototxt")


@pytest.mark.parametrize("reader", [model_io.read_net, model_io.read_solver, model_io.read_blobproto,
                                    model_io.read_solverstate])
def test_missing_text_or_blob_file_is_clear_error(tmp_path, reader):
    missing = tmp_path / "nope.file"
    with pytest.raises(CaffeError, match=rf"{missing}: .*not found"):
        reader(missing)


def test_missing_caffemodel_is_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        model_io.read_binary_net(tmp_path / "absent.caffemodel")


def _golden_caffemodel() -> bytes:
    path = GOLDEN / "layers_forward" / "weights.caffemodel"
    return path.read_bytes()


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_caffemodel_is_weights_error(tmp_path, keep):
    data = _golden_caffemodel()
    path = tmp_path / "cut.caffemodel"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(WeightsError, match=rf"{path}: not a valid caffemodel"):
        model_io.read_binary_net(path)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_not_a_caffemodel(tmp_path, seed):
    path = tmp_path / "random.caffemodel"
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(WeightsError, match=rf"{path}: not a valid caffemodel"):
        model_io.read_binary_net(path)


def test_prototxt_given_as_caffemodel_is_weights_error(tmp_path):
    path = tmp_path / "net.caffemodel"
    path.write_text('name: "x"\nlayer { name: "a" type: "ReLU" }\n')
    with pytest.raises(WeightsError, match="not a valid caffemodel"):
        model_io.read_binary_net(path)


def test_empty_caffemodel_is_weights_error(tmp_path):
    path = tmp_path / "empty.caffemodel"
    path.write_bytes(b"")
    with pytest.raises(WeightsError, match="no layers"):
        model_io.read_binary_net(path)


def test_truncated_binaryproto_is_parse_error(tmp_path):
    path = tmp_path / "mean.binaryproto"
    blob = model_io.array_to_blobproto(np.ones((1, 3, 4, 4), np.float32))
    path.write_bytes(blob.SerializeToString()[:-7])
    with pytest.raises(ParseError, match="not a valid binaryproto"):
        model_io.read_blobproto(path)


def test_blob_with_wrong_value_count_is_error():
    blob = model_io.array_to_blobproto(np.ones((2, 3), np.float32))
    blob.shape.dim[0] = 3
    with pytest.raises(ParseError, match=r"\(3, 3\).*6"):
        model_io.blobproto_to_array(blob)


def test_a_prototxt_that_is_not_utf8_names_its_line_and_column(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_bytes(b'name: "n"\nlayer { name: "d\xe9" type: "Input" }\n')
    with pytest.raises(ParseError, match=r"net.prototxt:2:17: net prototxt file is not UTF-8 text \(byte 0xe9\)"):
        model_io.read_net(path)
