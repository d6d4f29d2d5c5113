"""pycaffe's backward is Caffe's: layer by layer from the diffs stored in the blobs, from ``start``
down to ``end``, repeatable, after a partial ``forward``; the Split that Caffe inserts for a blob
feeding several layers sums their diffs; layers that contribute to no loss do not run unless
``force_backward``. Checked against real pycaffe (golden ``pycaffe_api``) and against autograd."""
from __future__ import annotations

import numpy as np
import torch

import caffe
from caffe.model_io import parse_net_text
from golden_utils import param_key

GOLDEN_CASES = ("pycaffe_api",)

NET = """name: "t" force_backward: true
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 3 dim: 2 dim: 5 dim: 5 } shape { dim: 3 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 }
    bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "side" type: "InnerProduct" bottom: "conv" top: "side"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "sum" type: "Eltwise" bottom: "ip" bottom: "side" top: "sum" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "sum" bottom: "label" top: "loss"
  loss_weight: 2 }
"""


def build(text: str = NET, phase: int = caffe.TRAIN) -> caffe.Net:
    caffe.set_random_seed(3)
    net = caffe.Net(net_param=parse_net_text(text), phase=phase)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.normal(0, 1, net.blobs["data"].data.shape)
    net.blobs["label"].data[...] = [0, 2, 1]
    return net


def reference(net: caffe.Net):
    """The same net in plain torch: loss, d loss / d data, d loss / d params (weight 2)."""
    x = torch.tensor(net.blobs["data"].data, requires_grad=True)
    ps = {k: [torch.tensor(b.data, requires_grad=True) for b in v] for k, v in net.params.items()}
    conv = torch.relu(torch.nn.functional.conv2d(x, *ps["conv"]))
    s = conv.reshape(3, -1) @ ps["ip"][0].t() + ps["ip"][1] + conv.reshape(3, -1) @ ps["side"][0].t() \
        + ps["side"][1]
    loss = 2 * torch.nn.functional.cross_entropy(s, torch.tensor([0, 2, 1]))
    loss.backward()
    return x.grad.numpy(), {k: [p.grad.numpy() for p in v] for k, v in ps.items()}


def test_full_backward_equals_autograd_including_the_split_of_a_shared_blob() -> None:
    net = build()
    net.forward()
    diffs = net.backward()
    gx, gp = reference(net)
    assert set(diffs) == {"data", "label"}
    np.testing.assert_allclose(diffs["data"], gx, rtol=1e-4, atol=1e-6)
    for name, grads in gp.items():
        for blob, g in zip(net.params[name], grads):
            np.testing.assert_allclose(blob.diff, g, rtol=1e-4, atol=1e-6, err_msg=name)
    assert net.blobs["loss"].diff.ravel()[0] == 2.0


def test_repeated_backward_gives_the_same_blob_diffs_and_accumulates_param_diffs() -> None:
    net = build()
    net.forward()
    net.backward()
    first = net.blobs["data"].diff.copy()
    w1 = net.params["conv"][0].diff.copy()
    net.backward()
    np.testing.assert_array_equal(net.blobs["data"].diff, first)
    np.testing.assert_allclose(net.params["conv"][0].diff, 2 * w1, rtol=1e-6)
    net.clear_param_diffs()
    assert not net.params["conv"][0].diff.any()


CHAIN = NET.split('layer { name: "side"')[0] + (
    'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n')


