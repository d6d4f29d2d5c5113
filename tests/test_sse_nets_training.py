"""Every SSE form trains: its generated train prototxt (Data layers reading a tiny LMDB) runs under
caffe.SGDSolver with the backbone's released solver settings, and the loss goes down.

The nets are generated at 32x32 (the smallest input the three trunks share) and trained on the
same 8 images every iteration (a class-dependent bright stripe plus noise), at base_lr 0.01 fixed.
Tiny nets run single-threaded: on 2 loaded cores torch's thread pool costs more than it gives."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import caffe
from caffe.data.datum import image_to_datum
from caffe.data.db import Writer
from sse.nets.generate import solver_param, write_variant
from sse.nets.variants import VARIANTS, get_backbone

SIZE, BATCH = 32, 8
HEAVY = {("resnet", "4conv-c+eltwise"), ("resnet", "4conv-c+concat")}
# Cascaded forms (90-390 M params) take 4 iterations, except the slow SSE-ResNet-50 ones: their
# loss can rise at the second step before it falls.
ITERATIONS = {"holonet": 6, "densenet": 6, "resnet": 8}


def write_tiny_lmdb(path: Path, channels: int, classes: int = 7) -> None:
    rng = np.random.default_rng(0)
    with Writer(path, "LMDB") as writer:
        for i in range(BATCH):
            label = i % classes
            img = rng.integers(0, 60, (SIZE, SIZE, channels), dtype=np.uint8)
            img[:, label * SIZE // classes:(label + 1) * SIZE // classes] += 150
            writer.put(f"{i:08d}", image_to_datum(img, label).SerializeToString())


def train_losses(backbone_key: str, variant: str, tmp_path: Path) -> list[float]:
    backbone = get_backbone(backbone_key)
    db = tmp_path / "train_lmdb"
    write_tiny_lmdb(db, backbone.data.channels)
    cfg = replace(backbone.data, input_size=SIZE, mean_file=None, mean_value=(100.0,), scale=1 / 64,
                  mirror=False, train_source=str(db), val_source=str(db), train_batch=BATCH,
                  val_batch=BATCH)
    paths = write_variant(backbone, variant, tmp_path, cfg)
    iterations = ITERATIONS[backbone_key]
    if VARIANTS[variant].head == "cascade" and (backbone_key, variant) not in HEAVY:
        iterations = 4
    param = solver_param(backbone, VARIANTS[variant], str(paths["train"]), max_iter=iterations,
                         solver_mode="CPU")
    param.ClearField("test_iter")
    param.ClearField("test_interval")
    param.ClearField("snapshot_prefix")
    param.snapshot = 0
    param.display = 0
    param.base_lr, param.lr_policy, param.random_seed = 0.01, "fixed", 1
    solver = caffe.SGDSolver(param, log=False)
    losses = []
    for _ in range(iterations):
        solver.step(1)
        losses.append(float(solver.net.last_loss))
    return losses


CASES = [pytest.param(bb, v, marks=pytest.mark.slow) if (bb, v) in HEAVY else (bb, v)
         for bb in ("holonet", "densenet", "resnet") for v in VARIANTS]


@pytest.mark.parametrize("backbone,variant", CASES)
def test_each_form_trains_and_its_loss_goes_down(backbone, variant, tmp_path, one_thread, monkeypatch):
    # SSE-ResNet's released in-place Convolution/InnerProduct layers change their blob's shape;
    # real Caffe's shared-buffer arithmetic there is checked against golden data elsewhere
    # (test_inplace_reshape_golden); here the forms are judged as the layers they describe.
    monkeypatch.setenv("CAFFE_INPLACE_RESHAPE", "math")
    losses = train_losses(backbone, variant, tmp_path)
    assert all(np.isfinite(losses)), losses
    assert np.mean(losses[-2:]) < 0.7 * losses[0], losses
