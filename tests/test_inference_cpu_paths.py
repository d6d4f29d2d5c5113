"""The inference mode's CPU convolution routes (issue 19: 1x1 convolutions as one matrix product on
the channels-last view, other 2-D convolutions in oneDNN with weights packed once per input shape
and the ReLU fused, small ones through F.conv2d with channels-last weights) give what the plain
mode and the inference mode without them give."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import caffe
from caffe import inference
from caffe.inference import optimize
from caffe.layers.conv import im2col_conv2d
from caffe.model_io import parse_net_text
from golden_utils import rel_err
from inference_helpers import MODELS, random_sse_test_net, randomize_weights
from test_inference_equivalence import NET, conv, dense_block, layer

# Every convolution shape the routes distinguish: 1x1 with stride 1 and 2, with and without bias,
# followed by ReLU, leaky ReLU or nothing; 3x3 with pad, stride, dilation and groups; a 1x1 on a
# channel slice's consumer (Concat); a full-map convolution (kernel = input, one matrix product);
# a convolution whose output feeds two layers (no ReLU fused).
ROUTES = (
    'name: "routes"\n'
    'layer { name: "data" type: "Input" top: "data" '
    'input_param { shape { dim: 2 dim: 4 dim: 13 dim: 13 } } }\n'
    + conv("p1", "data", "p1", 8, 1)
    + layer("relu_p1", "ReLU", ["p1"], ["p1"])
    + conv("p2", "p1", "p2", 6, 1, "stride: 2 bias_term: false")
    + conv("c1", "p1", "c1", 8, 3, "pad: 1")
    + layer("relu_c1", "ReLU", ["c1"], ["c1"])
    + conv("c2", "c1", "c2", 8, 3, "pad: 2 dilation: 2 group: 4")
    + layer("lrelu_c2", "ReLU", ["c2"], ["c2"], "relu_param { negative_slope: 0.2 }")
    + conv("c3", "c2", "c3", 6, 3, "stride: 2 pad: 1 bias_term: false")
    + layer("cat", "Concat", ["c3", "p2"], ["cat"])
    + conv("p3", "cat", "p3", 5, 1)
    + layer("relu_p3", "ReLU", ["p3"], ["p3"])
    + conv("full", "p3", "full", 7, 7)
    + conv("c4", "c1", "c4", 4, 3, "stride: 3")
    + layer("pool4", "Pooling", ["c4"], ["pool4"], "pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
    + layer("relu_c4", "ReLU", ["c4"], ["c4r"])
)
ROUTE_BLOBS = ["p1", "p2", "c1", "c2", "c3", "cat", "p3", "full", "pool4", "c4r"]


def build(text: str, seed: int = 0) -> caffe.Net:
    caffe.set_random_seed(seed)
    net = caffe.Net(net_param=parse_net_text(text), phase=caffe.TEST)
    randomize_weights(net, seed)
    return net


def without_cpu_paths(net: caffe.Net, monkeypatch) -> inference.InferenceNet:
    with monkeypatch.context() as m:
        m.setenv("CAFFE_INFERENCE_CPU_PATHS", "0")
        return optimize(net)


def test_packed_convolution_is_available_in_this_build() -> None:
    assert inference.packed_conv_available()


@pytest.fixture(params=["packed", "small"])
def conv_route(request, monkeypatch) -> str:
    """Every convolution larger than 1x1 packed for oneDNN (no lower bound on its work), or none
    (every one below the bound): ROUTES' maps are too small to take both routes otherwise."""
    monkeypatch.setattr(inference, "PACKED_MIN_MACS", 0 if request.param == "packed" else 1 << 40)
    return request.param


