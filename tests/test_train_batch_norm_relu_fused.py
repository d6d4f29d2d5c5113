"""In the solver's step a BatchNorm, the in-place Scale after it and the in-place ReLU after them
run as one node (caffe.net ``_bn_scale_relu``); with caffe/csrc's kernels the ReLU is applied
inside the normalisation and its backward mask recomputed inside the BatchNorm backward, so it
costs no pass of its own (issue 19). The step must give the separate layers' loss, gradients,
moving averages and blob data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import caffe
import caffe.functional
from caffe.functional import NATIVE_BATCH_NORM_MIN
from caffe.model_io import parse_net_text
from inference_helpers import randomize_weights
from train_step_helpers import sse_pair

BATCH, SIZE = 8, 96  # the BatchNorm sees 8 x 32 x 96 x 96 values, enough for the C kernels
NET = f"""
layer {{ name: "data" type: "Input" top: "data" top: "label"
        input_param {{ shape {{ dim: {BATCH} dim: 3 dim: {SIZE} dim: {SIZE} }} shape {{ dim: {BATCH} }} }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param {{ num_output: 32 kernel_size: 3 pad: 1 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }}
layer {{ name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param {{ bias_term: true }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        convolution_param {{ num_output: 8 kernel_size: 3 stride: 4 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "bn2" type: "BatchNorm" bottom: "conv2" top: "conv2" }}
layer {{ name: "scale2" type: "Scale" bottom: "conv2" top: "conv2" scale_param {{ bias_term: true }} }}
layer {{ name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }}
layer {{ name: "pool" type: "Pooling" bottom: "conv2" top: "pool" pooling_param {{ pool: AVE global_pooling: true }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
        inner_product_param {{ num_output: 5 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
"""


def build(fused: bool) -> caffe.Net:
    caffe.set_random_seed(7)
    net = caffe.Net(net_param=parse_net_text(NET), phase=caffe.TRAIN)
    randomize_weights(net, 7)
    if not fused:
        net._bn_scale_relu = {}
    rng = np.random.default_rng(1)
    net.blobs["data"].data[...] = rng.normal(0, 1, (BATCH, 3, SIZE, SIZE))
    net.blobs["label"].data[...] = rng.integers(0, 5, BATCH)
    return net


def test_batchnorm_scale_relu_triples_are_found() -> None:
    net = build(fused=True)
    found = {net._layer_names[k]: net._layer_names[i] for k, i in net._bn_scale_relu.items()}
    assert found == {"relu1": "bn1", "relu2": "bn2"}


def test_fused_step_equals_the_separate_layers(kernels) -> None:
    fused, separate = build(True), build(False)
    assert BATCH * 32 * SIZE * SIZE >= NATIVE_BATCH_NORM_MIN
    losses = [net.forward_backward() for net in (fused, separate)]
    top = fused._data["conv1"]
    node = type(top.grad_fn).__name__
    if kernels == "C kernels":
        assert node == "_ChannelsLastBatchNormBackward"  # the ReLU is inside the node
    else:
        assert node == "_ReLUInPlaceBackward"
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for name in ("conv1", "conv2", "ip"):
        np.testing.assert_allclose(fused.blobs[name].data, separate.blobs[name].data,
                                   rtol=1e-5, atol=1e-5, err_msg=name)
    for a, b in zip(fused.learnable_params, separate.learnable_params):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)
    for layer in ("bn1", "bn2"):
        for a, b in zip(fused.params[layer], separate.params[layer]):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_fused_relu_values_and_gradients_are_batch_norm_then_relu(kernels, training) -> None:
    """caffe.functional.batch_norm with ``relu``: the values and gradients of F.batch_norm then
    ReLU; the backward's recomputed mask is the forward's, value by value."""
    g = torch.Generator().manual_seed(3)
    shape = (8, 40, 80, 80)
    x0 = torch.randn(shape, generator=g).contiguous(memory_format=torch.channels_last)
    w0, b0 = torch.rand(40, generator=g) + 0.5, torch.randn(40, generator=g)
    stats = torch.randn(40, generator=g), torch.rand(40, generator=g) + 0.5
    grad = torch.randn(shape, generator=g).contiguous(memory_format=torch.channels_last)
    results = []
    for fused in (True, False):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        mean, var = stats[0].clone(), stats[1].clone()
        if fused:
            y = caffe.functional.batch_norm(x, mean, var, w, b, training, 1.0, 1e-5, relu=True)
        else:
            y = torch.relu(torch.nn.functional.batch_norm(x, mean, var, w, b, training, 1.0, 1e-5))
        if fused and kernels == "C kernels":
            assert type(y.grad_fn).__name__ == "_ChannelsLastBatchNormBackward"
        results.append((y, mean, var, *torch.autograd.grad(y, [x, w, b], grad)))
        if fused and not training:  # dx = w invstd dy where the output is positive, else 0
            assert torch.equal(results[-1][3] != 0, y > 0)
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_every_batchnorm_scale_relu_of_sse_densenet_is_fused() -> None:
    """Each ReLU of SSE-DenseNet-121 follows a BatchNorm + Scale pair in place; each runs inside
    its BatchNorm node, but the first, which runs with the MAX pooling after it. (The step's values are checked on the small net above: at the batch of 2
    these tests can afford, DenseNet's 1x1 BatchNorms over two values amplify any change in the
    order of sums past a useful tolerance.)"""
    net, _ = sse_pair("densenet", "_bn_scale_relu")
    relus = [k for k, layer in enumerate(net.modules)
             if layer.type == "ReLU" and k not in net._relu_pool]
    assert len(relus) > 100 and sorted(net._bn_scale_relu) == relus
    assert all(net._bn_scale[i] == k - 1 for k, i in net._bn_scale_relu.items())
