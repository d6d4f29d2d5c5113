"""sse-predict on the shared clip (275 frames) with the shipped ensemble: the video scored in small chunks (7 faces,
whole frames) writes what it writes scored in one chunk, the way the code before streaming scored
every crop at once (issue 21: "results identical on the short clips"). The rows, boxes, people and
predicted classes are the same; a probability may differ in its last printed digit, as the forward
pass of another batch size may change the last bits of float32 (sse.predict.video says so)."""
from __future__ import annotations

import csv
import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, REPO, needs_shared_data
from sse.classes import CLASS_NAMES
from sse.predict import cli
from sse.predict.video import PREDICTIONS, SUMMARY, predict_video

CLIP = DATA / "media" / "videos" / "short_hamilton_clip.mp4"
ENSEMBLE = REPO / "models" / "fer2013_ensemble.json"

pytestmark = [needs_shared_data("media", "videos"), pytest.mark.slow]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_small_chunks_of_a_real_clip_score_as_one_chunk(tmp_path, monkeypatch):
    if not ENSEMBLE.is_file():
        pytest.skip(f"shipped ensemble not found at {ENSEMBLE}")
    clip = tmp_path / "clip.mp4"
    shutil.copy(CLIP, clip)

    runs = {}
    for name, chunk in (("small", 7), ("whole", 10**6)):
        out = tmp_path / name
        if runs:  # the same faces: only the scoring differs
            shutil.copytree(tmp_path / "small" / "faces", out / "faces")
        monkeypatch.setattr(cli, "predict_video", functools.partial(predict_video, chunk=chunk))
        assert cli.main([str(clip), "--out", str(out), "--model", str(ENSEMBLE), "--no-progress"]) == 0
        runs[name] = out

    small, whole = _rows(runs["small"] / PREDICTIONS), _rows(runs["whole"] / PREDICTIONS)
    assert len(small) == len(whole) > 7 * 20  # many chunks
    for a, b in zip(small, whole):
        assert {k: v for k, v in a.items() if k not in CLASS_NAMES} == {k: v for k, v in b.items() if k not in CLASS_NAMES}
    probs = [np.array([[float(r[c]) for c in CLASS_NAMES] for r in rows]) for rows in (small, whole)]
    np.testing.assert_allclose(probs[0], probs[1], atol=1.01e-5, rtol=0)

    a = json.loads((runs["small"] / "clip" / SUMMARY).read_text())
    b = json.loads((runs["whole"] / "clip" / SUMMARY).read_text())
    assert [(p["person"], p["frames"], p["dominant"]) for p in a["people"]] == \
        [(p["person"], p["frames"], p["dominant"]) for p in b["people"]]
    for pa, pb in zip(a["people"], b["people"]):
        for model in pb["models"]:
            np.testing.assert_allclose([pa["models"][model]["mean"][c] for c in CLASS_NAMES],
                                       [pb["models"][model]["mean"][c] for c in CLASS_NAMES], atol=1.01e-5, rtol=0)
