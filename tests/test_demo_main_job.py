"""The main job (sse-demo) runs end to end and writes what the README promises; with its default
budget (slow test) it learns: held-out video accuracy well above chance."""
from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.io

from sse.demo import run

OUTPUTS = ("training_curves.png", "confusion_matrix.png", "features.mat", "val_predictions.txt",
           "train.log", "mean.binaryproto")


def test_demo_pipeline_writes_every_output_on_a_tiny_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("CAFFE_DATA_WORKERS", "0")
    accuracy = run(tmp_path, train_clips=(2, 2), val_clips=(1, 4), iterations=4, batch=4, size=32)
    for name in OUTPUTS:
        assert (tmp_path / name).exists(), name
    assert list(tmp_path.glob("timeline_*.png"))
    feats = scipy.io.loadmat(str(tmp_path / "features.mat"))
    matrix = next(v for k, v in feats.items() if not k.startswith("__"))
    assert matrix.shape == (7 * 4, 7)
    np.testing.assert_allclose(matrix.sum(axis=1), 1, rtol=1e-5)
    assert len((tmp_path / "val_predictions.txt").read_text().splitlines()) == 7
    assert 0.0 <= accuracy <= 1.0
    assert "Optimization Done." in (tmp_path / "train.log").read_text()


@pytest.mark.slow
def test_demo_learns_with_its_default_budget(tmp_path):
    os.environ.setdefault("CAFFE_DATA_WORKERS", "1")
    assert run(tmp_path) > 0.5