@pytest.mark.parametrize("batch", [1, 3])
def test_routes_equal_plain_mode_and_the_plan_without_them(batch: int, conv_route: str,
                                                           monkeypatch) -> None:
    net = build(ROUTES)
    x = np.random.default_rng(batch).normal(0, 2, (batch, 4, 13, 13)).astype(np.float32)
    fast = optimize(net)
    other = without_cpu_paths(net, monkeypatch)
    got = fast.forward(blobs=ROUTE_BLOBS, data=x)
    reference = other.forward(blobs=ROUTE_BLOBS, data=x)
    net.blobs["data"].reshape(*x.shape)
    expected = {k: v.copy() for k, v in net.forward(blobs=ROUTE_BLOBS, data=x).items()}
    for name in ROUTE_BLOBS:
        assert got[name].shape == expected[name].shape, name
        assert rel_err(got[name], expected[name]) < 1e-5, name
        assert rel_err(got[name], reference[name]) < 1e-5, name


def test_one_plan_serves_several_batch_sizes(conv_route: str) -> None:
    """The packed weights are made per input shape: a plan called with batch 1, 5, then 1 again
    gives each time what the plain mode gives."""
    net = build(ROUTES)
    fast = optimize(net)
    for n in (1, 5, 1):
        x = np.random.default_rng(n).normal(0, 1, (n, 4, 13, 13)).astype(np.float32)
        net.blobs["data"].reshape(*x.shape)
        expected = net.forward(blobs=["full"], data=x)["full"].copy()
        assert rel_err(fast.forward(blobs=["full"], data=x)["full"], expected) < 1e-5



def test_packed_weights_are_kept_for_the_last_shapes_only(monkeypatch) -> None:
    """A plan fed batches of many sizes keeps packed weights for PACKED_SHAPES input shapes per
    convolution, not one more copy per size seen (a long video's chunks), and still gives the
    plain mode's outputs for a size whose packing was dropped."""
    made: list = []
    pack = inference._pack_conv_weight

    def counted(*args):
        made.append(weakref.ref(packed := pack(*args)))
        return packed
    monkeypatch.setattr(inference, "_pack_conv_weight", counted)
    monkeypatch.setattr(inference, "PACKED_MIN_MACS", 0)
    net = build(ROUTES)
    fast = optimize(net)
    sizes = [1, 2, 3, 4, 5, 6, 7, 8, 1]
    for n in sizes:
        x = np.random.default_rng(n).normal(0, 1, (n, 4, 13, 13)).astype(np.float32)
        got = fast.forward(blobs=["full"], data=x)["full"]
    net.blobs["data"].reshape(*x.shape)
    assert rel_err(got, net.forward(blobs=["full"], data=x)["full"]) < 1e-5
    gc.collect()
    packed_convs = len(made) // (len(sizes))  # size 1 was dropped, so every size packed once
    assert packed_convs >= 1 and len(made) == packed_convs * len(sizes)
    assert sum(r() is not None for r in made) == packed_convs * inference.PACKED_SHAPES


# Two 3x3 convolutions on a 16x16 map: c16 (16 -> 32 channels, 1.2M multiply-adds per image, with a
# ReLU) and c64 (16 -> 128, 4.7M).
SIZES = (
    'name: "sizes"\n'
    'layer { name: "data" type: "Input" top: "data" '
    'input_param { shape { dim: 1 dim: 16 dim: 16 dim: 16 } } }\n'
    + conv("c16", "data", "c16", 32, 3, "pad: 1")
    + layer("relu16", "ReLU", ["c16"], ["c16"])
    + conv("c64", "data", "c64", 128, 3, "pad: 1")
)


