"""The inference mode (caffe.inference.optimize) gives the plain mode's outputs, folds exactly
the BatchNorm/Scale chains that are safe to fold, and leaves the net untouched."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import caffe
from caffe.errors import NetError
from caffe.inference import optimize
from caffe.model_io import parse_net_text
from golden_utils import rel_err
from inference_helpers import randomize_weights

FILLERS = ('weight_filler { type: "gaussian" std: 0.3 } '
           'bias_filler { type: "gaussian" std: 0.2 }')


def conv(name: str, bottom: str, top: str, n: int, k: int, extra: str = "") -> str:
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}" '
            f'convolution_param {{ num_output: {n} kernel_size: {k} {extra} {FILLERS} }} }}\n')


def layer(name: str, type_: str, bottoms: list[str], tops: list[str], params: str = "") -> str:
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    t = " ".join(f'top: "{x}"' for x in tops)
    return f'layer {{ name: "{name}" type: "{type_}" {b} {t} {params} }}\n'


def dense_block(layers: int, growth: int) -> str:
    """A DenseNet block on the blob cat0: each layer a BatchNorm + Scale + ReLU of cat{i}, a 3x3
    convolution of ``growth`` outputs, and the Concat of cat{i} and it into cat{i + 1}."""
    return "".join(
        layer(f"bn{i}", "BatchNorm", [f"cat{i}"], [f"bn{i}"])
        + layer(f"sc{i}", "Scale", [f"bn{i}"], [f"bn{i}"], "scale_param { bias_term: true }")
        + layer(f"relu{i}", "ReLU", [f"bn{i}"], [f"bn{i}"])
        + conv(f"grow{i}", f"bn{i}", f"grow{i}", growth, 3, "pad: 1")
        + layer(f"concat{i + 1}", "Concat", [f"cat{i}", f"grow{i}"], [f"cat{i + 1}"])
        for i in range(layers))


# Every case the folding must get right: in-place chains (the BVLC ResNet style), chains with new
# top names, Scale without bias, conv without bias and with groups, a conv whose output also feeds a
# branch (no fold), a BatchNorm whose output feeds two layers (fold BN only), an in-place
# Convolution (SSE-ResNet), InnerProduct + BN + Scale, a leaky ReLU after a convolution, a BatchNorm
# that follows no convolution, explicit Split, Dropout, Power, Concat.
NET = (
    'name: "fold_cases"\n'
    'layer { name: "data" type: "Input" top: "data" '
    'input_param { shape { dim: 2 dim: 3 dim: 20 dim: 20 } } }\n'
    + conv("conv1", "data", "conv1", 8, 3, "pad: 1")
    + layer("bn1", "BatchNorm", ["conv1"], ["conv1"])
    + layer("scale1", "Scale", ["conv1"], ["conv1"], "scale_param { bias_term: true }")
    + layer("relu1", "ReLU", ["conv1"], ["conv1"])
    + conv("conv2", "conv1", "conv2", 8, 3, "stride: 2 group: 2 bias_term: false")
    + layer("bn2", "BatchNorm", ["conv2"], ["bn2"])
    + layer("scale2", "Scale", ["bn2"], ["scale2"], "scale_param { bias_term: false }")
    + conv("conv3", "scale2", "conv3", 8, 1)
    + layer("bn3", "BatchNorm", ["conv3"], ["bn3"])
    + layer("scale3", "Scale", ["bn3"], ["bn3"], "scale_param { bias_term: true }")
    + layer("pool3", "Pooling", ["conv3"], ["pool3"], "pooling_param { pool: MAX kernel_size: 3 stride: 2 }")
    + layer("pool3b", "Pooling", ["bn3"], ["pool3b"], "pooling_param { pool: AVE kernel_size: 3 stride: 2 }")
    + layer("sum", "Eltwise", ["pool3", "pool3b"], ["sum"], "eltwise_param { coeff: 1 coeff: -0.5 }")
    + conv("conv_inplace", "sum", "sum", 8, 3, "pad: 1")
    + layer("bn_inplace", "BatchNorm", ["sum"], ["sum"])
    + layer("scale_inplace", "Scale", ["sum"], ["sum"], "scale_param { bias_term: true }")
    + conv("conv4", "sum", "conv4", 6, 1)
    + layer("bn4", "BatchNorm", ["conv4"], ["bn4"])
    + layer("split4", "Split", ["bn4"], ["bn4a", "bn4b"])
    + layer("plus1", "Power", ["bn4a"], ["plus1"], "power_param { shift: 1 }")
    + layer("neg", "Power", ["bn4b"], ["neg"], "power_param { scale: -1 shift: 1 }")
    + conv("conv5", "sum", "conv5", 6, 1)
    + layer("lrelu5", "ReLU", ["conv5"], ["conv5"], "relu_param { negative_slope: 0.1 }")
    + layer("cat", "Concat", ["plus1", "neg", "conv5"], ["cat"])
    + layer("bn_cat", "BatchNorm", ["cat"], ["cat"])
    + layer("drop", "Dropout", ["cat"], ["cat"], "dropout_param { dropout_ratio: 0.5 }")
    + layer("ip1", "InnerProduct", ["cat"], ["ip1"], f"inner_product_param {{ num_output: 10 {FILLERS} }}")
    + layer("bn_ip", "BatchNorm", ["ip1"], ["ip1"])
    + layer("scale_ip", "Scale", ["ip1"], ["ip1"], "scale_param { bias_term: true }")
    + layer("ip2", "InnerProduct", ["ip1"], ["ip2"],
            f"inner_product_param {{ num_output: 5 transpose: true {FILLERS} }}")
    + layer("bn_ip2", "BatchNorm", ["ip2"], ["ip2"])
    + layer("prob", "Softmax", ["ip2"], ["prob"])
)

EXPECTED_FOLDS = [
    ("conv1", "bn1", "scale1", "relu1"),
    ("conv2", "bn2", "scale2"),
    ("bn3", "scale3"),
    ("conv_inplace", "bn_inplace", "scale_inplace"),
    ("conv4", "bn4"),
    ("conv5", "lrelu5"),
    ("ip1", "bn_ip", "scale_ip"),
    ("ip2", "bn_ip2"),
]


def build(phase: int = caffe.TEST, seed: int = 0) -> caffe.Net:
    caffe.set_random_seed(seed)
    net = caffe.Net(net_param=parse_net_text(NET), phase=phase)
    randomize_weights(net, seed)
    return net


def data(n: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, 3, 20, 20)).astype(np.float32)


def plain(net: caffe.Net, x: np.ndarray, blobs=()) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in net.forward(blobs=list(blobs), data=x).items()}


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_optimized_outputs_equal_plain_mode(fold: bool, channels_last: bool) -> None:
    net = build()
    x = data()
    expected = plain(net, x, blobs=["ip2"])
    fast = optimize(net, fold=fold, channels_last=channels_last)
    got = fast.forward(blobs=["ip2"], data=x)
    assert set(got) == {"prob", "ip2"}
    assert rel_err(got["ip2"], expected["ip2"]) < 1e-5
    assert rel_err(got["prob"], expected["prob"]) < 1e-5
    assert got["prob"].dtype == np.float32


def test_only_chains_whose_intermediates_have_no_other_reader_are_folded() -> None:
    fast = optimize(build())
    assert fast.folded == EXPECTED_FOLDS


def test_optimize_and_forward_leave_the_nets_weights_unchanged() -> None:
    net = build()
    before = {(l.name, i): p.detach().clone() for l in net.modules for i, p in enumerate(l.blobs)}
    fast = optimize(net)
    fast.forward(data=data())
    for layer in net.modules:
        for i, p in enumerate(layer.blobs):
            assert torch.equal(p.detach(), before[(layer.name, i)]), f"{layer.name} blob {i} changed"


def test_batch_size_other_than_the_prototxts_matches_plain_mode() -> None:
    net = build()
    x = data(n=5, seed=3)
    fast = optimize(net)
    got = fast.run({"data": torch.from_numpy(x)})["prob"]
    assert tuple(got.shape) == (5, 5)
    assert rel_err(got.numpy(), plain(net, x)["prob"]) < 1e-5


def test_missing_inputs_are_read_from_the_nets_input_blobs() -> None:
    net = build()
    x = data(seed=7)
    net.blobs["data"].data[...] = x
    got = optimize(net).forward()
    assert rel_err(got["prob"], plain(net, x)["prob"]) < 1e-5


def test_unfolded_intermediate_blobs_can_be_read_and_folded_ones_cannot() -> None:
    net = build()
    x = data()
    expected = plain(net, x, blobs=["conv3", "pool3b", "cat"])
    fast = optimize(net)
    got = fast.forward(blobs=["conv3", "pool3b", "cat"], data=x)
    for name in ("conv3", "pool3b", "cat"):
        assert rel_err(got[name], expected[name]) < 1e-5, name
    with pytest.raises(NetError, match="folded"):
        fast.forward(blobs=["conv2"], data=x)
    with pytest.raises(NetError, match="not a blob"):
        fast.forward(blobs=["nope"], data=x)


def test_unknown_input_name_is_an_error() -> None:
    with pytest.raises(NetError, match="not inputs"):
        optimize(build()).forward(image=data())


def test_train_net_is_rejected() -> None:
    with pytest.raises(NetError, match="TEST net"):
        optimize(build(phase=caffe.TRAIN))


def test_bad_autocast_value_is_rejected() -> None:
    with pytest.raises(ValueError, match="autocast"):
        optimize(build(), autocast="int8")


def test_bf16_autocast_stays_close_and_returns_float32() -> None:
    net = build()
    x = data()
    expected = plain(net, x)["prob"]
    got = optimize(net, autocast="bf16").forward(data=x)["prob"]
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() < 0.05


def test_results_are_reproducible_across_calls() -> None:
    fast = optimize(build())
    x = data()
    first = fast.forward(data=x)["prob"].copy()
    np.testing.assert_array_equal(fast.forward(data=x)["prob"], first)


ND_NET = (
    'name: "nd"\n'
    'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 6 dim: 7 } } }\n'
    + conv("c3d", "data", "c3d", 4, 3, "pad: 1")
    + layer("bn", "BatchNorm", ["c3d"], ["c3d"])
    + layer("scale", "Scale", ["c3d"], ["c3d"], "scale_param { bias_term: true }")
    + layer("relu", "ReLU", ["c3d"], ["c3d"])
    + layer("flat", "Reshape", ["c3d"], ["seq"], "reshape_param { shape { dim: 0 dim: 4 dim: -1 } }")
    + conv("c1d", "seq", "c1d", 5, 3, "stride: 2 dilation: 2 group: 1")
    + layer("bn1d", "BatchNorm", ["c1d"], ["c1d"])
)


def test_one_and_three_dimensional_convolutions_equal_plain_mode() -> None:
    caffe.set_random_seed(0)
    net = caffe.Net(net_param=parse_net_text(ND_NET), phase=caffe.TEST)
    randomize_weights(net, 0)
    x = np.random.default_rng(2).normal(0, 1, (2, 3, 4, 6, 7)).astype(np.float32)
    expected = plain(net, x)
    got = optimize(net).forward(data=x)
    assert got["c1d"].shape == expected["c1d"].shape == (2, 5, 82)
    assert rel_err(got["c1d"], expected["c1d"]) < 1e-5
