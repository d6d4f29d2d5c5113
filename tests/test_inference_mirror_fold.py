"""The inference mode folds a Concat of a convolution's output and Power images of it (HoloNet's
CReLU: conv -> BatchNorm -> [y, 1 - y] -> Scale -> ReLU) into the convolution's weights, one step
with twice the output channels, and gives what the plain mode gives (issue 19)."""
from __future__ import annotations

import numpy as np
import pytest

import caffe
from caffe.inference import optimize
from golden_utils import rel_err
from inference_helpers import MODELS, random_sse_test_net
from test_inference_cpu_paths import build, score_blobs
from test_inference_equivalence import conv, layer

NEG = "power_param { scale: -1 shift: 1 }"

# crelu: HoloNet's pattern; swapped: the image first, two images, no Scale, a leaky ReLU;
# shared: y also read by a Pooling (no fold of the Concat); grouped: a grouped convolution (its
# output channels cannot be stacked); squared: a Power with power 2 (not affine).
MIRRORS = (
    'name: "mirrors"\n'
    'layer { name: "data" type: "Input" top: "data" '
    'input_param { shape { dim: 2 dim: 3 dim: 11 dim: 11 } } }\n'
    + conv("crelu", "data", "crelu", 4, 3, "pad: 1")
    + layer("crelu_bn", "BatchNorm", ["crelu"], ["crelu"])
    + layer("crelu_neg", "Power", ["crelu"], ["crelu_neg"], NEG)
    + layer("crelu_cat", "Concat", ["crelu", "crelu_neg"], ["crelu_out"])
    + layer("crelu_scale", "Scale", ["crelu_out"], ["crelu_out"], "scale_param { bias_term: true }")
    + layer("crelu_relu", "ReLU", ["crelu_out"], ["crelu_out"])
    + conv("swapped", "crelu_out", "swapped", 3, 1, "bias_term: false")
    + layer("swapped_neg", "Power", ["swapped"], ["swapped_neg"], NEG)
    + layer("swapped_half", "Power", ["swapped"], ["swapped_half"], "power_param { scale: 0.5 shift: -2 }")
    + layer("swapped_cat", "Concat", ["swapped_neg", "swapped", "swapped_half"], ["swapped_out"])
    + layer("swapped_relu", "ReLU", ["swapped_out"], ["swapped_out"], "relu_param { negative_slope: 0.1 }")
    + conv("shared", "swapped_out", "shared", 4, 3)
    + layer("shared_neg", "Power", ["shared"], ["shared_neg"], NEG)
    + layer("shared_cat", "Concat", ["shared", "shared_neg"], ["shared_out"])
    + layer("shared_pool", "Pooling", ["shared"], ["shared_pool"], "pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
    + conv("grouped", "shared_out", "grouped", 4, 1, "group: 2")
    + layer("grouped_neg", "Power", ["grouped"], ["grouped_neg"], NEG)
    + layer("grouped_cat", "Concat", ["grouped", "grouped_neg"], ["grouped_out"])
    + conv("squared", "grouped_out", "squared", 2, 1)
    + layer("squared_sq", "Power", ["squared"], ["squared_sq"], "power_param { power: 2 }")
    + layer("squared_cat", "Concat", ["squared", "squared_sq"], ["squared_out"])
)
BLOBS = ["crelu_out", "swapped_out", "shared_out", "shared_pool", "grouped_out", "squared_out"]


def test_only_concats_of_affine_images_of_an_ungrouped_convolution_are_folded() -> None:
    folded = optimize(build(MIRRORS)).folded
    assert ("crelu", "crelu_bn", "crelu_neg", "crelu_cat", "crelu_scale", "crelu_relu") in folded
    assert ("swapped", "swapped_neg", "swapped_half", "swapped_cat", "swapped_relu") in folded
    assert not [f for f in folded if f[0] in ("shared", "grouped", "squared")]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels_last", [True, False])
def test_folded_mirrors_equal_plain_mode(batch: int, channels_last: bool) -> None:
    net = build(MIRRORS)
    x = np.random.default_rng(batch).normal(0, 1, (batch, 3, 11, 11)).astype(np.float32)
    net.blobs["data"].reshape(*x.shape)
    expected = {k: v.copy() for k, v in net.forward(blobs=BLOBS, data=x).items()}
    got = optimize(net, channels_last=channels_last).forward(blobs=BLOBS, data=x)
    for name in BLOBS:
        assert got[name].shape == expected[name].shape, name
        assert rel_err(got[name], expected[name]) < 1e-5, name


def test_folded_away_images_cannot_be_read() -> None:
    fast = optimize(build(MIRRORS))
    with pytest.raises(caffe.errors.NetError, match="folded away"):
        fast.run(blobs=["crelu_neg"])


def test_holonet_runs_its_crelus_as_single_convolutions_and_equals_plain_mode() -> None:
    model = MODELS["holonet"]
    net = random_sse_test_net(model, 2)
    fast = optimize(net)
    crelus = [f for f in fast.folded if any(name.endswith("/neg") for name in f)]
    assert len(crelus) == 5
    x = np.random.default_rng(2).normal(0, 40, (2,) + model.input_chw).astype(np.float32)
    scores = score_blobs(net)
    expected = {k: v.copy() for k, v in net.forward(blobs=scores, data=x).items()}
    got = fast.forward(blobs=scores, data=x)
    for name in scores:
        assert rel_err(got[name], expected[name]) < 1e-4, name