@pytest.mark.parametrize("batch,packed", [(1, ["c64"]), (4, ["c16", "c64"])])
def test_packing_is_for_convolutions_with_enough_work(batch: int, packed: list[str],
                                                      monkeypatch) -> None:
    """A convolution is packed for oneDNN when one call does at least PACKED_MIN_MACS
    multiply-adds; the others run through F.conv2d. Each route gives the plain mode's outputs,
    and is chosen once per input shape."""
    made: list = []
    pack = inference._pack_conv_weight
    routes: list = []
    route = inference._conv_route

    def counted_pack(weight, *args):
        made.append(tuple(weight.shape))
        return pack(weight, *args)

    def counted_route(layer, *args):
        routes.append(layer.name)
        return route(layer, *args)
    monkeypatch.setattr(inference, "_pack_conv_weight", counted_pack)
    monkeypatch.setattr(inference, "_conv_route", counted_route)
    net = build(SIZES)
    fast = optimize(net)
    rng = np.random.default_rng(batch)
    x = rng.normal(0, 1, (batch, 16, 16, 16)).astype(np.float32)
    for _ in range(3):
        got = fast.forward(blobs=["c16", "c64"], data=x)
    weights = {"c16": (32, 16, 3, 3), "c64": (128, 16, 3, 3)}
    assert made == [weights[name] for name in packed]
    assert sorted(routes) == ["c16", "c64"]
    net.blobs["data"].reshape(*x.shape)
    expected = {k: v.copy() for k, v in net.forward(blobs=["c16", "c64"], data=x).items()}
    for name in ("c16", "c64"):
        assert rel_err(got[name], expected[name]) < 1e-5, name


def test_shape_cache_drops_the_least_recently_used() -> None:
    cache = inference.ShapeCache(2)
    made: list = []

    def make(key):
        return lambda: made.append(key) or key
    for key in ("a", "b", "a", "c", "a", "b"):
        assert cache.get(key, make(key)) == key
    assert made == ["a", "b", "c", "b"] and len(cache) == 2

def test_fold_cases_net_equals_the_plan_without_cpu_paths(monkeypatch) -> None:
    net = build(NET)
    x = np.random.default_rng(1).normal(0, 1, (2, 3, 20, 20)).astype(np.float32)
    blobs = ["conv3", "pool3b", "cat", "ip2"]
    got = optimize(net).forward(blobs=blobs, data=x)
    reference = without_cpu_paths(net, monkeypatch).forward(blobs=blobs, data=x)
    for name in blobs + ["prob"]:
        assert rel_err(got[name], reference[name]) < 1e-5, name


def test_channels_first_plan_keeps_the_plain_convolutions(monkeypatch) -> None:
    net = build(ROUTES)
    x = np.random.default_rng(0).normal(0, 1, (2, 4, 13, 13)).astype(np.float32)
    got = optimize(net, channels_last=False).forward(blobs=["c3"], data=x)["c3"]
    expected = net.forward(blobs=["c3"], data=x)["c3"].copy()
    assert rel_err(got, expected) < 1e-5


def score_blobs(net: caffe.Net) -> list[str]:
    """The blobs that feed the net's Softmax outputs (scores before the saturating softmax)."""
    names = []
    for name, lp in zip(net._layer_names, (l.lp for l in net.modules)):
        if lp.type == "Softmax":
            names.extend(lp.bottom)
    return names


@pytest.mark.parametrize("key", ["holonet", "densenet"])
def test_sse_nets_at_batch_1_and_2_equal_plain_mode(key: str, monkeypatch) -> None:
    model = MODELS[key]
    for batch in (1, 2):
        net = random_sse_test_net(model, batch)
        x = np.random.default_rng(batch).normal(0, 40, (batch,) + model.input_chw).astype(np.float32)
        scores = score_blobs(net)
        expected = {k: v.copy() for k, v in net.forward(blobs=scores, data=x).items()}
        got = optimize(net).forward(blobs=scores, data=x)
        reference = without_cpu_paths(net, monkeypatch).forward(blobs=scores, data=x)
        for name in expected:
            assert rel_err(got[name], expected[name]) < 1e-4, (key, batch, name)
            assert rel_err(got[name], reference[name]) < 1e-4, (key, batch, name)


