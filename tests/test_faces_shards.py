"""sse-preprocess split between processes: 3 shards (``--shard K/3``) run at once into one folder,
then the same command as one process writes the lists; crops, manifests, contact sheets and list
files equal those of one plain run, byte for byte (manifests: but for the time they record)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, needs_shared_data
from process_helpers import wait_ok
from test_faces_cli_batch import write_faceless_video

GIF = DATA / "media" / "videos" / "elon-musk-smoke.gif"
SETTINGS = ["--gray", "--stride", "5", "--no-progress"]
TIMEOUT_S = 300

pytestmark = needs_shared_data("media", "videos", "elon-musk-smoke.gif")


def _preprocess(inputs: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sse.faces", str(inputs), "--out", str(out), *SETTINGS, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(proc: subprocess.Popen) -> str:
    return wait_ok(proc, "sse-preprocess", TIMEOUT_S)[0]


def _untimed(value):
    """JSON without its 'seconds' entries (how long something took)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def output_files(root: Path) -> dict[str, object]:
    """Every file under ``root`` by relative path: its bytes, or for JSON its untimed content."""
    return {
        p.relative_to(root).as_posix(): _untimed(json.loads(p.read_bytes())) if p.suffix == ".json" else p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Five clips: the talking-head GIF under two labels and three faceless videos."""
    root = tmp_path_factory.mktemp("clips") / "Train"
    for label, name in (("Happy", "talk.gif"), ("Sad", "talk2.gif")):
        (root / label).mkdir(parents=True)
        shutil.copy(GIF, root / label / name)
    for label in ("Angry", "Fear", "Neutral"):
        (root / label).mkdir(parents=True)
        write_faceless_video(root / label / f"empty_{label.lower()}.avi", frames=6)
    return root


def test_three_shards_in_three_processes_equal_one_run(clips, tmp_path):
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    single = _preprocess(clips, whole)
    shards = [_preprocess(clips, sharded, "--shard", f"{k}/3") for k in range(3)]
    _finish(single)
    reports = [_finish(p) for p in shards]
    assert [r.splitlines()[0].split(" (")[0] for r in reports] == ["videos: 2", "videos: 2", "videos: 1"]
    assert all("list files: not written" in r and f"shard {k}/3 (--shard)" in r for k, r in enumerate(reports))
    assert not (sharded / "list.txt").exists() and not (sharded / "frames.csv").exists()

    merge = _finish(_preprocess(clips, sharded))
    assert "5 already done" in merge

    expected, got = output_files(whole), output_files(sharded)
    assert sorted(got) == sorted(expected)
    assert "list.txt" in got and "frames.csv" in got
    assert len(got["list.txt"].splitlines()) == 2 * 7
    for name in expected:
        assert got[name] == expected[name], name
