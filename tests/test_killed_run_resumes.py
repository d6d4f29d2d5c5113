"""A killed batch resumes without redoing finished videos (issue 21): sse-preprocess and sse-predict
run in their own process over three short clips are SIGKILLed as soon as the first clip is finished
(its manifest, or its summary.json for sse-predict); the same command run again leaves the finished
clip's files as they were (same inode, same modification time), does the rest, and ends with the
outputs an uninterrupted run writes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import caffe
import pytest

from caffe.model_io import array_to_blobproto, write_binary
from conftest import DATA, REPO, needs_shared_data

CLIP = DATA / "media" / "videos" / "short_hamilton_clip.mp4"
STARTS = (0, 100, 200)  # three pieces of the shared clip, each its own video
FRAMES = 24
SIZE = 24
DEPLOY = f"""name: "tiny"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 1 dim: {SIZE} dim: {SIZE} }} }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param {{ num_output: 7 weight_filler {{ type: "gaussian" std: 0.01 }} }} }}
layer {{ name: "prob" type: "Softmax" bottom: "fc" top: "prob" }}
"""
TIMING = {"seconds", "elapsed", "created", "date", "time_s"}  # fields that say when or how long, not what

pytestmark = [needs_shared_data("media", "videos"), pytest.mark.slow]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """Three clips of FRAMES frames (MJPG .avi, quick to decode) cut from the shared clip."""
    root = tmp_path_factory.mktemp("clips")
    capture = cv2.VideoCapture(str(CLIP))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    paths = []
    for n, start in enumerate(STARTS):
        path = root / f"clip{n}.avi"
        height, width = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (width, height))
        for image in frames[start:start + FRAMES]:
            writer.write(image)
        writer.release()
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("tiny")
    (root / "deploy.prototxt").write_text(DEPLOY)
    caffe.set_random_seed(3)
    caffe.Net(str(root / "deploy.prototxt"), caffe.TEST).save(str(root / "tiny.caffemodel"))
    mean = np.full((1, 1, SIZE, SIZE), 110, np.float32)
    write_binary(array_to_blobproto(mean), root / "mean.binaryproto")
    return [str(root / "deploy.prototxt"), str(root / "tiny.caffemodel"), str(root / "mean.binaryproto")]


def _command(module: str, argv: list[str]) -> list[str]:
    return [sys.executable, "-c", f"import sys, {module} as m; sys.exit(m.main(sys.argv[1:]))", *argv]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), OPENCV_FFMPEG_LOGLEVEL="-8")


def _run(module: str, argv: list[str]) -> str:
    result = subprocess.run(_command(module, argv), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _kill_when(module: str, argv: list[str], markers: list[Path], timeout_s: float = 240) -> list[Path]:
    """Start the command, SIGKILL it as soon as one of ``markers`` exists; the markers there then."""
    proc = subprocess.Popen(_command(module, argv), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    try:
        while not any(m.exists() for m in markers):
            assert proc.poll() is None, f"{module} ended ({proc.returncode}) before any video was finished"
            assert time.monotonic() < deadline, f"{module}: no video finished in {timeout_s} s"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return [m for m in markers if m.exists()]


def _stamp(folder: Path) -> dict[str, tuple[int, int]]:
    """(inode, modification time) of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _same_outputs(a: Path, b: Path, skip: tuple[str, ...] = ()) -> None:
    """Every file under ``a`` and ``b``: the same names and bytes, JSON files the same but for
    timing fields; the names under ``skip`` folders left out."""
    files_a = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    assert files_a == files_b
    for name in sorted(files_a):
        if name.startswith(skip):
            continue
        if name.endswith(".json"):
            assert _without_timing(json.loads((a / name).read_text())) == _without_timing(json.loads((b / name).read_text())), name
        elif name.endswith(".mp4"):
            assert (a / name).stat().st_size > 0 and (b / name).stat().st_size > 0
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_a_killed_sse_preprocess_resumes_without_redoing_the_finished_clip(clips, tmp_path):
    out = tmp_path / "out"
    argv = [*map(str, clips), "--out", str(out), "--no-progress"]
    finished = _kill_when("sse.faces.cli", argv, [out / c.stem / "manifest.json" for c in clips])
    assert 1 <= len(finished) < len(clips), "the kill came after every clip was done"
    kept = {m.parent.name: _stamp(m.parent) for m in finished}
    printed = _run("sse.faces.cli", argv)
    assert f"{len(finished)} already done" in printed
    for video, stamps in kept.items():
        assert _stamp(out / video) == stamps, f"{video} was redone"
    whole = tmp_path / "whole"
    _run("sse.faces.cli", [*map(str, clips), "--out", str(whole), "--no-progress"])
    _same_outputs(out, whole)


def test_a_killed_sse_predict_resumes_without_redoing_the_finished_clip(clips, tiny, tmp_path):
    out = tmp_path / "out"
    argv = [*map(str, clips), "--out", str(out), "--model", *tiny, "--no-progress"]
    finished = _kill_when("sse.predict.cli", argv, [out / c.stem / "summary.json" for c in clips])
    assert 1 <= len(finished) < len(clips), "the kill came after every clip was done"
    faces = _stamp(out / "faces")  # every clip's faces were done before any was scored
    assert {Path(name).parts[0] for name in faces if name.endswith("manifest.json")} == {c.stem for c in clips}
    kept = {m.parent.name: _stamp(m.parent) for m in finished}
    _run("sse.predict.cli", argv)
    manifests = {k: v for k, v in _stamp(out / "faces").items() if k.endswith("manifest.json")}
    assert manifests == {k: v for k, v in faces.items() if k.endswith("manifest.json")}, "faces were redone"
    for video, stamps in kept.items():
        assert _stamp(out / video) == stamps, f"{video} was scored again"
    whole = tmp_path / "whole"
    _run("sse.predict.cli", [*map(str, clips), "--out", str(whole), "--model", *tiny, "--no-progress"])
    _same_outputs(out, whole)
