"""Bad nets and weights give the package's own exceptions with messages that say where and what."""
from __future__ import annotations

import numpy as np
import pytest

import caffe
from caffe.errors import NetError, ParseError, UnknownLayerError, WeightsError

SMALL = """
name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip" inner_product_param { num_output: 5 } }
"""


def _write(tmp_path, text, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_malformed_prototxt_names_file_line_and_column(tmp_path):
    path = _write(tmp_path, SMALL.replace('top: "conv"\n', 'top: "conv"\n  bogus {\n', 1))
    with pytest.raises(ParseError) as exc:
        caffe.Net(path, caffe.TEST)
    message = str(exc.value)
    assert "net.prototxt:" in message
    assert ":5:" in message or ":6:" in message


def test_field_of_the_wrong_type_is_a_parse_error(tmp_path):
    path = _write(tmp_path, SMALL.replace("num_output: 5", 'num_output: "five"'))
    with pytest.raises(ParseError) as exc:
        caffe.Net(path, caffe.TEST)
    assert "net.prototxt:6:" in str(exc.value) and "num_output" in str(exc.value)


def test_unknown_layer_type_names_it_and_lists_known_types(tmp_path):
    path = _write(tmp_path, SMALL.replace('type: "InnerProduct"', 'type: "InnerProdcut"'))
    with pytest.raises(UnknownLayerError) as exc:
        caffe.Net(path, caffe.TEST)
    message = str(exc.value)
    assert "InnerProdcut" in message and "'ip'" in message
    assert "InnerProduct" in message and "Convolution" in message


def test_bottom_that_no_layer_produces_is_named(tmp_path):
    path = _write(tmp_path, SMALL.replace('bottom: "conv" top: "ip"', 'bottom: "cnov" top: "ip"'))
    with pytest.raises(NetError) as exc:
        caffe.Net(path, caffe.TEST)
    assert "Unknown bottom blob 'cnov'" in str(exc.value) and "layer 'ip'" in str(exc.value)


def test_caffemodel_shape_mismatch_names_layer_and_both_shapes(tmp_path):
    net = caffe.Net(_write(tmp_path, SMALL), caffe.TEST)
    model = str(tmp_path / "w.caffemodel")
    net.save(model)
    other = caffe.Net(_write(tmp_path, SMALL.replace("num_output: 4", "num_output: 6"), "b.prototxt"),
                      caffe.TEST)
    with pytest.raises(WeightsError) as exc:
        other.copy_from(model)
    message = str(exc.value)
    assert "'conv'" in message and "(4, 3, 3, 3)" in message and "(6, 3, 3, 3)" in message


def test_truncated_caffemodel_is_rejected_with_the_file_name(tmp_path):
    net = caffe.Net(_write(tmp_path, SMALL), caffe.TEST)
    model = tmp_path / "w.caffemodel"
    net.save(str(model))
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as exc:
        net.copy_from(str(model))
    assert "w.caffemodel" in str(exc.value)


def test_non_protobuf_caffemodel_is_rejected(tmp_path):
    net = caffe.Net(_write(tmp_path, SMALL), caffe.TEST)
    model = tmp_path / "junk.caffemodel"
    model.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(WeightsError) as exc:
        net.copy_from(str(model))
    assert "junk.caffemodel" in str(exc.value)


def test_wrong_blob_count_for_layer_is_named(tmp_path):
    net = caffe.Net(_write(tmp_path, SMALL), caffe.TEST)
    model = str(tmp_path / "w.caffemodel")
    net.save(model)
    nobias = caffe.Net(_write(tmp_path, SMALL.replace("kernel_size: 3", "kernel_size: 3 bias_term: false"),
                              "c.prototxt"), caffe.TEST)
    with pytest.raises(WeightsError) as exc:
        nobias.copy_from(model)
    assert "'conv'" in str(exc.value) and "2" in str(exc.value) and "1" in str(exc.value)


def test_missing_prototxt_is_a_clear_error(tmp_path):
    with pytest.raises((caffe.CaffeError, FileNotFoundError)) as exc:
        caffe.Net(str(tmp_path / "nope.prototxt"), caffe.TEST)
    assert "nope.prototxt" in str(exc.value)


def test_bad_parameter_is_a_net_error_naming_the_layer(tmp_path):
    path = _write(tmp_path, SMALL.replace("kernel_size: 3", "kernel_size: 3 group: 2"))
    with pytest.raises(NetError) as exc:
        caffe.Net(path, caffe.TEST)
    assert "'conv'" in str(exc.value) and "group" in str(exc.value)


def test_phase_must_be_given(tmp_path):
    with pytest.raises(NetError):
        caffe.Net(_write(tmp_path, SMALL))
