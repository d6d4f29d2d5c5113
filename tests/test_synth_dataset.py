"""The embedded default data set: deterministic, complete list files, faces that differ by class."""
from __future__ import annotations

import cv2
import numpy as np

from sse.classes import CLASS_NAMES
from sse.synth import make_dataset, render_clip


def test_dataset_is_deterministic_and_lists_every_frame(tmp_path):
    counts = make_dataset(tmp_path / "a", {"train": (2, 3), "val": (1, 3)}, seed=5)
    make_dataset(tmp_path / "b", {"train": (2, 3), "val": (1, 3)}, seed=5)
    assert counts == {"train": 7 * 2 * 3, "val": 7 * 1 * 3}
    for name in ("train.txt", "val.txt", "val_frames.txt", "val_videos.txt"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    lines = (tmp_path / "a" / "train.txt").read_text().splitlines()
    assert len(lines) == counts["train"]
    labels = sorted({int(line.rsplit(" ", 1)[1]) for line in lines})
    assert labels == list(range(len(CLASS_NAMES)))
    path = lines[0].rsplit(" ", 1)[0]
    img = cv2.imread(str(tmp_path / "a" / path), cv2.IMREAD_UNCHANGED)
    assert img.shape == (128, 128) and img.dtype == np.uint8
    assert (tmp_path / "b" / path).read_bytes() == (tmp_path / "a" / path).read_bytes()
    videos = (tmp_path / "a" / "val_videos.txt").read_text().split()
    assert len(videos) == 2 * 7


def test_expression_grows_from_onset_to_apex():
    """Same identity and motion (same seed): the apex differs from Neutral more than the onset."""
    onset_gap, apex_gap = [], []
    for label in range(len(CLASS_NAMES)):
        if CLASS_NAMES[label] == "Neutral":
            continue
        clip = render_clip(label, 6, np.random.default_rng(label))
        neutral = render_clip(CLASS_NAMES.index("Neutral"), 6, np.random.default_rng(label))
        onset_gap.append(np.abs(clip[0].astype(float) - neutral[0]).mean())
        apex_gap.append(np.abs(clip[-1].astype(float) - neutral[-1]).mean())
    assert np.mean(apex_gap) > np.mean(onset_gap)
