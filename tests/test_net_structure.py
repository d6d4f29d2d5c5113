"""Net construction semantics: include/exclude rules, in-place tops, implicit splits, shared
parameters, lr/decay multipliers, legacy constructor and inputs, weights by layer name."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import caffe
from caffe.model_io import parse_net_text

RULES = """
name: "rules"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "train_only" type: "ReLU" bottom: "data" top: "t" include { phase: TRAIN } }
layer { name: "test_only" type: "ReLU" bottom: "data" top: "u" include { phase: TEST } }
layer { name: "staged" type: "ReLU" bottom: "data" top: "s" include { stage: "deploy" } }
layer { name: "not_staged" type: "ReLU" bottom: "data" top: "n" exclude { stage: "deploy" } }
layer { name: "leveled" type: "ReLU" bottom: "data" top: "l" include { min_level: 2 } }
layer { name: "notstage" type: "ReLU" bottom: "data" top: "ns" include { not_stage: "deploy" } }
"""


def _net(text, phase=caffe.TEST, **kw):
    return caffe.Net(net_param=parse_net_text(text), phase=phase, **kw)


def test_include_exclude_by_phase_stage_and_level():
    names = lambda net: set(net.layer_dict)  # noqa: E731
    assert names(_net(RULES, caffe.TRAIN)) == {"data", "train_only", "not_staged", "notstage"}
    assert names(_net(RULES, caffe.TEST)) == {"data", "test_only", "not_staged", "notstage"}
    assert names(_net(RULES, caffe.TEST, stages=["deploy"])) == {"data", "test_only", "staged"}
    assert "leveled" in names(_net(RULES, caffe.TEST, level=2))


def test_old_constructor_form_with_weights_then_phase(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text(RULES)
    net = caffe.Net(str(path), caffe.TEST)
    model = str(tmp_path / "w.caffemodel")
    net.save(model)
    old = caffe.Net(str(path), model, caffe.TEST)
    assert old.phase == caffe.TEST and old.inputs == ["data"]


CHAIN = """
name: "chain"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 5 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 }
                      bias_filler { type: "constant" value: 0.1 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "ip_a" type: "InnerProduct" bottom: "conv" top: "a" param { name: "shared_w" }
  inner_product_param { num_output: 3 bias_term: false weight_filler { type: "xavier" } } }
layer { name: "ip_b" type: "InnerProduct" bottom: "conv" top: "b" param { name: "shared_w" }
  inner_product_param { num_output: 3 bias_term: false weight_filler { type: "xavier" } } }
