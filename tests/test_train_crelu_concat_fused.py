"""The solver's step (``Net.run``) computes HoloNet's CReLU pair, a Power ``shift - x`` and the
Concat of its bottom and top, as one autograd node (caffe.functional.concat_shifted_negation)
whose backward is one subtraction. Which pairs take it, and that the step gives exactly what the
plain layers give; CAFFE_FUSE_CRELU=0 turns it off."""
from __future__ import annotations

import pytest
import torch

import caffe
from caffe.functional import concat_shifted_negation
from train_step_helpers import assert_same_step, sse_pair, train_net

NET = """
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 3 dim: 12 dim: 12 } shape { dim: 4 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "neg1" type: "Power" bottom: "conv1" top: "neg1" power_param { scale: -1 shift: 1 } }
layer { name: "cat1" type: "Concat" bottom: "conv1" bottom: "neg1" top: "cat1" }
layer { name: "scale1" type: "Scale" bottom: "cat1" top: "cat1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "cat1" top: "cat1" }
layer { name: "neg2" type: "Power" bottom: "cat1" top: "neg2" power_param { scale: -1 shift: 2 } }
layer { name: "cat2" type: "Concat" bottom: "cat1" bottom: "neg2" top: "cat2" }
layer { name: "relu2" type: "ReLU" bottom: "cat2" top: "cat2" }
layer { name: "neg3" type: "Power" bottom: "cat2" top: "neg3" power_param { scale: -1 shift: 1 } }
layer { name: "cat3" type: "Concat" bottom: "neg3" bottom: "cat2" top: "cat3" }
layer { name: "neg4" type: "Power" bottom: "cat3" top: "neg4" power_param { scale: -1 } }
layer { name: "cat4" type: "Concat" bottom: "cat3" bottom: "neg4" top: "cat4" }
layer { name: "neg5" type: "Power" bottom: "cat4" top: "neg5" power_param { scale: -1 shift: 1 } }
layer { name: "cat5" type: "Concat" bottom: "cat4" bottom: "neg5" top: "cat5" }
layer { name: "ip_neg" type: "InnerProduct" bottom: "neg5" top: "ip_neg"
  inner_product_param { num_output: 5 } }
layer { name: "ip" type: "InnerProduct" bottom: "cat5" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "sum" type: "Eltwise" bottom: "ip" bottom: "ip_neg" top: "sum" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "sum" bottom: "label" top: "loss" }
"""


def build(fused: bool) -> caffe.Net:
    return train_net(NET, off=None if fused else "_negated_concat")


def test_the_pairs_fused() -> None:
    net = build(True)
    found = {net._layer_names[i]: net._layer_names[j] for i, j in net._negated_concat.items()}
    # cat3 takes the negation first, neg4 has no shift (-x, not 0 - x), neg5's top has another
    # reader
    assert found == {"neg1": "cat1", "neg2": "cat2"}


def test_the_switch_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAFFE_FUSE_CRELU", "0")
    assert build(True)._negated_concat == {}


def test_the_step_equals_the_plain_layers() -> None:
    assert_same_step(build(True), build(False))


def test_sse_holonet_train_step_equals_the_plain_layers() -> None:
    fused, plain = sse_pair("holonet", "_negated_concat")
    assert len(fused._negated_concat) >= 5
    assert_same_step(fused, plain)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("axis", [1, 2])
def test_values_and_gradient_equal_the_plain_graph(memory_format, axis: int) -> None:
    x = torch.randn(3, 5, 7, 9).contiguous(memory_format=memory_format)
    leaf = x.clone().requires_grad_()
    negated = torch.rsub(leaf, 1.5)
    expected = torch.cat((leaf, negated), dim=axis)
    g = torch.randn_like(expected)
    expected.backward(g)
    a = x.clone().requires_grad_()
    top, negated_top = concat_shifted_negation(a, 1.5, axis)
    top.backward(g)
    assert torch.equal(top, expected) and torch.equal(negated_top, negated)
    assert torch.equal(a.grad, leaf.grad)
    if axis == 1:
        assert top.is_contiguous(memory_format=memory_format)
