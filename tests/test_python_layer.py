"""Python layers (``type: "Python"``) run with pycaffe's numpy interface inside autograd."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import caffe
from caffe.model_io import parse_net_text

sys.path.insert(0, str(Path(__file__).parent / "pylayers"))

NET = """
name: "py" force_backward: true
layer { name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "ipa" type: "InnerProduct" bottom: "a" top: "pa"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "Python" bottom: "pa" bottom: "b" top: "loss" loss_weight: 1
        python_param { module: "euclid_pylayer" layer: "EuclideanLossLayer" param_str: "%s" } }
"""


def _net(mult="1.0", builtin=False):
    text = NET % mult
    if builtin:
        text = text.replace('type: "Python"', 'type: "EuclideanLoss"')
    caffe.set_random_seed(5)
    net = caffe.Net(net_param=parse_net_text(text), phase=caffe.TRAIN)
    rng = np.random.default_rng(0)
    net.blobs["a"].data[...] = rng.normal(size=(4, 3))
    net.blobs["b"].data[...] = rng.normal(size=(4, 3))
    return net


def test_python_loss_layer_matches_builtin_forward_and_backward():
    py, ref = _net(), _net(builtin=True)
    py.forward()
    ref.forward()
    assert float(py.blobs["loss"].data[0]) == pytest.approx(float(ref.blobs["loss"].data), rel=1e-6)
    py.backward()
    ref.backward()
    np.testing.assert_allclose(py.params["ipa"][0].diff, ref.params["ipa"][0].diff, rtol=1e-5)
    np.testing.assert_allclose(py.blobs["a"].diff, ref.blobs["a"].diff, rtol=1e-5, atol=1e-7)


def test_param_str_reaches_the_layer():
    one, three = _net("1.0"), _net("3.0")
    one.forward()
    three.forward()
    assert float(three.blobs["loss"].data[0]) == pytest.approx(3 * float(one.blobs["loss"].data[0]))


def test_missing_python_module_is_a_clear_error():
    text = NET.replace("euclid_pylayer", "no_such_module_xyz") % "1"
    with pytest.raises(caffe.NetError) as exc:
        caffe.Net(net_param=parse_net_text(text), phase=caffe.TRAIN)
    assert "no_such_module_xyz" in str(exc.value) and "'loss'" in str(exc.value)