layer { name: "ip_c" type: "InnerProduct" bottom: "conv" top: "c" param { }
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "sum" }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 2 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "sum" bottom: "label" top: "loss" }
"""


def test_shared_param_is_one_parameter_and_gets_both_gradients():
    net = _net(CHAIN, caffe.TRAIN)
    assert net.layer_dict["ip_a"].blobs[0] is net.layer_dict["ip_b"].blobs[0]
    net.blobs["data"].data[...] = np.random.default_rng(0).normal(size=(2, 3, 5, 5))
    net.blobs["label"].data[...] = [0, 2]
    net.forward()
    net.backward()
    feat = torch.from_numpy(net.blobs["conv"].data.reshape(2, -1))
    probs = torch.softmax(torch.from_numpy(net.blobs["sum"].data), 1)
    onehot = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    dsum = (probs - onehot) / 2
    expected = 2 * dsum.t() @ feat
    np.testing.assert_allclose(net.params["ip_a"][0].diff, expected.numpy(), rtol=1e-4, atol=1e-6)


def test_lr_and_decay_multipliers_follow_caffe_defaults():
    net = _net(CHAIN, caffe.TRAIN)
    infos = {(net.param_info(p).layer, net.param_info(p).index): net.param_info(p)
             for p in net.learnable_params}
    assert (infos[("conv", 0)].lr_mult, infos[("conv", 1)].lr_mult) == (1, 2)
    assert infos[("conv", 1)].decay_mult == 0
    assert [infos[("bn", i)].lr_mult for i in range(3)] == [0, 0, 0]
    assert (infos[("ip_c", 1)].lr_mult, infos[("ip_c", 1)].decay_mult) == (1, 1)
    assert ("ip_b", 0) not in infos


def test_in_place_chain_keeps_final_value_and_diff_of_the_first_producer():
    net = _net(CHAIN, caffe.TRAIN)
    net.blobs["data"].data[...] = np.random.default_rng(1).normal(size=(2, 3, 5, 5))
    net.forward()
    assert (net.blobs["conv"].data >= 0).all()
    net.backward()
    relu_mask = net.blobs["conv"].data > 0
    assert np.abs(net.blobs["conv"].diff).sum() > 0
    assert net.blobs["conv"].diff.shape == (2, 4, 3, 3)
    assert relu_mask.any()


def test_blob_feeding_several_layers_accumulates_gradients():
    text = """
    name: "split" force_backward: true
    layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 3 } } }
    layer { name: "p1" type: "Power" bottom: "x" top: "y1" power_param { scale: 2 } }
    layer { name: "p2" type: "Power" bottom: "x" top: "y2" power_param { scale: 5 } }
    """
    net = _net(text, caffe.TEST)
    net.blobs["x"].data[...] = [1, 2, 3]
    net.forward()
    net.blobs["y1"].diff[...] = 1
    net.blobs["y2"].diff[...] = 1
    net.backward()
    np.testing.assert_allclose(net.blobs["x"].diff, [7, 7, 7])


def test_legacy_input_fields_become_inputs():
    text = 'name: "legacy" input: "data" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n' \
           'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }'
    net = _net(text)
    assert net.inputs == ["data"] and net.blobs["data"].shape == (1, 2, 4, 4)


def test_weights_load_by_layer_name_and_absent_layers_keep_their_fillers(tmp_path):
    caffe.set_random_seed(3)
    src = _net(CHAIN, caffe.TEST)
    model = str(tmp_path / "w.caffemodel")
    src.save(model)
    renamed = CHAIN.replace('name: "ip_c"', 'name: "ip_other"')
    caffe.set_random_seed(4)
    dst = _net(renamed, caffe.TEST)
    before = dst.params["ip_other"][0].data.copy()
    dst.copy_from(model)
    np.testing.assert_array_equal(dst.params["conv"][0].data, src.params["conv"][0].data)
    np.testing.assert_array_equal(dst.params["bn"][2].data, src.params["bn"][2].data)
    np.testing.assert_array_equal(dst.params["ip_other"][0].data, before)


def test_fillers_are_reproducible_with_a_seed():
    caffe.set_random_seed(11)
    a = _net(CHAIN).params["conv"][0].data.copy()
    caffe.set_random_seed(11)
    b = _net(CHAIN).params["conv"][0].data.copy()
    np.testing.assert_array_equal(a, b)


def test_save_then_load_round_trips_every_blob(tmp_path):
    net = _net(CHAIN, caffe.TRAIN)
    net.blobs["data"].data[...] = 1.0
    net.forward()
    model = str(tmp_path / "w.caffemodel")
    net.save(model)
    again = _net(CHAIN, caffe.TEST, weights=model)
    for name, blobs in net.params.items():
        for a, b in zip(blobs, again.params[name]):
            np.testing.assert_array_equal(a.data, b.data)


def test_forward_with_keyword_inputs_and_reshape():
    net = _net(CHAIN, caffe.TEST)
    x = np.random.default_rng(2).normal(size=(4, 3, 5, 5)).astype(np.float32)
    net.blobs["data"].reshape(4, 3, 5, 5)
    net.blobs["label"].reshape(4)
    net.reshape()
    assert net.blobs["sum"].shape == (4, 3)
    out = net.forward(data=x, label=np.zeros(4))
    assert out["loss"].shape == ()
    assert np.isfinite(out["loss"])


def test_layer_type_list_names_every_required_type():
    required = {"Input", "Convolution", "Deconvolution", "InnerProduct", "Pooling", "BatchNorm",
                "Scale", "Bias", "ReLU", "PReLU", "Sigmoid", "TanH", "Power", "Eltwise", "Concat",
                "Slice", "Split", "Flatten", "Reshape", "Dropout", "Softmax", "SoftmaxWithLoss",
                "Accuracy", "Silence", "ArgMax", "Python"}
    assert required <= set(caffe.layer_type_list())


def test_blob_views_are_writable_and_feed_the_net():
    text = """
    name: "feed"
    layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 2 } } }
    layer { name: "p" type: "Power" bottom: "x" top: "y" power_param { shift: 1 } }
    """
    net = _net(text)
    net.blobs["x"].data[...] = [3, 4]
    assert list(net.forward()["y"]) == [4, 5]
    with pytest.raises(caffe.NetError):
        net.forward(start="nope")
