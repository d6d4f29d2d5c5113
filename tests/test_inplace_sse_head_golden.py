"""SSE-ResNet's res2c cascade at its real size (7x7 stride-2 Convolutions in place growing the
channels 512 -> 1024 -> 2048, BatchNorm with batch statistics, Scale and ReLU in place after each),
TRAIN, batch 2: one forward and backward match real Caffe (golden
``tests/golden_made/inplace_sse_head``, made by tests/golden_tools/make_inplace_sse_head.py; the
parameters come from numpy there and here, so only a summary of the results is stored). Before
the in-place BatchNorm/Scale/ReLU backward followed Caffe's, the forward matched but every gradient
before res2c_conv_3 was off by about its own size."""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

import caffe
from caffe.inplace import InplaceReshapeWarning

HERE = Path(__file__).resolve().parent
CASE = HERE / "golden_made" / "inplace_sse_head"


def _maker():
    spec = importlib.util.spec_from_file_location(
        "make_inplace_sse_head", HERE / "golden_tools" / "make_inplace_sse_head.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_sse_resnet_res2c_cascade_forward_and_backward_match_real_caffe() -> None:
    maker = _maker()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InplaceReshapeWarning)
        net = caffe.Net(str(CASE / "net.prototxt"), caffe.TRAIN)
    got = maker.run(net)
    expected = np.load(CASE / "summary.npz")
    assert sorted(got) == sorted(expected.files)
    for key in expected.files:
        want = expected[key]
        scale = float(np.abs(want).max())
        if scale < 1e-5:
            # res2c_conv_3's bias diff: the last BatchNorm's gradient sums to zero per channel, so
            # both sides hold rounding noise (~1e-7)
            assert float(np.abs(got[key]).max()) < 1e-5, key
            continue
        np.testing.assert_allclose(got[key] / scale, want / scale, rtol=0, atol=1e-4, err_msg=key)
