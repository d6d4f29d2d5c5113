"""The solver's step (``Net.run``) computes an in-place ReLU and the MAX Pooling that alone reads
its top as one autograd node (caffe.functional.relu_max_pool2d), whose backward masks the pooled
gradient instead of the ReLU's input gradient. Which pairs take it, and that the step gives
exactly what the plain layers give (CAFFE_INPLACE_RELU=0 turns it off)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import caffe
from caffe.functional import relu_max_pool2d
from train_step_helpers import assert_same_step, sse_pair, train_net

NET = """
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 3 dim: 13 dim: 13 } shape { dim: 4 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 8 kernel_size: 1 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "pool2b" type: "Pooling" bottom: "conv2" top: "pool2b"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3"
  convolution_param { num_output: 8 kernel_size: 1 } }
layer { name: "relu3" type: "ReLU" bottom: "conv3" top: "conv3" }
layer { name: "pool3" type: "Pooling" bottom: "conv3" top: "pool3"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool3" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "ip2" type: "InnerProduct" bottom: "pool2b" top: "ip2" inner_product_param { num_output: 5 } }
layer { name: "sum" type: "Eltwise" bottom: "ip" bottom: "ip2" top: "sum" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "sum" bottom: "label" top: "loss" }
"""


def build(fused: bool) -> caffe.Net:
    return train_net(NET, off=None if fused else "_relu_pool")


def test_the_pairs_fused() -> None:
    net = build(True)
    found = {net._layer_names[k]: net._layer_names[j] for k, j in net._relu_pool.items()}
    # relu2's top also feeds an AVE pooling; pool3 is AVE
    assert found == {"relu1": "pool1"}


def test_the_switch_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAFFE_INPLACE_RELU", "0")
    assert build(True)._relu_pool == {}


def test_the_step_equals_the_plain_layers() -> None:
    assert_same_step(build(True), build(False))


def test_sse_holonet_train_step_equals_the_plain_layers() -> None:
    fused, plain = sse_pair("holonet", "_relu_pool")
    assert fused._relu_pool
    assert_same_step(fused, plain)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_values_and_gradient_equal_relu_then_max_pool(memory_format) -> None:
    # zeros and ties: windows whose maximum is 0 after the ReLU must pass no gradient
    x = torch.randn(3, 4, 9, 9).clamp(min=-0.5).round(decimals=1)
    x = x.contiguous(memory_format=memory_format)
    leaf = x.clone().requires_grad_()
    relu = torch.relu(leaf)
    pooled = F.max_pool2d(relu, 3, 2, 0, ceil_mode=True)
    g = torch.randn_like(pooled)
    pooled.backward(g)
    a = x.clone().requires_grad_()
    top, y = relu_max_pool2d(a * 1.0, (3, 3), (2, 2), (0, 0))
    y.backward(g)
    assert torch.equal(top, relu) and torch.equal(y, pooled)
    assert torch.equal(a.grad, leaf.grad)


def test_without_autograd_it_is_relu_then_caffe_pooling() -> None:
    x = torch.randn(2, 3, 7, 7)
    top, y = relu_max_pool2d(x.clone(), (3, 3), (2, 2), (1, 1))
    assert torch.equal(top, torch.relu(x))
    np.testing.assert_array_equal(y.shape, (2, 3, 4, 4))
