"""sse-predict and sse-preprocess never answer from stale outputs, never read their own outputs back,
never delete a user's file, and keep FFmpeg's own messages off the terminal (issue 20):

* a finished video is keyed by its source (path, size, time): another folder's x.jpg, or x.jpg
  changed in place, is redone, not reported with the old picture's people;
* an --out inside an input folder is not read as input on the next run (and --out equal to an
  input folder is refused);
* redoing a video removes only what the tools wrote into its folders;
* a broken video gives the tool's one-line report, without FFmpeg's "moov atom not found"."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from sse.faces.cli import main as preprocess
from sse.predict.cli import main as predict
from test_predict_cli import media, tiny  # noqa: F401 (fixtures)

TWO = "face_recognition_two_people.jpg"
OTHER = "dlib_bald_guys.jpg"


def _people(summary_path: Path) -> list:
    return [(p["person"], p["frames"], p["dominant"]) for p in json.loads(summary_path.read_text())["people"]]


def _run(inputs, out, tiny, *extra):  # noqa: F811
    return predict([*map(str, inputs), "--out", str(out), "--model", *map(str, tiny), "--no-progress", *extra])


def test_another_folders_photo_of_the_same_id_is_not_answered_from_the_first(media, tiny, tmp_path):  # noqa: F811
    for folder, name in (("a", TWO), ("b", OTHER)):
        (tmp_path / folder).mkdir()
        shutil.copy(media / "photos" / name, tmp_path / folder / "x.jpg")
    out = tmp_path / "out"
    assert _run([tmp_path / "a" / "x.jpg"], out, tiny) == 0
    first = _people(out / "x" / "summary.json")
    assert _run([tmp_path / "b" / "x.jpg"], out, tiny) == 0
    summary = json.loads((out / "x" / "summary.json").read_text())
    assert summary["source"] == str(tmp_path / "b" / "x.jpg")
    assert json.loads((out / "faces" / "x" / "manifest.json").read_text())["source"] == str(tmp_path / "b" / "x.jpg")
    assert _run([tmp_path / "b" / "x.jpg"], tmp_path / "fresh", tiny) == 0
    assert _people(out / "x" / "summary.json") == _people(tmp_path / "fresh" / "x" / "summary.json") != first
    run = json.loads((out / "summary.json").read_text())
    assert [v["source"] for v in run["videos"]] == [str(tmp_path / "b" / "x.jpg")]


def test_a_photo_changed_in_place_is_redone_and_stale_files_go(media, tiny, tmp_path):  # noqa: F811
    photo = tmp_path / "in" / "x.jpg"
    photo.parent.mkdir()
    shutil.copy(media / "photos" / TWO, photo)
    out = tmp_path / "out"
    assert _run([photo], out, tiny, "--annotate") == 0
    assert (out / "x" / "annotated.png").exists()
    (out / "x" / "timeline_p9.png").write_bytes(b"an earlier run's person 9")
    (out / "x" / "my notes.txt").write_text("mine")
    shutil.copy(media / "photos" / OTHER, photo)
    assert _run([photo], out, tiny) == 0
    shutil.copy(photo, tmp_path / "fresh.jpg")
    assert _run([tmp_path / "fresh.jpg"], tmp_path / "fresh", tiny) == 0
    assert _people(out / "x" / "summary.json") == _people(tmp_path / "fresh" / "fresh" / "summary.json")
    assert not (out / "x" / "annotated.png").exists() and not (out / "x" / "timeline_p9.png").exists()
    assert (out / "x" / "my notes.txt").read_text() == "mine"
    done = (out / "x" / "summary.json").stat().st_mtime_ns
    assert _run([photo], out, tiny) == 0
    assert (out / "x" / "summary.json").stat().st_mtime_ns == done  # unchanged source: skipped


def test_preprocess_redoes_another_source_of_the_same_id(media, tmp_path):
    for folder, name in (("a", TWO), ("b", OTHER)):
        (tmp_path / folder).mkdir()
        shutil.copy(media / "photos" / name, tmp_path / folder / "x.jpg")
    out = tmp_path / "out"
    assert preprocess([str(tmp_path / "a" / "x.jpg"), "--out", str(out), "--no-progress"]) == 0
    assert preprocess([str(tmp_path / "b" / "x.jpg"), "--out", str(out), "--no-progress"]) == 0
    manifest = json.loads((out / "x" / "manifest.json").read_text())
    assert manifest["source"] == str(tmp_path / "b" / "x.jpg")
    assert manifest["source_key"]["size"] == (tmp_path / "b" / "x.jpg").stat().st_size


def test_an_out_inside_the_input_folder_is_not_read_back(media, tiny, tmp_path, capsys):  # noqa: F811
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in (TWO, OTHER):
        shutil.copy(media / "photos" / name, photos / name)
    out = photos / "emotions"
    for _ in range(2):
        assert _run([photos], out, tiny) == 0
        run = json.loads((out / "summary.json").read_text())
        assert sorted(v["video"] for v in run["videos"]) == ["photos/dlib_bald_guys",
                                                             "photos/face_recognition_two_people"]
        assert run["failures"] == []
    capsys.readouterr()
    shutil.rmtree(out)
    faces = photos / "crops"
    for _ in range(2):
        assert preprocess([str(photos), "--out", str(faces), "--no-progress", "--faces", "all"]) == 0
        assert "videos: 2 " in capsys.readouterr().out
    assert sorted(p.parent.name for p in faces.rglob("manifest.json")) == ["dlib_bald_guys",
                                                                          "face_recognition_two_people"]


def test_out_equal_to_an_input_folder_is_refused(media, tiny, tmp_path, capsys):  # noqa: F811
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(media / "photos" / TWO, photos / TWO)
    assert preprocess([str(photos), "--out", str(photos), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "is the output folder" in err and len(err.strip().splitlines()) == 1
    assert not (photos / "photos").exists()
    assert _run([photos], photos, tiny) == 1
    assert "is the output folder" in capsys.readouterr().out


def test_redoing_a_video_keeps_the_users_files_in_its_faces_folder(media, tmp_path):
    photo = media / "photos" / TWO
    out = tmp_path / "out"
    assert preprocess([str(photo), "--out", str(out), "--no-progress", "--faces", "all"]) == 0
    folder = out / photo.stem
    (folder / "notes.txt").write_text("mine")
    (folder / "p1" / "best.jpg").write_bytes(b"mine too")
    (folder / "edits").mkdir()
    (folder / "edits" / "000000.png").write_bytes(b"and this")
    assert preprocess([str(photo), "--out", str(out), "--no-progress", "--faces", "all", "--size", "64"]) == 0
    assert (folder / "notes.txt").read_text() == "mine"
    assert (folder / "p1" / "best.jpg").read_bytes() == b"mine too"
    assert (folder / "edits" / "000000.png").read_bytes() == b"and this"
    manifest = json.loads((folder / "manifest.json").read_text())
    listed = {f["crop"] for f in manifest["frames"] if f.get("crop")}
    assert {p.relative_to(folder).as_posix() for p in folder.glob("p*/*.png")} == listed
    (folder / "manifest.json").unlink()  # a half-done folder: crops without a manifest
    assert preprocess([str(photo), "--out", str(out), "--no-progress", "--faces", "all"]) == 0
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "p1" / "best.jpg").exists()


@pytest.mark.parametrize("tool", ["sse-preprocess", "sse-predict"])
def test_a_broken_video_is_one_line_without_ffmpegs_own_message(media, tiny, tmp_path, tool):  # noqa: F811
    broken = tmp_path / "broken.mp4"
    broken.write_bytes((media / "videos" / "facenet_pytorch_video.mp4").read_bytes()[5000:20000])
    module = {"sse-preprocess": "sse.faces", "sse-predict": "sse.predict.cli"}[tool]
    extra = ["--model", *map(str, tiny)] if tool == "sse-predict" else []
    env = {k: v for k, v in os.environ.items() if k not in ("OPENCV_FFMPEG_LOGLEVEL", "OPENCV_FFMPEG_DEBUG")}
    proc = subprocess.run([sys.executable, "-m", module, str(broken), "--out", str(tmp_path / "out"),
                           "--no-progress", *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert "unreadable" in proc.stdout and str(broken) in proc.stdout
    assert "moov atom" not in proc.stderr and "@ 0x" not in proc.stderr, proc.stderr
