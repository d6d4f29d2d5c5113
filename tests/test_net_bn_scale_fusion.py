"""The Net runs a BatchNorm and the in-place Scale right after it as one batch_norm call (a
speed path); results must equal running them one by one: blob data, loss, parameter
gradients and the BatchNorm moving averages, in TRAIN and TEST."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import caffe
from caffe.model_io import parse_net_text
from inference_helpers import randomize_weights
from test_inference_equivalence import NET

TRAIN_NET = NET.replace(
    "input_param { shape { dim: 2 dim: 3 dim: 20 dim: 20 } } }",
    "input_param { shape { dim: 4 dim: 3 dim: 20 dim: 20 } shape { dim: 4 } } }",
).replace('top: "data" ', 'top: "data" top: "label" ', 1) + (
    'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }\n')


def build(phase: int, fused: bool) -> caffe.Net:
    caffe.set_random_seed(4)
    net = caffe.Net(net_param=parse_net_text(TRAIN_NET), phase=phase)
    randomize_weights(net, 4)
    if not fused:
        net._bn_scale = {}
    return net


def feed(net: caffe.Net) -> None:
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.normal(0, 1, (4, 3, 20, 20))
    net.blobs["label"].data[...] = [0, 1, 2, 3]


def test_the_in_place_batchnorm_scale_pairs_are_found() -> None:
    net = build(caffe.TRAIN, fused=True)
    names = {(net._layer_names[i], net._layer_names[j]) for i, j in net._bn_scale.items()}
    assert names == {("bn1", "scale1"), ("bn3", "scale3"), ("bn_inplace", "scale_inplace"),
                     ("bn_ip", "scale_ip")}


@pytest.mark.parametrize("phase", [caffe.TRAIN, caffe.TEST])
def test_fused_batchnorm_scale_equals_separate_layers(phase: int) -> None:
    fused, separate = build(phase, True), build(phase, False)
    losses = []
    for net in (fused, separate):
        feed(net)
        if phase == caffe.TRAIN:
            losses.append(net.forward_backward())
        else:
            losses.append(float(net.run()))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for name in separate.blobs:
        np.testing.assert_allclose(fused.blobs[name].data, separate.blobs[name].data,
                                   rtol=1e-5, atol=1e-5, err_msg=name)
    for a, b in zip(fused.learnable_params, separate.learnable_params):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)
        if a.grad is not None or b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


def test_a_run_that_ends_at_the_batchnorm_does_not_apply_the_scale() -> None:
    fused, separate = build(caffe.TEST, True), build(caffe.TEST, False)
    for net in (fused, separate):
        feed(net)
    a = fused.forward(end="bn1")["conv1"]
    b = separate.forward(end="bn1")["conv1"]
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_fusion_is_used_by_the_solver_path_and_not_by_pycaffe_forward() -> None:
    net = build(caffe.TRAIN, fused=True)
    calls = []
    original = net._forward_bn_scale
    net._forward_bn_scale = lambda i, j, relu=None: (calls.append(i), original(i, j, relu))
    feed(net)
    net.forward()
    net.backward()
    assert calls == []
    net.forward_backward()
    assert len(calls) == 4


@pytest.mark.parametrize("fused", [True, False])
def test_train_batchnorm_with_one_value_per_channel_gives_zero_like_caffe(fused: bool) -> None:
    text = ('layer { name: "data" type: "Input" top: "data" '
            'input_param { shape { dim: 1 dim: 3 dim: 1 dim: 1 } } }\n'
            'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" }\n'
            'layer { name: "scale" type: "Scale" bottom: "data" top: "data" '
            'scale_param { bias_term: true } }\n')
    net = caffe.Net(net_param=parse_net_text(text), phase=caffe.TRAIN)
    if not fused:
        net._bn_scale = {}
    with torch.no_grad():
        net.params["scale"][1].data[...] = [0.5, -1.0, 2.0]
    x = np.array([3.0, -2.0, 7.0], np.float32).reshape(1, 3, 1, 1)
    net.blobs["data"].data[...] = x
    net.run()
    out = net.blobs["data"].data
    np.testing.assert_allclose(out.ravel(), [0.5, -1.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(net.params["bn"][0].data, x.ravel())
    np.testing.assert_allclose(net.params["bn"][1].data, 0.0)
    np.testing.assert_allclose(net.params["bn"][2].data, 1.0)
