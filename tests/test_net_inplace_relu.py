"""The solver's step (``Net.run``) writes an in-place ReLU over the fresh tensor of the layer
before it, and masks its gradient in place when a Convolution is its only reader
(caffe.functional.relu_). Which ReLUs take it, and that the step gives exactly what the plain
ReLU gives: loss, blob data, parameter gradients, BatchNorm statistics; CAFFE_INPLACE_RELU=0
turns it off."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import caffe
from caffe.functional import relu_
from train_step_helpers import assert_same_step, feed, sse_pair, train_net

NET = """
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 3 dim: 12 dim: 12 } shape { dim: 4 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3"
  convolution_param { num_output: 8 kernel_size: 1 } }
layer { name: "relu3" type: "ReLU" bottom: "conv3" top: "relu3" }
layer { name: "cat" type: "Concat" bottom: "relu3" bottom: "pool2" top: "cat" }
layer { name: "relu4" type: "ReLU" bottom: "cat" top: "cat" }
layer { name: "split_conv" type: "Convolution" bottom: "cat" top: "sc"
  convolution_param { num_output: 16 kernel_size: 1 } }
layer { name: "relu5" type: "ReLU" bottom: "sc" top: "sc" }
layer { name: "leaky" type: "ReLU" bottom: "sc" top: "sc" relu_param { negative_slope: 0.1 } }
layer { name: "pool_s" type: "Pooling" bottom: "sc" top: "pool_s"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "pool_c" type: "Pooling" bottom: "cat" top: "pool_c"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "sum" type: "Eltwise" bottom: "pool_s" bottom: "pool_c" top: "sum" }
layer { name: "ip" type: "InnerProduct" bottom: "sum" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def build(over: bool) -> caffe.Net:
    return train_net(NET, off=None if over else "_relu_over")


def test_the_relus_written_over_and_those_whose_gradient_is_masked_in_place() -> None:
    net = build(True)
    found = {net._layer_names[k]: grad for k, grad in net._relu_over.items()}
    # relu3 is not in place and the leaky one has a slope; the gradient of relu2 comes from a
    # pooling, that of relu4 from two readers, that of relu5 through the leaky ReLU
    assert found == {"relu1": True, "relu2": False, "relu4": False, "relu5": False}


def test_the_switch_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAFFE_INPLACE_RELU", "0")
    assert build(True)._relu_over == {}


def test_the_step_equals_the_plain_relus() -> None:
    assert_same_step(build(True), build(False))


def test_pycaffe_forward_backward_keeps_the_plain_relu_and_its_diffs() -> None:
    over, plain = build(True), build(False)
    for net in (over, plain):
        feed(net)
        net.forward()
        net.backward()
    for name in plain.blobs:
        np.testing.assert_array_equal(over.blobs[name].data, plain.blobs[name].data)
        np.testing.assert_array_equal(over.blobs[name].diff, plain.blobs[name].diff)


@pytest.mark.parametrize("key", ["holonet", "densenet"])
def test_sse_train_step_equals_the_plain_relus(key: str) -> None:
    fused, plain = sse_pair(key, "_relu_over")
    assert fused._relu_over and any(fused._relu_over.values())
    fused._bn_scale_relu = {}  # the ReLU inside the BatchNorm node sums in another order
    assert_same_step(fused, plain)


def test_relu_in_place_values_and_gradients() -> None:
    x = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    g = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    leaf = x.clone().requires_grad_()
    expected = torch.relu(leaf)
    expected.backward(g)
    for grad_in_place in (False, True):
        a = x.clone().requires_grad_()
        y = relu_(a * 1.0, grad_in_place)
        y.backward(g.clone())
        assert torch.equal(y, expected) and torch.equal(a.grad, leaf.grad)
