"""Convolution and InnerProduct declared in place with another output shape compute what real Caffe
computes on the shared buffer (golden ``inplace_reshape``: forward, backward, and a second forward
that depends on the history of the buffers), with a warning naming the layers; the solver's fast
path gives the same gradients; ``CAFFE_INPLACE_RESHAPE=math`` gives the mathematical layer."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import caffe
from caffe.inplace import InplaceReshapeWarning
from golden_utils import param_key

GOLDEN_CASES = ("inplace_reshape/conv_channels", "inplace_reshape/conv_stride",
                "inplace_reshape/conv_chain", "inplace_reshape/conv_1x1", "inplace_reshape/ip_shrink",
                "inplace_reshape/ip_grow", "inplace_reshape/ip_4d")
CASES = ["conv_channels", "conv_stride", "conv_chain", "conv_1x1", "ip_shrink", "ip_grow", "ip_4d"]
TOL = dict(rtol=1e-5, atol=1e-5)


def build(case, prototxt: str = "net.prototxt") -> caffe.Net:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InplaceReshapeWarning)
        return caffe.Net(str(case / prototxt), caffe.TRAIN, weights=str(case / "weights.caffemodel"))


def assert_blobs(net: caffe.Net, path, what: str) -> None:
    expected = np.load(path)
    for key in expected.files:
        np.testing.assert_allclose(getattr(net.blobs[key], what), expected[key], err_msg=key, **TOL)


def assert_param_diffs(net: caffe.Net, path) -> None:
    expected = np.load(path)
    for key in expected.files:
        layer, i = param_key(key)
        scale = max(float(np.abs(expected[key]).max()), 1.0)
        np.testing.assert_allclose(net.params[layer][i].diff / scale, expected[key] / scale,
                                   err_msg=key, **TOL)


@pytest.mark.parametrize("name", CASES)
def test_inplace_layers_match_real_caffe_forward_backward_and_second_forward(golden, name) -> None:
    case = golden / "inplace_reshape" / name
    net = build(case)
    x = np.load(case / "input_data.npy")
    net.blobs["data"].data[...] = x
    per_layer = np.load(case / "expected_per_layer.npz")
    for i, layer in enumerate(net._layer_names):
        net.forward(start=layer, end=layer)
        for top in net.top_names[layer]:
            np.testing.assert_allclose(net.blobs[top].data, per_layer[f"{i:03d}:{layer}:{top}"],
                                       err_msg=f"{layer}:{top}", **TOL)
    assert_blobs(net, case / "expected_forward.npz", "data")
    diffs = np.load(case / "output_diffs.npz")
    for key in diffs.files:
        net.blobs[key].diff[...] = diffs[key]
    net.backward()
    assert_blobs(net, case / "expected_blob_diff.npz", "diff")
    assert_param_diffs(net, case / "expected_param_diff.npz")
    net.blobs["data"].data[...] = x
    net.forward()
    assert_blobs(net, case / "expected_forward2.npz", "data")


@pytest.mark.parametrize("name", ["conv_channels", "conv_stride", "ip_grow"])
def test_the_solver_path_gives_the_same_arithmetic(golden, name) -> None:
    case = golden / "inplace_reshape" / name
    net = build(case)
    net.blobs["data"].data[...] = np.load(case / "input_data.npy")
    net.run()
    assert_blobs(net, case / "expected_forward.npz", "data")
    diff = torch.from_numpy(np.load(case / "output_diffs.npz")["x"])
    net.clear_param_diffs()
    torch.autograd.backward(net._data["x"], diff)
    assert_param_diffs(net, case / "expected_param_diff.npz")


def test_building_such_a_net_warns_with_the_layer_names(golden) -> None:
    case = golden / "inplace_reshape" / "conv_chain"
    with pytest.warns(InplaceReshapeWarning, match="'conv_a' .*'conv_b'"):
        caffe.Net(str(case / "net.prototxt"), caffe.TRAIN)


@pytest.mark.parametrize("name", ["conv_stride", "ip_shrink"])
def test_the_environment_switch_gives_the_mathematical_layer(golden, monkeypatch, name) -> None:
    case = golden / "inplace_reshape" / name
    monkeypatch.setenv("CAFFE_INPLACE_RESHAPE", "math")
    with pytest.warns(InplaceReshapeWarning, match="mathematical"):
        net = caffe.Net(str(case / "net.prototxt"), caffe.TRAIN,
                        weights=str(case / "weights.caffemodel"))
    net.blobs["data"].data[...] = np.load(case / "input_data.npy")
    net.forward()
    twin = np.load(case / "expected_outofplace_forward.npz")
    out = [k for k in twin.files if k.startswith("x_")][-1]
    np.testing.assert_allclose(net.blobs["x"].data, twin[out], **TOL)


def test_a_bad_switch_value_is_an_error(golden, monkeypatch) -> None:
    monkeypatch.setenv("CAFFE_INPLACE_RESHAPE", "fast")
    with pytest.raises(ValueError, match="CAFFE_INPLACE_RESHAPE"):
        caffe.Net(str(golden / "inplace_reshape" / "ip_grow" / "net.prototxt"), caffe.TRAIN)
