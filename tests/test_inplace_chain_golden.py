"""Chains of in-place layers on one blob whose shape in-place Convolutions change (BatchNorm, Scale,
ReLU in place, then a 1x1 Convolution that grows the channels and one that shrinks them, 1x1 or 3x3
stride 2), and 1x1 Convolutions and InnerProducts in place that keep the shape but multiply into
the memory they read, compute what real Caffe computes: golden ``tests/golden_made/inplace_chain``, made with a
real BVLC Caffe build by tests/golden_tools/make_inplace_chain.py (see tests/golden_made/README.md).

Forward layer by layer, the blobs after the forward, the backward layer by layer (bottom and
parameter diffs), and a second forward that depends on what the first pass left in the buffers. The
solver's path (one autograd graph) gives the same forward and parameter gradients."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe
from caffe.inplace import InplaceReshapeWarning
from golden_utils import param_key

ROOT = Path(__file__).resolve().parent / "golden_made" / "inplace_chain"
CASES = ["grow_shrink_1x1", "grow_shrink_s2", "batch3_mid_bn", "batch_stats", "wide_1x1",
         "sse_resnet_head", "same_shape_1x1", "same_shape_ip"]
TOL = dict(rtol=1e-5, atol=1e-5)


def build(case: Path) -> caffe.Net:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InplaceReshapeWarning)
        return caffe.Net(str(case / "net.prototxt"), caffe.TRAIN,
                         weights=str(case / "weights.caffemodel"))


def close(actual, expected, what: str) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.abs(expected).max()) if expected.size else 0.0, 1.0)
    np.testing.assert_allclose(actual / scale, expected / scale, err_msg=what, **TOL)


def test_every_case_was_made_by_real_caffe() -> None:
    for name in CASES:
        facts = json.loads((ROOT / name / "facts.json").read_text())
        assert facts["layers"][0] == "data" and facts["layers"][1] == "pre", name


@pytest.mark.parametrize("name", CASES)
def test_forward_layer_by_layer_matches_real_caffe(name) -> None:
    case = ROOT / name
    net = build(case)
    net.blobs["data"].data[...] = np.load(case / "input_data.npy")
    per_layer = np.load(case / "expected_per_layer.npz")
    for i, layer in enumerate(net._layer_names):
        net.forward(start=layer, end=layer)
        for top in net.top_names[layer]:
            close(net.blobs[top].data, per_layer[f"{i:03d}:{layer}:{top}"], f"{layer}:{top}")
    expected = np.load(case / "expected_forward.npz")
    for key in expected.files:
        close(net.blobs[key].data, expected[key], key)


@pytest.mark.parametrize("name", CASES)
def test_backward_and_second_forward_match_real_caffe(name) -> None:
    case = ROOT / name
    net = build(case)
    x = np.load(case / "input_data.npy")
    net.blobs["data"].data[...] = x
    for layer in net._layer_names:
        net.forward(start=layer, end=layer)
    net.blobs["x"].diff[...] = np.load(case / "output_diffs.npz")["x"]
    per_layer = np.load(case / "expected_per_layer_backward.npz")
    names = list(net._layer_names)
    for i in reversed(range(len(names))):
        layer = names[i]
        net.backward(start=layer, end=layer)
        for bottom in net.bottom_names[layer]:
            close(net.blobs[bottom].diff, per_layer[f"{i:03d}:{layer}:{bottom}"],
                  f"backward {layer}: diff of {bottom}")
        for j, p in enumerate(net.params[layer] if layer in net.params else []):
            close(p.diff, per_layer[f"{i:03d}:{layer}:param:{j}"], f"backward {layer}: param {j}")
    expected = np.load(case / "expected_param_diff.npz")
    for key in expected.files:
        layer, j = param_key(key)
        close(net.params[layer][j].diff, expected[key], f"param diff {key}")
    net.blobs["data"].data[...] = x
    net.forward()
    expected = np.load(case / "expected_forward2.npz")
    for key in expected.files:
        close(net.blobs[key].data, expected[key], f"second forward {key}")


@pytest.mark.parametrize("name", ["grow_shrink_1x1", "batch3_mid_bn", "batch_stats",
                                  "sse_resnet_head"])
def test_the_solver_path_gives_the_same_forward_and_gradients(name) -> None:
    case = ROOT / name
    net = build(case)
    net.blobs["data"].data[...] = np.load(case / "input_data.npy")
    net.run()
    expected = np.load(case / "expected_forward.npz")
    close(net._data["x"].detach().numpy(), expected["x"], "x")
    net.clear_param_diffs()
    torch.autograd.backward(net._data["x"], torch.from_numpy(np.load(case / "output_diffs.npz")["x"]))
    expected = np.load(case / "expected_param_diff.npz")
    for key in expected.files:
        layer, j = param_key(key)
        close(net.params[layer][j].diff, expected[key], f"param diff {key}")
