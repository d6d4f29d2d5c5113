"""sse-fuse: reproduces an EmotiW ensemble, fits and searches weights, aggregates frames, and reports
bad input in one line without a traceback."""
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from sse.fusion.cli import evaluate_main, fuse_main
from sse.fusion.evaluate import _timeline_axis
from sse.fusion.formats import read_frame_list, read_predictions, write_predictions

from conftest import SUBMISSION

WEIGHTS = np.array([1, 1, 1, 4, 7]) / 14


def _make_submission(folder: Path, videos: int = 120) -> list[Path]:
    """Five model files (model 4 holds scores in (-1, 1), not probabilities) and the ensemble made
    from the unrounded values, all written in the EmotiW format."""
    rng = np.random.default_rng(7)
    models = [rng.dirichlet(np.full(7, 0.4), size=videos) for _ in range(5)]
    models[3] = rng.uniform(-0.3, 0.3, size=(videos, 7)) + models[3] / 2
    paths = []
    for i, m in enumerate(models, start=1):
        paths.append(folder / f"{i}_model_predictions.txt")
        write_predictions(paths[-1], m)
    write_predictions(folder / "ensemble_model_predictions.txt", np.tensordot(WEIGHTS, np.stack(models), axes=1))
    (folder / "videos.txt").write_text("".join(f"{i:09d}.avi\n" for i in range(videos)))
    return paths


def test_fusion_command_reproduces_the_ensemble_file_to_1e_5(tmp_path, capsys):
    paths = _make_submission(tmp_path)
    out = tmp_path / "fused.txt"
    argv = [str(p) for p in paths] + ["--weights", "1,1,1,4,7", "--scores", "4", "--strict",
                                      "--video-list", str(tmp_path / "videos.txt"), "-o", str(out)]
    assert fuse_main(argv) == 0
    expected = read_predictions(tmp_path / "ensemble_model_predictions.txt")
    assert np.abs(read_predictions(out) - expected).max() <= 1e-5 + 1e-12


