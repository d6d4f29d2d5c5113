"""The inference mode adds a shortcut into the convolution step whose output an Eltwise SUM adds
it to (a residual block), with a Power ``x + shift`` on the shortcut folded into the bias (HoloNet's
identity shortcuts), and gives what the plain mode gives (issue 19)."""
from __future__ import annotations

import numpy as np
import pytest

import caffe
from caffe.inference import optimize
from golden_utils import rel_err
from inference_helpers import MODELS, random_sse_test_net
from test_inference_cpu_paths import build, score_blobs
from test_inference_equivalence import conv, layer

BN_SCALE = "scale_param { bias_term: true }"

# proj: two conv + BN + Scale branches summed, then ReLU (ResNet's projection block: the later
# branch takes the earlier one as its shortcut); plus1: a 1x1 conv summed with a Power x + 1 of
# the block input (HoloNet's identity shortcut); plus2: the same with a 3x3 conv and the Power
# listed first; coeff: an Eltwise with coefficients (not folded); scaled: a Power with scale 2
# (not folded into the bias, the Eltwise still is); later: the shortcut is computed after the
# convolution (the Eltwise is not folded into that one).
RESIDUALS = (
    'name: "residuals"\n'
    'layer { name: "data" type: "Input" top: "data" '
    'input_param { shape { dim: 2 dim: 4 dim: 9 dim: 9 } } }\n'
    + conv("proj_a", "data", "proj_a", 6, 3, "pad: 1")
    + layer("proj_a_bn", "BatchNorm", ["proj_a"], ["proj_a"])
    + layer("proj_a_sc", "Scale", ["proj_a"], ["proj_a"], BN_SCALE)
    + conv("proj_b", "data", "proj_b", 6, 1)
    + layer("proj_b_bn", "BatchNorm", ["proj_b"], ["proj_b"])
    + layer("proj_b_sc", "Scale", ["proj_b"], ["proj_b"], BN_SCALE)
    + layer("proj", "Eltwise", ["proj_a", "proj_b"], ["proj"])
    + layer("proj_relu", "ReLU", ["proj"], ["proj"])
    + conv("plus1_conv", "proj", "plus1_conv", 6, 1)
    + layer("plus1_in", "Power", ["proj"], ["plus1_in"], "power_param { shift: 1 }")
    + layer("plus1", "Eltwise", ["plus1_conv", "plus1_in"], ["plus1"])
    + layer("plus2_in", "Power", ["plus1"], ["plus2_in"], "power_param { shift: -0.5 }")
    + conv("plus2_conv", "plus1", "plus2_conv", 6, 3, "pad: 1 bias_term: false")
    + layer("plus2", "Eltwise", ["plus2_in", "plus2_conv"], ["plus2"])
    + conv("coeff_conv", "plus2", "coeff_conv", 6, 1)
    + layer("coeff", "Eltwise", ["coeff_conv", "plus2"], ["coeff"], "eltwise_param { coeff: 1 coeff: -2 }")
    + layer("scaled_in", "Power", ["coeff"], ["scaled_in"], "power_param { scale: 2 shift: 1 }")
    + conv("scaled_conv", "coeff", "scaled_conv", 6, 1)
    + layer("scaled", "Eltwise", ["scaled_conv", "scaled_in"], ["scaled"])
    + conv("later_conv", "scaled", "later_conv", 6, 1)
    + conv("later_other", "scaled", "later_other", 6, 3, "pad: 1")
    + layer("later", "Eltwise", ["later_conv", "later_other"], ["later"])
)
BLOBS = ["proj", "plus1", "plus2", "coeff", "scaled", "later"]


def test_which_eltwise_sums_are_folded_into_a_convolution() -> None:
    folded = optimize(build(RESIDUALS)).folded
    assert ("proj_b", "proj_b_bn", "proj_b_sc", "proj", "proj_relu") in folded
    assert ("plus1_conv", "plus1_in", "plus1") in folded
    assert ("plus2_conv", "plus2_in", "plus2") in folded
    assert ("scaled_conv", "scaled") in folded
    assert ("later_other", "later") in folded
    assert not [f for f in folded if f[0] in ("proj_a", "coeff_conv", "later_conv") and len(f) > 3]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels_last", [True, False])
def test_folded_shortcuts_equal_plain_mode(batch: int, channels_last: bool) -> None:
    net = build(RESIDUALS)
    x = np.random.default_rng(batch).normal(0, 1, (batch, 4, 9, 9)).astype(np.float32)
    net.blobs["data"].reshape(*x.shape)
    expected = {k: v.copy() for k, v in net.forward(blobs=BLOBS, data=x).items()}
    got = optimize(net, channels_last=channels_last).forward(blobs=BLOBS, data=x)
    for name in BLOBS:
        assert got[name].shape == expected[name].shape, name
        assert rel_err(got[name], expected[name]) < 1e-5, name


def test_the_shortcut_is_left_as_it_was() -> None:
    """The step adds the shortcut into its own output, never into the shortcut's tensor."""
    net = build(RESIDUALS)
    x = np.random.default_rng(0).normal(0, 1, (2, 4, 9, 9)).astype(np.float32)
    expected = {k: v.copy() for k, v in net.forward(blobs=["proj_a", "proj"], data=x).items()}
    got = optimize(net).forward(blobs=["proj_a", "proj"], data=x)
    assert rel_err(got["proj_a"], expected["proj_a"]) < 1e-5


@pytest.mark.parametrize("key", ["holonet", "resnet"])
def test_sse_nets_fold_their_shortcuts_and_equal_plain_mode(key: str) -> None:
    model = MODELS[key]
    net = random_sse_test_net(model, 1)
    fast = optimize(net)
    eltwise = [l.name for l in net.modules if l.type == "Eltwise"]
    assert sum(any(name in f for name in eltwise) for f in fast.folded) == len(eltwise)
    x = np.random.default_rng(2).normal(0, 40, (1,) + model.input_chw).astype(np.float32)
    scores = score_blobs(net)
    expected = {k: v.copy() for k, v in net.forward(blobs=scores, data=x).items()}
    got = fast.forward(blobs=scores, data=x)
    for name in scores:
        assert rel_err(got[name], expected[name]) < 1e-4, name
