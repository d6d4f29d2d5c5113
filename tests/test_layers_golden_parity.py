"""Every layer case recorded from real Caffe (forward in TEST, backward in TRAIN, losses and
accuracy) is reproduced by the engine within the golden README's tolerances."""
from __future__ import annotations

import json

import numpy as np
import pytest

import caffe
from golden_utils import param_key, rel_err

GOLDEN_CASES = ("layers_forward", "layers_backward", "loss_and_accuracy")


def _fed_net(case, phase):
    net = caffe.Net(str(case / "net.prototxt"), phase, weights=str(case / "weights.caffemodel"))
    net.blobs["data"].data[...] = np.load(case / "input_data.npy")
    net.blobs["data8"].data[...] = np.load(case / "input_data8.npy")
    return net


def test_forward_matches_caffe_for_every_layer_case(golden):
    case = golden / "layers_forward"
    net = _fed_net(case, caffe.TEST)
    net.forward()
    expected = np.load(case / "expected.npz")
    assert len(expected.files) > 40
    for name in expected.files:
        assert rel_err(net.blobs[name].data, expected[name]) <= 1e-5, name


def test_blob_shapes_match_caffe(golden):
    case = golden / "layers_forward"
    shapes = json.loads((case / "shapes.json").read_text())
    net = _fed_net(case, caffe.TEST)
    for name, shape in shapes.items():
        assert list(net.blobs[name].shape) == list(shape), name


def test_pooling_uses_caffe_ceil_rounding(golden):
    net = _fed_net(golden / "layers_forward", caffe.TEST)
    assert net.blobs["pool_max_k2s2"].shape[2:] == (4, 4)
    assert net.blobs["pool8_ave_k3s2p1"].shape[2:] == (5, 5)
    assert net.blobs["pool_ave_k2s2p1"].shape[2:] == (4, 4)


def test_backward_matches_caffe_blob_and_param_gradients(golden):
    case = golden / "layers_backward"
    net = _fed_net(case, caffe.TRAIN)
    net.forward()
    expected_fwd = np.load(case / "expected_forward.npz")
    for name in expected_fwd.files:
        assert rel_err(net.blobs[name].data, expected_fwd[name]) <= 1e-5, name
    diffs = np.load(case / "output_diffs.npz")
    assert sorted(diffs.files) == sorted(json.loads((case / "outputs.json").read_text()))
    for name in diffs.files:
        net.blobs[name].diff[...] = diffs[name]
    net.backward()
    blob_diff = np.load(case / "expected_blob_diff.npz")
    for name in blob_diff.files:
        np.testing.assert_allclose(net.blobs[name].diff, blob_diff[name], rtol=1e-4, atol=1e-5,
                                   err_msg=name)
    param_diff = np.load(case / "expected_param_diff.npz")
    for key in param_diff.files:
        layer, i = param_key(key)
        np.testing.assert_allclose(net.params[layer][i].diff, param_diff[key], rtol=1e-4, atol=1e-5,
                                   err_msg=key)


def test_train_forward_updates_batchnorm_moving_averages_like_caffe(golden):
    case = golden / "layers_backward"
    net = _fed_net(case, caffe.TRAIN)
    net.forward()
    after = np.load(case / "params_after_forward.npz")
    for key in after.files:
        layer, i = param_key(key)
        np.testing.assert_allclose(net.params[layer][i].data, after[key], rtol=1e-5, atol=1e-6,
                                   err_msg=key)


def _loss_case(golden):
    case = golden / "loss_and_accuracy"
    return case, json.loads((case / "summary.json").read_text())


def test_softmax_losses_and_gradients_match_caffe(golden):
    case, summary = _loss_case(golden)
    net = caffe.Net(str(case / "loss_net.prototxt"), caffe.TRAIN)
    expected = np.load(case / "expected_loss_net.npz")
    for name in net.inputs:
        net.blobs[name].data[...] = expected[name]
    net.forward()
    for name, weight in summary["loss_weights"].items():
        assert float(net.blobs[name].data) == pytest.approx(summary[name], rel=1e-6), name
        assert net.blob_loss_weights[name] == weight
    assert float(net.last_loss) == pytest.approx(summary["total_weighted"], rel=1e-6)
    net.backward()
    grads = np.load(case / "expected_loss_net_input_diff.npz")
    for name in grads.files:
        np.testing.assert_allclose(net.blobs[name].diff, grads[name], atol=1e-6, err_msg=name)


def test_accuracy_counts_ties_against_the_sample_like_caffe(golden):
    case, summary = _loss_case(golden)
    net = caffe.Net(str(case / "acc_net.prototxt"), caffe.TEST)
    expected = np.load(case / "expected_acc_net.npz")
    for name in net.inputs:
        net.blobs[name].data[...] = expected[name]
    net.forward()
    for name in expected.files:
        np.testing.assert_array_equal(net.blobs[name].data, expected[name], err_msg=name)
