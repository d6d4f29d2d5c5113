"""The README's "workflow on real data" block, run as written (read from README.md) on real clips in
an AFEW-style tree, with small iteration counts from the environment: every step composes with the
files the previous steps wrote (no hand-made list, label or video file), features.mat has one row per
crop, the fused predictions one row per video, and the timelines exist."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from conftest import DATA, REPO
from sse.fusion.formats import video_key

VIDEOS = DATA / "media" / "videos"
FAST_ENV = {"ITERATIONS": "1", "TRAIN_BATCH": "2", "VAL_BATCH": "2", "TEST_BATCH": "8", "TEST_ITER": "1",
            "TEST_INTERVAL": "1000", "VARIANT": "original", "OMP_NUM_THREADS": "2", "CAFFE_DATA_WORKERS": "0"}


def readme_block() -> str:
    """The bash block under the README's "The workflow on real data" heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## The workflow on real data", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "README.md: no bash block under 'The workflow on real data'"
    return match.group(1)


def _run_block(root: Path, train: dict[str, str], val: dict[str, str], env: dict[str, str]) -> None:
    for split, clips in (("Train", train), ("Val", val)):
        for name, label in clips.items():
            folder = root / "AFEW" / split / label
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(VIDEOS / name, folder / name)
    for name in ("train_SSE_HoloNet.sh", "test_SSE_HoloNet.sh", "tools"):
        (root / name).symlink_to(REPO / name)
    script = "set -euo pipefail\n" + readme_block()
    result = subprocess.run(["bash", "-c", script], cwd=root, env=dict(os.environ, **env),
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]


def _check_outputs(root: Path, val: dict[str, str]) -> None:
    frames_csv = (root / "faces" / "val" / "frames.csv").read_text().splitlines()[1:]
    feats = scipy.io.loadmat(str(root / "work" / "holonet" / "features.mat"))["feats"]
    assert feats.shape == (len(frames_csv), 7)
    np.testing.assert_allclose(feats.sum(axis=1), 1.0, rtol=1e-4)
    units = (root / "faces" / "val" / "videos.txt").read_text().split()
    assert len(units) == len(val)
    predictions = np.loadtxt(root / "val_holonet.txt", ndmin=2)
    assert predictions.shape == (len(units), 7)
    assert (root / "confusion.png").stat().st_size > 0
    assert sorted(p.stem for p in (root / "timelines").glob("*.png")) == sorted(video_key(u) for u in units)


@pytest.fixture
def media() -> Path:
    if not VIDEOS.is_dir():
        pytest.skip(f"real clips not found at {VIDEOS}")
    return VIDEOS


def test_readme_block_runs_on_a_short_real_clip(media, tmp_path):
    """Fast form: the 35-frame GIF is both the training and the validation video."""
    val = {"elon-musk-smoke.gif": "Neutral"}
    _run_block(tmp_path, val, val, FAST_ENV)
    _check_outputs(tmp_path, val)


@pytest.mark.slow
def test_readme_block_runs_on_the_real_clips(media, tmp_path):
    """The 640x360 film clip and the 1080p clip for training, the GIF and the film clip to validate,
    the released SSE-HoloNet form."""
    train = {"short_hamilton_clip.mp4": "Happy", "facenet_pytorch_video.mp4": "Neutral"}
    val = {"elon-musk-smoke.gif": "Neutral", "short_hamilton_clip.mp4": "Happy"}
    env = dict(FAST_ENV, ITERATIONS="2", VARIANT="3conv-s+concat")
    _run_block(tmp_path, train, val, env)
    _check_outputs(tmp_path, val)
