"""Evaluation: metrics against a hand-computed case, the pictures, and the sse-evaluate command."""
import json

import numpy as np
import pytest
import scipy.io

from sse.fusion import evaluate, save_confusion_png, save_timeline_png
from sse.fusion.cli import evaluate_main
from sse.fusion.errors import FusionError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_metrics_match_hand_computation():
    labels = [0, 0, 0, 1, 1, 2]
    preds = [0, 0, 1, 1, 2, 2]
    result = evaluate(np.array(preds), labels, class_names=("a", "b", "c"))
    assert result.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert result.accuracy == pytest.approx(4 / 6)
    np.testing.assert_allclose(result.recall, [2 / 3, 1 / 2, 1])
    np.testing.assert_allclose(result.precision, [1, 1 / 2, 1 / 2])
    f1 = [2 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 / 1.5]
    np.testing.assert_allclose(result.f1, f1)
    assert result.macro_f1 == pytest.approx(np.mean(f1))


def test_scores_are_argmaxed_and_absent_classes_do_not_count_in_macro_f1():
    scores = np.eye(7)[[3, 3, 4]]
    result = evaluate(scores, [3, 3, 4])
    assert result.accuracy == 1.0 and result.macro_f1 == 1.0
    assert np.isnan(result.recall[0])
    table = result.table()
    assert "accuracy 1.0000" in table and "Angry" in table and "confusion matrix" in table


def test_bad_evaluation_input_is_rejected():
    with pytest.raises(FusionError, match="2 predictions for 3 labels"):
        evaluate(np.array([1, 2]), [1, 2, 3])
    with pytest.raises(FusionError, match="class index in 0..6"):
        evaluate(np.array([1, 2]), [1, 9])
    with pytest.raises(FusionError, match="NaN"):
        evaluate(np.full((2, 7), np.nan), [1, 2])


def test_confusion_and_timeline_pictures_are_pngs(tmp_path):
    rng = np.random.default_rng(0)
    result = evaluate(rng.dirichlet(np.ones(7), 50), rng.integers(0, 7, 50))
    save_confusion_png(result, tmp_path / "cm.png")
    save_timeline_png(rng.dirichlet(np.ones(7), 30), tmp_path / "t.png", title="clip")
    for name in ("cm.png", "t.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    with pytest.raises(FusionError, match="timeline needs"):
        save_timeline_png(np.ones((3, 5)), tmp_path / "bad.png")


def test_evaluate_command_writes_table_json_png_and_timelines(tmp_path, capsys):
    frames = np.array([[0.8, 0.2, 0, 0, 0, 0, 0],
                       [0.6, 0.4, 0, 0, 0, 0, 0],
                       [0, 0, 0, 0.9, 0.1, 0, 0],
                       [0, 0.7, 0, 0.3, 0, 0, 0]])
    scipy.io.savemat(tmp_path / "f.mat", {"feats": frames})
    (tmp_path / "frames.txt").write_text("a/0 a.avi\na/1 a.avi\nb/0 b.avi\nc/0 c.avi\n")
    (tmp_path / "videos.txt").write_text("a.avi\nb.avi\nc.avi\n")
    (tmp_path / "labels.txt").write_text("c.avi Happy\na.avi Angry\nb.avi happiness\n")
    argv = [str(tmp_path / "f.mat"), "--frame-list", str(tmp_path / "frames.txt"),
            "--video-list", str(tmp_path / "videos.txt"), "--labels", str(tmp_path / "labels.txt"),
            "--json", str(tmp_path / "s.json"), "--png", str(tmp_path / "cm.png"),
            "--timelines", str(tmp_path / "tl")]
    assert evaluate_main(argv) == 0
    assert "videos 3  accuracy 0.6667" in capsys.readouterr().out
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["confusion"][3][1] == 1 and scores["recall"][0] == 1.0
    assert (tmp_path / "cm.png").read_bytes().startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in (tmp_path / "tl").iterdir()) == ["a.png", "b.png", "c.png"]


def test_evaluate_command_needs_labels_for_scores(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("0.5 0.5 0 0 0 0 0\n")
    assert evaluate_main([str(tmp_path / "p.txt"), "--png", str(tmp_path / "x.png")]) == 1
    assert "sse-evaluate: error: --png and --json need --labels" in capsys.readouterr().err
