"""Nets and weights that used to fail with a raw torch error or give a silent wrong answer: zero
outputs, kernels larger than their input, inputs of another shape, empty nets, caffemodels that
are cut short or belong to another net."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import caffe
from caffe.errors import NetError, WeightsError, WeightsWarning

INPUT = 'name: "n"\nlayer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 1 dim: 8 dim: 8 } } }\n'
SMALL = INPUT + """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
"""


def _net(tmp_path, text, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_inner_product_with_zero_outputs_is_an_error_naming_the_layer(tmp_path):
    text = INPUT + ('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                    'inner_product_param { num_output: 0 weight_filler { type: "xavier" } } }')
    with pytest.raises(NetError, match=r"layer 'fc' \(InnerProduct\): .*num_output must be positive"):
        caffe.Net(_net(tmp_path, text), caffe.TEST)


@pytest.mark.parametrize("layer,expected", [
    ('layer { name: "c9" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 9 } }',
     r"layer 'c9' \(Convolution\): kernel 9 does not fit the input height 8 with pad 0: the output height would be 0"),
    ('layer { name: "p9" type: "Pooling" bottom: "data" top: "p" pooling_param { kernel_size: 9 stride: 1 } }',
     r"layer 'p9' \(Pooling\): kernel \(9, 9\) does not fit the input \(8, 8\) with pad \(0, 0\)"),
    ('layer { name: "p12" type: "Pooling" bottom: "data" top: "p" pooling_param { kernel_size: 12 pad: 1 } }',
     r"layer 'p12' \(Pooling\): kernel \(12, 12\) does not fit .* would be \(-1, -1\)"),
])
def test_kernel_larger_than_its_padded_input_is_an_error_naming_the_layer(tmp_path, layer, expected):
    with pytest.raises(NetError, match=expected):
        caffe.Net(_net(tmp_path, INPUT + layer), caffe.TEST)


@pytest.mark.parametrize("shape,expected", [
    ((2, 1, 9, 9), r"input 'data' \(2, 1, 9, 9\) \(was \(2, 1, 8, 8\)\) does not fit: layer 'ip'"),
    ((2, 3, 8, 8), r"layer 'conv' \(Convolution\): expects bottoms of shape \(N, 1, H, W\)"),
    ((2, 1, 2, 2), r"layer 'conv' \(Convolution\): kernel 3 does not fit the input height 2"),
])
def test_forward_with_an_input_of_another_shape_is_an_error_and_leaves_the_net_as_it_was(
        tmp_path, shape, expected):
    net = caffe.Net(_net(tmp_path, SMALL), caffe.TEST)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    before = net.forward(data=x)["ip"].copy()
    with pytest.raises(NetError, match=expected):
        net.forward(data=np.ones(shape, np.float32))
    assert net.blobs["data"].data.shape == (2, 1, 8, 8) and net.blobs["conv"].data.shape == (2, 2, 6, 6)
    np.testing.assert_array_equal(net.blobs["data"].data, x)
    np.testing.assert_array_equal(net.forward()["ip"], before)


def test_forward_with_another_batch_size_still_reshapes_the_net(tmp_path):
    net = caffe.Net(_net(tmp_path, SMALL), caffe.TEST)
    assert net.forward(data=np.ones((5, 1, 8, 8), np.float32))["ip"].shape == (5, 3)


def test_empty_net_is_an_error_naming_the_file(tmp_path):
    path = _net(tmp_path, 'name: "empty"\n')
    with pytest.raises(NetError, match=r"net\.prototxt: no layers in phase TRAIN"):
        caffe.Net(path, caffe.TRAIN)


def test_caffe_train_on_an_empty_net_exits_1_with_one_line(tmp_path):
    _net(tmp_path, 'name: "empty"\n')
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path / "net.prototxt"}"\nbase_lr: 0.1\nmax_iter: 3\nlr_policy: "fixed"\nsolver_mode: CPU\n')
    result = subprocess.run([sys.executable, "-m", "caffe.tools.caffe_cli", "train",
                             f"--solver={tmp_path / 'solver.prototxt'}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "error:" in last and "no layers in phase TRAIN" in last and "Traceback" not in result.stderr


def test_caffemodel_missing_layers_loads_with_a_warning_naming_them(tmp_path):
    net = caffe.Net(_net(tmp_path, SMALL), caffe.TEST)
    full = tmp_path / "full.caffemodel"
    net.save(str(full))
    proto = caffe.proto.caffe_pb2.NetParameter()
    proto.ParseFromString(full.read_bytes())
    del proto.layer[2:]  # cut after 'conv': what a file cut at a layer boundary parses to
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(proto.SerializeToString())
    other = caffe.Net(_net(tmp_path, SMALL), caffe.TEST)
    with pytest.warns(WeightsWarning, match=r"cut\.caffemodel: no weights for 1 layer\(s\) .*: ip$"):
        other.copy_from(str(cut))
    np.testing.assert_array_equal(other.params["conv"][0].data, net.params["conv"][0].data)


def test_caffemodel_of_another_net_is_an_error(tmp_path):
    net = caffe.Net(_net(tmp_path, SMALL), caffe.TEST)
    model = tmp_path / "w.caffemodel"
    net.save(str(model))
    renamed = SMALL.replace('name: "conv"', 'name: "conv_a"').replace('name: "ip"', 'name: "ip_a"')
    other = caffe.Net(_net(tmp_path, renamed, "other.prototxt"), caffe.TEST)
    with pytest.raises(WeightsError, match=r"w\.caffemodel: none of its \d+ layers matches"):
        other.copy_from(str(model))