def test_real_emotiw2017_ensemble_is_rebuilt_from_its_five_models(tmp_path):
    models = sorted(str(p) for p in SUBMISSION.glob("[1-5]_*_predictions.txt"))
    out = tmp_path / "ensemble.txt"
    assert fuse_main(models + ["--weights", "1/14,1/14,1/14,4/14,7/14", "--scores", "4", "--strict",
                               "--video-list", str(SUBMISSION / "test_video_list_emotiw2017.txt"),
                               "-o", str(out)]) == 0
    expected = read_predictions(SUBMISSION / "ensemble_model_predictions.txt")
    fused = read_predictions(out)
    assert np.abs(fused - expected).max() <= 1e-5 + 1e-12
    assert (fused.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_fit_mode_reports_weights_and_residual(tmp_path, capsys):
    paths = _make_submission(tmp_path)
    saved = tmp_path / "w.txt"
    assert fuse_main([str(p) for p in paths] + ["--fit", str(tmp_path / "ensemble_model_predictions.txt"),
                                                "--save-weights", str(saved)]) == 0
    report = capsys.readouterr().out
    assert "residual" in report and "1/14" in report and "1/2" in report
    np.testing.assert_allclose(np.loadtxt(saved), WEIGHTS, atol=1e-4)


def test_search_mode_reports_candidates_and_writes_chosen_fusion(tmp_path, capsys):
    paths = _make_submission(tmp_path, videos=60)
    ensemble = read_predictions(tmp_path / "ensemble_model_predictions.txt")
    (tmp_path / "labels.txt").write_text("".join(f"{i:09d}.avi {int(c)}\n" for i, c in enumerate(ensemble.argmax(1))))
    out = tmp_path / "val.txt"
    argv = [str(p) for p in paths[:3]] + ["--search", "--step", "0.25", "--labels", str(tmp_path / "labels.txt"),
                                          "--video-list", str(tmp_path / "videos.txt"), "-o", str(out)]
    assert fuse_main(argv) == 0
    report = capsys.readouterr().out
    assert "searched 15 weight vectors (grid step 0.25)" in report
    assert "chosen weights" in report and "leave-one-out" in report
    assert read_predictions(out).shape == (60, 7)


def test_frames_are_aggregated_from_a_mat_file_and_frame_list(tmp_path):
    frames = np.array([[0.7, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0],
                       [0.1, 0.1, 0.1, 0.1, 0.6, 0.0, 0.0],
                       [0.5, 0.3, 0.1, 0.1, 0.0, 0.0, 0.0]])
    scipy.io.savemat(tmp_path / "features.mat", {"feats": frames})
    (tmp_path / "frames.txt").write_text("v1/0.png v1.avi\nv2/0.png v2.avi\nv1/1.png v1.avi\n")
    (tmp_path / "videos.txt").write_text("v2.avi\nv1.avi\n")
    out = tmp_path / "p.txt"
    assert fuse_main([str(tmp_path / "features.mat"), "--frame-list", str(tmp_path / "frames.txt"),
                      "--video-list", str(tmp_path / "videos.txt"), "-o", str(out)]) == 0
    np.testing.assert_allclose(read_predictions(out), [frames[1], (frames[0] + frames[2]) / 2])


def test_frames_csv_alone_orders_videos_by_first_appearance_and_timelines_use_source_frames(tmp_path):
    frames = np.array([[0.7, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0],
                       [0.1, 0.1, 0.1, 0.1, 0.6, 0.0, 0.0],
                       [0.5, 0.3, 0.1, 0.1, 0.0, 0.0, 0.0]])
    scipy.io.savemat(tmp_path / "features.mat", {"feats": frames})
    (tmp_path / "frames.csv").write_text("crop,video,frame,label,status\nb/000040.png,b,40,-1,detected\n"
                                         "a/000007.png,a,7,-1,tracked\nb/000052.png,b,52,-1,detected\n")
    out = tmp_path / "p.txt"
    assert fuse_main([str(tmp_path / "features.mat"), "--frame-list", str(tmp_path / "frames.csv"), "-o", str(out)]) == 0
    np.testing.assert_allclose(read_predictions(out), [(frames[0] + frames[2]) / 2, frames[1]])
    assert read_frame_list(tmp_path / "frames.csv").indices == (40, 7, 52)
    x, lines = _timeline_axis(frames[[0, 2]], [40, 52], None)
    assert x[0] == 40 and x[-1] == 52 and len(x) == 13
    np.testing.assert_array_equal(lines[[0, 12]], frames[[0, 2]])
    assert np.isnan(lines[1:12]).all()
    assert evaluate_main([str(tmp_path / "features.mat"), "--frame-list", str(tmp_path / "frames.csv"),
                          "--timelines", str(tmp_path / "t")]) == 0
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["a.png", "b.png"]


def test_bad_input_prints_one_line_error_and_exits_1(tmp_path, capsys):
    paths = _make_submission(tmp_path, videos=10)
    lines = paths[0].read_text().splitlines()
    paths[0].write_text("\n".join(lines[:9]) + "\n")
    assert fuse_main([str(p) for p in paths[:2]] + ["-o", str(tmp_path / "x.txt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sse-fuse: error: 2_model_predictions.txt has 10 rows but 1_model_predictions.txt has 9")
    assert "Traceback" not in err and not (tmp_path / "x.txt").exists()
    assert fuse_main([str(p) for p in paths[1:3]] + ["--weights", "1,-1", "-o", str(tmp_path / "x.txt")]) == 1
    assert "must not be negative" in capsys.readouterr().err
    assert fuse_main([str(p) for p in paths[1:3]] + ["--weights", "0,0", "-o", str(tmp_path / "x.txt")]) == 1
    assert "sum to a positive number" in capsys.readouterr().err


def test_non_distribution_warns_and_strict_fails(tmp_path, capsys):
    paths = _make_submission(tmp_path, videos=10)
    assert fuse_main([str(paths[0]), str(paths[3]), "-o", str(tmp_path / "x.txt")]) == 0
    assert "warning: 4_model_predictions.txt:" in capsys.readouterr().err
    assert fuse_main([str(paths[0]), str(paths[3]), "--strict", "-o", str(tmp_path / "y.txt")]) == 1
    assert "not probability distributions" in capsys.readouterr().err


def test_traceback_flag_shows_the_exception(tmp_path, capsys):
    assert fuse_main([str(tmp_path / "absent.txt"), "-o", str(tmp_path / "x.txt"), "--traceback"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "FusionError" in err


def test_traceback_environment_variable_shows_the_exception(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SSE_TRACEBACK", "1")
    assert fuse_main([str(tmp_path / "absent.txt"), "-o", str(tmp_path / "x.txt")]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        fuse_main(["--help"])
    assert exit_info.value.code == 0
    assert "--fit ensemble_model_predictions.txt" in capsys.readouterr().out