def test_backward_start_end_runs_only_that_layer_from_the_stored_top_diff() -> None:
    net = build(CHAIN)
    net.forward()
    g = np.random.default_rng(1).uniform(size=net.blobs["ip"].diff.shape).astype(np.float32)
    net.blobs["ip"].diff[...] = g
    before = net.params["conv"][0].diff.copy()
    out = net.backward(start="ip", end="ip")
    assert set(out) == {"conv"}
    expected = (g @ net.params["ip"][0].data).reshape(net.blobs["conv"].data.shape)
    np.testing.assert_allclose(net.blobs["conv"].diff, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(net.params["conv"][0].diff, before)


def test_a_consumer_of_a_shared_blob_writes_its_own_split_diff_until_the_split_runs() -> None:
    """As Caffe's Split: 'ip' alone leaves conv's diff; the Split after 'relu' sums both branches."""
    net = build()
    net.forward()
    net.backward()
    conv_diff = net.blobs["conv"].diff.copy()
    net.blobs["ip"].diff[...] = 0
    net.backward(start="ip", end="ip")
    np.testing.assert_array_equal(net.blobs["conv"].diff, conv_diff)
    net.backward(start="ip", end="relu")
    side = net.blobs["side"].diff @ net.params["side"][0].data
    mask = net.blobs["conv"].data.reshape(3, -1) > 0
    np.testing.assert_allclose(net.blobs["conv"].diff.reshape(3, -1), side * mask, rtol=1e-4,
                               atol=1e-6)


def test_backward_from_a_middle_layer_after_a_partial_forward_reaches_the_data() -> None:
    """The DeepDream / saliency idiom: forward(end=...), set that top's diff, backward(start=...)."""
    net = build()
    net.forward(end="ip")
    assert not net.blobs["loss"].data.any()
    g = np.ones(net.blobs["ip"].diff.shape, np.float32)
    net.blobs["ip"].diff[...] = g
    net.blobs["side"].diff[...] = 0
    out = net.backward(start="ip")
    x = torch.tensor(net.blobs["data"].data, requires_grad=True)
    w, b = (torch.tensor(p.data) for p in net.params["conv"])
    y = torch.relu(torch.nn.functional.conv2d(x, w, b)).reshape(3, -1) @ \
        torch.tensor(net.params["ip"][0].data).t()
    y.sum().backward()
    np.testing.assert_allclose(out["data"], x.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert out["data"].any()


def test_forward_start_end_reads_the_stored_bottoms() -> None:
    net = build()
    conv = np.random.default_rng(2).uniform(size=net.blobs["conv"].data.shape).astype(np.float32)
    net.blobs["conv"].data[...] = conv
    out = net.forward(start="ip", end="ip")
    assert set(out) == {"ip"}
    expected = conv.reshape(3, -1) @ net.params["ip"][0].data.T + net.params["ip"][1].data
    np.testing.assert_allclose(net.blobs["ip"].data, expected, rtol=1e-4, atol=1e-5)


def test_without_force_backward_the_input_diff_is_not_computed() -> None:
    net = build(NET.replace("force_backward: true", ""))
    net.forward()
    net.backward()
    assert not net.blobs["data"].diff.any()
    assert net.params["conv"][0].diff.any()


def test_a_net_without_loss_runs_no_backward_unless_forced() -> None:
    text = NET.split('layer { name: "loss"')[0].replace("force_backward: true", "")
    net = build(text)
    net.forward()
    net.blobs["sum"].diff[...] = 1
    net.backward()
    assert not net.params["ip"][0].diff.any()
    forced = build(NET.split('layer { name: "loss"')[0])
    forced.forward()
    forced.blobs["sum"].diff[...] = 1
    forced.backward()
    assert forced.params["ip"][0].diff.any() and forced.blobs["data"].diff.any()


def test_backward_after_the_solver_path_rebuilds_the_layers_from_the_stored_blobs() -> None:
    net = build()
    net.forward_backward()
    net.clear_param_diffs()
    net.backward()
    gx, gp = reference(net)
    np.testing.assert_allclose(net.blobs["data"].diff, gx, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(net.params["ip"][0].diff, gp["ip"][0], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ golden: real pycaffe
def golden_net(golden, prototxt: str = "net.prototxt") -> caffe.Net:
    case = golden / "pycaffe_api"
    net = caffe.Net(str(case / prototxt), str(case / "weights.caffemodel"), caffe.TEST)
    net.blobs["data"].data[...] = np.load(case / "input_data.npy")
    return net


def assert_matches(net: caffe.Net, path, skip: tuple[str, ...] = ()) -> None:
    expected = np.load(path)
    checked = 0
    for key in expected.files:
        if key in skip:
            continue
        if ":" in key:
            layer, i = param_key(key)
            actual = net.params[layer][i].diff
        elif key in net.blobs:
            actual = net.blobs[key].diff
        else:
            continue  # a Split blob, which this engine does not expose
        np.testing.assert_allclose(actual, expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
        checked += 1
    assert checked


def test_golden_deepdream_backward_from_a_middle_layer(golden) -> None:
    net = golden_net(golden)
    assert set(net.forward(end="fc")) == {"fc"}
    net.blobs["fc"].diff[...] = np.load(golden / "pycaffe_api" / "a_top_diff.npy")
    assert set(net.backward(start="fc")) == {"data"}
    assert_matches(net, golden / "pycaffe_api" / "a_blob_diff.npz")
    assert_matches(net, golden / "pycaffe_api" / "a_param_diff.npz")


def test_golden_no_force_backward_runs_nothing_without_a_loss(golden) -> None:
    net = golden_net(golden, "net_no_force_backward.prototxt")
    net.forward(end="fc")
    net.blobs["fc"].diff[...] = np.load(golden / "pycaffe_api" / "a_top_diff.npy")
    net.backward(start="fc")
    assert_matches(net, golden / "pycaffe_api" / "a_no_force_backward_blob_diff.npz")
    assert_matches(net, golden / "pycaffe_api" / "a_no_force_backward_param_diff.npz")


def test_golden_backward_twice_and_backward_to_an_end_layer(golden) -> None:
    case = golden / "pycaffe_api"
    net = golden_net(golden)
    net.forward()
    top = np.load(case / "b_output_diffs.npz")
    for k in (1, 2):
        net.backward(**{name: top[name] for name in top.files})
        assert_matches(net, case / f"b_after_backward{k}_blob_diff.npz")
        # Caffe's in-place Scale overwrites its saved bottom in backward, so its scale diff is not
        # 2x after the second call; this engine keeps the bottom (not reproduced).
        assert_matches(net, case / f"b_after_backward{k}_param_diff.npz",
                       skip=("sc1:0",) if k == 2 else ())
    net = golden_net(golden)
    net.forward()
    for name in top.files:
        net.blobs[name].diff[...] = top[name]
    assert set(net.backward(end="pool1")) == {"conv1"}
    assert_matches(net, case / "c_blob_diff.npz")
    assert_matches(net, case / "c_param_diff.npz")


def test_a_net_with_nothing_to_backpropagate_forwards_on_the_fast_path() -> None:
    """A deploy net records no graphs: pycaffe's forward runs BatchNorm and its Scale fused."""
    from test_inference_equivalence import NET as DEPLOY
    net = caffe.Net(net_param=parse_net_text(DEPLOY), phase=caffe.TEST)
    assert not any(net._plan.layer_need)
    calls = []
    original = net._forward_bn_scale
    net._forward_bn_scale = lambda i, j, relu=None: (calls.append(i), original(i, j, relu))
    net.forward()
    assert calls and not net._records