# A dense block: every Concat appends one convolution's output to the previous Concat, each read
# by a BatchNorm + Scale + ReLU that follows no convolution (the addcmul step, on the prefix view);
# then a Concat whose first bottom feeds two Concats (a fork: no chain through it).
DENSE = (
    'name: "dense"\n'
    'layer { name: "data" type: "Input" top: "data" '
    'input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } } }\n'
    + conv("stem", "data", "cat0", 6, 3, "pad: 1")
    + dense_block(4, 4)
    + conv("side", "cat4", "side", 3, 1)
    + layer("fork_a", "Concat", ["cat4", "side"], ["fork_a"])
    + layer("fork_b", "Concat", ["cat4", "grow3"], ["fork_b"])
    + layer("pool", "Pooling", ["fork_b"], ["pool"], "pooling_param { pool: AVE global_pooling: true }")
)
DENSE_BLOBS = ["cat1", "cat2", "cat3", "cat4", "bn2", "fork_a", "fork_b", "pool"]


@pytest.mark.parametrize("batch", [1, 2])
def test_concat_chain_shares_one_buffer_and_equals_plain_mode(batch: int, monkeypatch) -> None:
    net = build(DENSE)
    fast = optimize(net)
    assert fast.concat_chains == [("concat1", "concat2", "concat3", "concat4")]
    x = np.random.default_rng(batch).normal(0, 1, (batch, 3, 9, 9)).astype(np.float32)
    net.blobs["data"].reshape(*x.shape)
    expected = {k: v.copy() for k, v in net.forward(blobs=DENSE_BLOBS, data=x).items()}
    reference = without_cpu_paths(net, monkeypatch).forward(blobs=DENSE_BLOBS, data=x)
    for _ in range(2):  # the buffer is made anew each call
        got = fast.forward(blobs=DENSE_BLOBS, data=x)
        for name in DENSE_BLOBS:
            assert got[name].shape == expected[name].shape, name
            assert rel_err(got[name], expected[name]) < 1e-5, name
            assert rel_err(got[name], reference[name]) < 1e-5, name


# A weight-bound convolution at batch 1 (512 x 64 x 5 x 5 weights for 3 x 3 output positions, as
# SSE-ResNet's 7x7 heads on their small maps) followed by BatchNorm + Scale + ReLU (folded): the
# plan runs it as im2col + GEMM rather than the packed oneDNN convolution; at batch 8 (72
# positions) it is no longer weight-bound and takes the packed route.
HEAVY = (
    'name: "heavy"\n'
    'layer { name: "data" type: "Input" top: "data" '
    'input_param { shape { dim: 1 dim: 64 dim: 6 dim: 6 } } }\n'
    + conv("head", "data", "head", 512, 5, "stride: 2 pad: 2")
    + layer("bn", "BatchNorm", ["head"], ["head"])
    + layer("sc", "Scale", ["head"], ["head"], "scale_param { bias_term: true }")
    + layer("relu", "ReLU", ["head"], ["head"])
    + layer("pool", "Pooling", ["head"], ["pool"], "pooling_param { pool: AVE global_pooling: true }")
)


@pytest.mark.parametrize("batch,gemm", [(1, True), (8, False)])
def test_weight_bound_convolution_runs_as_gemm_and_equals_plain_mode(batch: int, gemm: bool,
                                                                     monkeypatch) -> None:
    net = build(HEAVY)
    calls = []

    def spy(*args):
        calls.append(tuple(args[0].shape))
        return im2col_conv2d(*args)
    monkeypatch.setattr(inference, "im2col_conv2d", spy)
    fast = optimize(net)
    assert fast.folded == [("head", "bn", "sc", "relu")]
    x = np.random.default_rng(batch).normal(0, 1, (batch, 64, 6, 6)).astype(np.float32)
    got = fast.forward(blobs=["head", "pool"], data=x)
    assert calls == ([(batch, 64, 6, 6)] if gemm else [])
    reference = without_cpu_paths(net, monkeypatch).forward(blobs=["head", "pool"], data=x)
    net.blobs["data"].reshape(*x.shape)
    expected = {k: v.copy() for k, v in net.forward(blobs=["head", "pool"], data=x).items()}
    for name in ("head", "pool"):
        assert rel_err(got[name], expected[name]) < 1e-5, name
        assert rel_err(got[name], reference[name]) < 1e-5, name
