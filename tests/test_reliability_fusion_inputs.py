"""Bad inputs of sse-fuse / sse-evaluate: files that are not UTF-8, .mat files cut short, matrices
with the wrong number of class columns; each is one line naming the file, exit code 1."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from sse.fusion.cli import evaluate_main, fuse_main
from sse.fusion.formats import write_predictions


def _last_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("which", ["predictions", "labels", "frame list", "video list"])
def test_file_that_is_not_utf8_is_one_line_naming_its_line(tmp_path, capsys, which):
    rng = np.random.default_rng(0)
    pred = tmp_path / "pred.txt"
    write_predictions(pred, rng.dirichlet(np.ones(7), size=3))
    labels = tmp_path / "labels.txt"
    labels.write_text("a Happy\nb Sad\nc Angry\n")
    videos = tmp_path / "videos.txt"
    videos.write_text("a\nb\nc\n")
    frames = tmp_path / "frames.txt"
    frames.write_text("f0 a\nf1 b\nf2 c\n")
    scipy.io.savemat(tmp_path / "feats.mat", {"feats": rng.dirichlet(np.ones(7), size=3)})
    bad = {"predictions": pred, "labels": labels, "frame list": frames, "video list": videos}[which]
    bad.write_bytes(bad.read_bytes().replace(b"\n", b"\n\xe9\xff ", 1))
    if which == "frame list":
        args = [str(tmp_path / "feats.mat"), "--frame-list", str(frames), "--video-list", str(videos),
                "--labels", str(labels)]
    else:
        args = [str(pred), "--video-list", str(videos), "--labels", str(labels)]
    offset = bad.read_bytes().index(b"\xe9")
    assert evaluate_main(args) == 1
    assert _last_error(capsys) == (f"sse-evaluate: error: {bad}:2: not UTF-8 text (byte 0xe9 at offset "
                                   f"{offset}); expected a text file")


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_mat_file_cut_short_is_one_line_naming_it(tmp_path, capsys, cut):
    full = tmp_path / "full.mat"
    scipy.io.savemat(full, {"feats": np.random.default_rng(0).dirichlet(np.ones(7), size=40)})
    data = full.read_bytes()
    short = tmp_path / "short.mat"
    short.write_bytes(data[: int(len(data) * cut)])
    (tmp_path / "frames.txt").write_text("".join(f"f{i} v{i % 4}\n" for i in range(40)))
    (tmp_path / "videos.txt").write_text("v0\nv1\nv2\nv3\n")
    assert fuse_main([str(short), "--frame-list", str(tmp_path / "frames.txt"), "--video-list",
                      str(tmp_path / "videos.txt"), "-o", str(tmp_path / "out.txt")]) == 1
    assert _last_error(capsys).startswith(f"sse-fuse: error: {short}: cannot read .mat")
    assert not (tmp_path / "out.txt").exists()


def test_matrix_with_three_columns_is_not_written_as_a_prediction(tmp_path, capsys):
    np.save(tmp_path / "feats.npy", np.random.default_rng(0).dirichlet(np.ones(3), size=6))
    (tmp_path / "frames.txt").write_text("".join(f"f{i} v{i % 2}\n" for i in range(6)))
    (tmp_path / "videos.txt").write_text("v0\nv1\n")
    assert fuse_main([str(tmp_path / "feats.npy"), "--frame-list", str(tmp_path / "frames.txt"),
                      "--video-list", str(tmp_path / "videos.txt"), "-o", str(tmp_path / "out.txt")]) == 1
    assert _last_error(capsys) == (f"sse-fuse: error: {tmp_path / 'feats.npy'}: 3 columns, expected 7 "
                                   "class scores per row (Angry Disgust Fear Happy Neutral Sad Surprise)")
    assert not (tmp_path / "out.txt").exists()
