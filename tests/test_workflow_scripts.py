"""train_SSE_HoloNet.sh and test_SSE_HoloNet.sh run end to end on demo data: a snapshot, a log
in Caffe's format, features.mat with exactly one probability row per test frame (also from unlabelled
crops of another size, which INPUT_SIZE resizes); CAFFE_TOOLS is honoured."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from caffe.tools import compute_image_mean, convert_imageset
from conftest import REPO
from sse.synth import make_dataset

SIZE = 32


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("workflow")
    make_dataset(root / "data", {"train": (2, 2), "val": (1, 2)}, seed=3)
    for split in ("train", "val"):
        assert convert_imageset.main(["--gray", "--no_progress", f"--resize_height={SIZE}",
                                      f"--resize_width={SIZE}", f"{root / 'data'}/",
                                      str(root / "data" / f"{split}.txt"), str(root / f"{split}_lmdb")]) == 0
    assert compute_image_mean.main([str(root / "train_lmdb"), str(root / "mean.binaryproto")]) == 0
    lines = []
    for line in (root / "data" / "val.txt").read_text().splitlines():
        path, label = line.rsplit(" ", 1)
        img = cv2.imread(str(root / "data" / path), cv2.IMREAD_GRAYSCALE)
        small = root / "test" / path
        small.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(small), cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR))
        lines.append(f"{path} {label}\n")
    (root / "test_list.txt").write_text("".join(lines))
    return root


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, INPUT_SIZE=str(SIZE), ITERATIONS="3", TRAIN_BATCH="4", VAL_BATCH="4",
               TEST_BATCH="4", TEST_ITER="2", TEST_INTERVAL="2", MEAN_FILE="mean.binaryproto",
               TRAIN_SOURCE="train_lmdb", VAL_SOURCE="val_lmdb", TEST_LIST="test_list.txt",
               TEST_ROOT="test/", OMP_NUM_THREADS="1", CAFFE_DATA_WORKERS="0")
    env.update(extra)
    return env


def _run(script: str, root: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(REPO / script)], cwd=root, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def trained(workspace) -> Path:
    """The snapshot train_SSE_HoloNet.sh writes (3 iterations of the released form)."""
    _run("train_SSE_HoloNet.sh", workspace, _env(workspace))
    return workspace / "work" / "holonet" / "snapshots" / "holonet_3conv-s_concat_iter_3.caffemodel"


def test_train_then_test_scripts_produce_snapshot_log_and_features(workspace, trained):
    work = workspace / "work" / "holonet"
    assert trained.exists()
    log = (work / "train.log").read_text()
    assert "Iteration 0, lr = 0.01" in log and "Optimization Done." in log
    assert (work / "training_curves.png").exists()
    _run("test_SSE_HoloNet.sh", workspace, _env(workspace))
    feats = scipy.io.loadmat(str(work / "features.mat"))
    matrix = next(v for k, v in feats.items() if not k.startswith("__"))
    frames = len((workspace / "test_list.txt").read_text().splitlines())
    assert matrix.shape == (frames, 7)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-5)


def test_test_script_extracts_unlabelled_crops_of_another_size(workspace, trained):
    """Label -1 everywhere, 2x larger crops than the net input: one row per frame, and the rows
    equal the labelled, pre-resized run's (the resize is ImageData's new_height/new_width)."""
    env = _env(workspace, WORK="work/unlabelled", MODEL=str(trained))
    lines = (workspace / "data" / "val.txt").read_text().splitlines()
    (workspace / "unlabelled.txt").write_text("".join(f"{line.rsplit(' ', 1)[0]} -1\n" for line in lines))
    for line in lines:
        path = line.rsplit(" ", 1)[0]
        img = cv2.imread(str(workspace / "test" / path), cv2.IMREAD_GRAYSCALE)
        big = workspace / "big" / path
        big.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(big), cv2.resize(img, (2 * SIZE, 2 * SIZE), interpolation=cv2.INTER_NEAREST))
    _run("test_SSE_HoloNet.sh", workspace, dict(env, TEST_LIST="unlabelled.txt", TEST_ROOT="big/", TEST_BATCH="3"))
    work = workspace / "work" / "unlabelled"
    big = scipy.io.loadmat(str(work / "features.mat"))["feats"]
    assert big.shape == (len(lines), 7)
    _run("test_SSE_HoloNet.sh", workspace, dict(env, TEST_BATCH="3"))
    small = scipy.io.loadmat(str(work / "features.mat"))["feats"]
    assert small.shape == (len(lines), 7)
    np.testing.assert_allclose(big, small, atol=2e-2)


def test_caffe_tools_variable_routes_to_another_caffe_build(workspace, tmp_path):
    calls = tmp_path / "calls.txt"
    tools = tmp_path / "caffe_build_tools"
    tools.mkdir()
    for name, target in (("caffe", "caffe"), ("extract_features.bin", "extract_features")):
        wrapper = tools / name
        wrapper.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "{calls}"\nexec {target} "$@"\n')
        wrapper.chmod(0o755)
    env = _env(workspace, CAFFE_TOOLS=str(tools), WORK="work/routed", VARIANT="original")
    _run("train_SSE_HoloNet.sh", workspace, env)
    _run("test_SSE_HoloNet.sh", workspace, env)
    recorded = calls.read_text().splitlines()
    assert recorded[0].startswith("caffe train --solver=work/routed/nets/SSE-HoloNet/SSE_holonet_original")
    assert recorded[1].startswith("extract_features.bin work/routed/snapshots/holonet_original_iter_3")
