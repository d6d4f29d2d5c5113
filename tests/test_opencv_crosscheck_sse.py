"""Independent cross-check: OpenCV's Caffe importer (cv2.dnn.readNetFromCaffe) and the engine run
the same SSE test net (data layer replaced by Input, losses removed) with the same caffemodel of
seeded random weights, random BatchNorm statistics with a scale factor and random Scale
gamma/beta, on the same input. OpenCV reads a copy whose in-place Convolution/InnerProduct tops
are renamed (it rejects them); nothing else differs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caffe.inference import optimize
from golden_utils import rel_err
from inference_helpers import MODELS, last_writers, sse_test_net_files

cv2 = pytest.importorskip("cv2")


def crosscheck(key: str, batch: int, tmp_path: Path) -> None:
    """Every blob of the net (read from OpenCV as the output of the layer that last writes it),
    and the optimised mode's outputs, agree with the engine's plain mode within 1e-4."""
    model = MODELS[key]
    net, _, opencv_prototxt, weights = sse_test_net_files(model, batch, tmp_path, seed=11)
    x = np.random.default_rng(5).normal(0, 40, (batch,) + model.input_chw).astype(np.float32)
    names = [b for b in net.blobs if b not in net.inputs]
    ours = {k: v.copy() for k, v in net.forward(blobs=names, data=x).items()}
    fast = optimize(net).forward(data=x)
    writers = last_writers(net.net_param)
    cv_net = cv2.dnn.readNetFromCaffe(str(opencv_prototxt), str(weights))
    cv_net.setInput(x)
    theirs = cv_net.forward([writers[n] for n in names])
    assert len(names) > 50
    for name, other in zip(names, theirs):
        expected = ours[name]
        assert rel_err(np.asarray(other).reshape(expected.shape), expected) < 1e-4, name
    for name in net.outputs:
        assert rel_err(fast[name], ours[name]) < 1e-4, name


@pytest.mark.parametrize("key", ["holonet", "densenet"])
def test_sse_test_net_agrees_with_opencv(key: str, tmp_path: Path) -> None:
    crosscheck(key, 2, tmp_path)


@pytest.mark.slow
def test_sse_resnet50_agrees_with_opencv(tmp_path: Path, monkeypatch) -> None:
    # OpenCV runs a copy whose in-place layers are renamed, i.e. the mathematical layers; real
    # Caffe's shared-buffer arithmetic is checked in test_inplace_reshape_golden.
    monkeypatch.setenv("CAFFE_INPLACE_RESHAPE", "math")
    crosscheck("resnet", 1, tmp_path)
