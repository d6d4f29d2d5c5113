"""The sse-preprocess command line: outputs, labels, failures that do not stop a batch, resume."""

import csv
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from sse.faces.cli import main
from sse.faces.decode import MediaReader
from sse.faces.errors import ModelNotFoundError, UnreadableMediaError
from sse.faces.landmarks import find_model_file

from conftest import DATA, REPO, needs_shared_data, shared_data

VIDEOS = DATA / "media" / "videos"
GIF = VIDEOS / "elon-musk-smoke.gif"
needs_videos = needs_shared_data("media", "videos")


def write_faceless_video(path, frames=12):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """An AFEW-like tree with a good clip, a faceless clip, a truncated and a garbage file."""
    shared_data("media", "videos")
    root = tmp_path_factory.mktemp("afew")
    happy, sad, fear = root / "Train" / "Happy", root / "Train" / "sad", root / "Train" / "Fear"
    for folder in (happy, sad, fear):
        folder.mkdir(parents=True)
    shutil.copy(GIF, happy / "talk.gif")
    write_faceless_video(sad / "empty.avi")
    data = (VIDEOS / "short_hamilton_clip.mp4").read_bytes()
    (fear / "cut.mp4").write_bytes(data[: len(data) // 2])
    (fear / "garbage.avi").write_bytes(b"not a video" * 100)
    out = root / "out"
    code = main([str(root / "Train"), "--out", str(out), "--no-progress", "--gray", "--jobs", "2"])
    return root, out, code


def manifest(out, video):
    return json.loads((out / video / "manifest.json").read_text())


def test_batch_finishes_and_reports_each_video_status(batch):
    _, out, code = batch
    assert code == 0
    assert manifest(out, "Train/Happy/talk")["status"] == "ok"
    assert manifest(out, "Train/sad/empty")["status"] == "no_face"
    assert manifest(out, "Train/Fear/cut")["status"] == "unreadable"
    assert manifest(out, "Train/Fear/garbage")["status"] == "unreadable"


def test_manifest_frames_hold_index_status_box_landmarks_pose(batch):
    _, out, _ = batch
    frames = manifest(out, "Train/Happy/talk")["frames"]
    assert [f["index"] for f in frames] == list(range(35))
    assert {f["status"] for f in frames} <= {"detected", "tracked", "interpolated", "none"}
    first = frames[0]
    assert len(first["box"]) == 4 and len(first["landmarks"]) == 68 and "yaw" in first["pose"]
    crop = cv2.imread(str(out / "Train/Happy/talk" / first["crop"]), cv2.IMREAD_UNCHANGED)
    assert crop.shape == (128, 128)
    assert (out / "Train/Happy/talk/contact_sheet.png").is_file()
    faceless = manifest(out, "Train/sad/empty")
    assert [f["status"] for f in faceless["frames"]] == ["none"] * 12


def test_list_files_use_the_folder_labels_in_sse_order(batch):
    _, out, _ = batch
    lines = (out / "list.txt").read_text().splitlines()
    assert len(lines) == 35
    assert all(line.startswith("Train/Happy/talk/") and line.endswith(" 3") for line in lines)
    for line in lines:
        assert (out / line.rsplit(" ", 1)[0]).is_file()
    with open(out / "frames.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["crop"] for r in rows] == [line.rsplit(" ", 1)[0] for line in lines]
    assert rows[7]["video"] == "Train/Happy/talk" and rows[7]["frame"] == "7" and rows[7]["label"] == "3"


def test_rerun_skips_finished_videos_and_redoes_half_written_ones(batch, capsys):
    root, out, _ = batch
    (out / "Train/Happy/talk/manifest.json").unlink()
    stale = out / "Train/sad/empty" / "999999.png"
    assert main([str(root / "Train"), "--out", str(out), "--no-progress", "--gray"]) == 0
    assert "3 already done" in capsys.readouterr().out
    assert manifest(out, "Train/Happy/talk")["status"] == "ok"
    assert not stale.exists()


@needs_videos
def test_label_csv_overrides_folder_names(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("video,label\nelon-musk-smoke,Surprise\n")
    out = tmp_path / "out"
    assert main([str(GIF), "--out", str(out), "--no-progress", "--label-csv", str(labels), "--stride", "5"]) == 0
    assert (out / "list.txt").read_text().splitlines()[0] == "elon-musk-smoke/000000.png 6"


@needs_videos
def test_frontalize_writes_colour_crops(tmp_path):
    out = tmp_path / "out"
    assert main([str(GIF), "--out", str(out), "--no-progress", "--frontalize", "--stride", "10"]) == 0
    assert cv2.imread(str(out / "elon-musk-smoke" / "000000.png"), cv2.IMREAD_UNCHANGED).shape == (128, 128, 3)


def test_missing_input_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope.avi"), "--out", str(tmp_path / "out")]) == 1
    assert "input not found" in capsys.readouterr().err


@needs_videos
def test_missing_landmarks_model_says_how_to_install(tmp_path, capsys):
    assert main([str(GIF), "--out", str(tmp_path / "o"), "--landmarks-model", str(tmp_path / "x.dat")]) == 1
    assert "model file not found" in capsys.readouterr().err
    with pytest.raises(ModelNotFoundError, match="pip install face_recognition_models"):
        find_model_file("no_such_model.dat")


@needs_videos
def test_complete_video_decodes_every_frame():
    reader = MediaReader(VIDEOS / "short_hamilton_clip.mp4", stride=2)
    assert [f.index for f in reader.frames()] == list(range(0, 275, 2))
    reader.check_complete()
    assert reader.backend == "opencv"


def test_truncated_avi_is_unreadable_after_its_frames(tmp_path):
    write_faceless_video(tmp_path / "full.avi", frames=30)
    data = (tmp_path / "full.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: int(len(data) * 0.6)])
    reader = MediaReader(tmp_path / "cut.avi")
    assert 0 < sum(1 for _ in reader.frames()) < 30
    with pytest.raises(UnreadableMediaError, match="truncated"):
        reader.check_complete()


def test_file_that_is_not_a_video_is_unreadable(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(UnreadableMediaError):
        list(MediaReader(tmp_path / "x.mp4").frames())


@needs_videos
def test_pyav_fallback_decodes_the_gif():
    pytest.importorskip("av")
    reader = MediaReader(GIF, stride=5)
    frames = list(reader._pyav_frames())
    assert [f.index for f in frames] == list(range(0, 35, 5))
    assert frames[0].image.shape == (272, 480, 3)


@needs_videos
def test_python_dash_m_runs_the_cli(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sse.faces", str(GIF), "--out", str(tmp_path / "o"), "--stride", "7", "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "videos: 1 (ok 1" in result.stdout


def test_frames_csv_is_read_by_the_fusion_step(batch):
    formats = pytest.importorskip("sse.fusion.formats")
    _, out, _ = batch
    frame_list = formats.read_frame_list(out / "frames.csv")
    assert len(frame_list.frames) == 35
    assert set(frame_list.videos) == {"Train/Happy/talk"}
    assert formats.video_key(frame_list.videos[0]) == "talk"


def test_ctrl_c_ends_with_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    from sse.faces import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_batch", interrupted)
    monkeypatch.delenv("SSE_TRACEBACK", raising=False)
    clip = tmp_path / "a.avi"
    clip.write_bytes(b"x")
    assert cli.main([str(clip), "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "sse-preprocess: interrupted"
