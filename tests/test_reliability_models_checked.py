"""Models, ensembles and options are checked when they are given, not after the face pipeline has
read every video (issue 20):

* an ensemble weight that is negative, NaN or all weights zero is refused naming the file (sse-fuse
  refuses a negative --weights too);
* a model.json whose input is not the net's, class names that are not the seven classes, an output
  of another size: a ModelError at load, and sse-predict stops in one line before any video is read;
* --batch 0 or negative and --jobs 0 are one-line errors (no silent fix);
* sse.shipped scores only uint8 pixels: floats in 0..1, 16-bit images and NaN are refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

import caffe
from sse.faces.batch import run_batch
from sse.faces.cli import main as preprocess
from sse.faces.pipeline import PipelineConfig
from sse.fusion.cli import fuse_main
from sse.predict.cli import main as predict
from sse.shipped import Ensemble, EmotionModel, ModelError, load
from test_predict_cli import media  # noqa: F401 (fixture)
from test_shipped_models_api import DEPLOY, _model_dir

PHOTO = "face_recognition_two_people.jpg"


def _ensemble(tmp_path, weights):
    for name in ("m1", "m2"):
        if not (tmp_path / name).exists():
            _model_dir(tmp_path / name, len(name))
    path = tmp_path / "ens.json"
    path.write_text(json.dumps({"members": [{"model": m, "weight": w} for m, w in zip(("m1", "m2"), weights)]}))
    return path


@pytest.mark.parametrize("weights, says", [((1.0, -0.5), "non-negative"), ((1.0, float("nan")), "finite"),
                                           ((0, 0), "all zero")])
def test_bad_ensemble_weights_are_refused_naming_the_file(tmp_path, weights, says):
    path = _ensemble(tmp_path, weights)
    with pytest.raises(ModelError, match=f"ens.json.*{says}"):
        load(path)
    with pytest.raises(ModelError, match=says):
        Ensemble([EmotionModel.from_dir(tmp_path / "m1")] * 2, list(weights))


def test_sse_fuse_refuses_a_negative_weight(tmp_path, capsys):
    rows = np.full((3, 7), 1 / 7)
    paths = []
    for i in (1, 2):
        paths.append(tmp_path / f"m{i}.txt")
        paths[-1].write_text("".join(" ".join(f"{v:.5f}" for v in r) + "\n" for r in rows))
    assert fuse_main([*map(str, paths), "--weights", "2,-1", "-o", str(tmp_path / "f.txt")]) == 1
    assert "negative" in capsys.readouterr().err
    assert not (tmp_path / "f.txt").exists()


@pytest.mark.parametrize("option, says", [(["--samples", "0"], "--samples must be at least 1"),
                                          (["--step", "0"], "--step must be one number"),
                                          (["--top", "-1"], "--top must not be negative")])
def test_sse_fuse_refuses_bad_search_options_in_one_line(tmp_path, capsys, option, says):
    rows = np.random.default_rng(0).dirichlet(np.ones(7), size=4)
    paths = []
    for i in (1, 2):
        paths.append(tmp_path / f"m{i}.txt")
        np.savetxt(paths[-1], rows, fmt="%.5f")
    (tmp_path / "labels.txt").write_text("".join(f"v{i} {i}\n" for i in range(4)))
    (tmp_path / "videos.txt").write_text("".join(f"v{i}\n" for i in range(4)))
    assert fuse_main([*map(str, paths), "--video-list", str(tmp_path / "videos.txt"), "--labels",
                      str(tmp_path / "labels.txt"), "--search", *option]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"sse-fuse: error: {says}")


def _set_json(folder, **changes):
    meta = json.loads((folder / "model.json").read_text())
    meta.update(changes)
    (folder / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("change, says", [({"input_size": 16}, "takes 1 x 12 x 12"),
                                          ({"channels": 3}, "takes 1 x 12 x 12"),
                                          ({"classes": ["Angry"] * 7}, "classes"),
                                          ({"classes": ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad"]},
                                           "classes"),
                                          ({"mean_value": [1, 2]}, "mean_value")])
def test_a_model_json_that_does_not_fit_its_net_is_refused_at_load(tmp_path, change, says):
    folder = _model_dir(tmp_path / "m", 3)
    _set_json(folder, **change)
    with pytest.raises(ModelError, match=f"model.json.*{says}"):
        load(folder)


def test_a_net_with_another_number_of_outputs_is_refused_at_load(tmp_path):
    folder = _model_dir(tmp_path / "m", 3)
    (folder / "deploy.prototxt").write_text(DEPLOY.replace("num_output: 7", "num_output: 6"))
    caffe.Net(str(folder / "deploy.prototxt"), caffe.TEST).save(str(folder / "model.caffemodel"))
    with pytest.raises(ModelError, match="6 values per face but 7 classes"):
        load(folder)


@pytest.mark.parametrize("problem", ["input_size", "classes", "weight"])
def test_sse_predict_stops_on_a_bad_model_before_reading_any_video(media, tmp_path, capsys, problem):  # noqa: F811
    folder = _model_dir(tmp_path / "m", 4)
    model = folder
    if problem == "input_size":
        _set_json(folder, input_size=48)
    elif problem == "classes":
        _set_json(folder, classes=["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Sadness"])
    else:
        model = _ensemble(tmp_path, (1, -1))
    out = tmp_path / "out"
    assert predict([str(media / "photos" / PHOTO), "--out", str(out), "--model", str(model), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sse-predict: error: ")
    assert ("model.json" if problem != "weight" else "ens.json") in err[0]
    assert not (out / "faces").exists()


@pytest.mark.parametrize("flag, value", [("--batch", "0"), ("--batch", "-3"), ("--jobs", "0"), ("--jobs", "-1")])
def test_sse_predict_refuses_bad_batch_and_jobs_in_one_line(media, tmp_path, capsys, flag, value):  # noqa: F811
    folder = _model_dir(tmp_path / "m", 5)
    out = tmp_path / "out"
    assert predict([str(media / "photos" / PHOTO), "--out", str(out), "--model", str(folder), flag, value]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sse-predict: error: {flag} must be at least 1, got {value}"]
    assert not out.exists()


@pytest.mark.parametrize("flag, value", [("--jobs", "0"), ("--jobs", "-2"), ("--upsample", "-1")])
def test_sse_preprocess_refuses_bad_jobs_in_one_line(media, tmp_path, capsys, flag, value):  # noqa: F811
    out = tmp_path / "out"
    assert preprocess([str(media / "photos" / PHOTO), "--out", str(out), flag, value]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and value in err[0]
    assert not out.exists()
    with pytest.raises(ValueError, match="worker processes"):
        run_batch([], out, PipelineConfig(), workers=0)


def test_a_batch_of_zero_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="batch must be a positive integer"):
        EmotionModel.from_dir(_model_dir(tmp_path / "m", 6), batch=0)


@pytest.mark.parametrize("faces, says", [
    (np.random.default_rng(0).random((2, 12, 12)), "float64"),
    (np.random.default_rng(0).random((2, 12, 12)).astype(np.float32) * 255, "float32"),
    (np.full((2, 12, 12), np.nan, np.float32), "float32"),
    (np.random.default_rng(0).integers(0, 65536, (2, 12, 12)).astype(np.uint16), "16-bit"),
    (np.ones((2, 12, 12), bool), "bool")])
def test_probs_refuses_what_is_not_uint8_pixels(tmp_path, faces, says):
    folder = _model_dir(tmp_path / "m", 7)
    model = load(folder)
    with pytest.raises(ModelError, match=f"uint8.*{says}"):
        model.probs(faces)
    for tta in ("mirror", "tencrop"):
        with pytest.raises(ModelError, match="uint8"):
            model.probs(faces, tta)
    with pytest.raises(ModelError, match="uint8"):
        Ensemble([model, model], [1, 1]).probs(faces)
    landmarks = np.tile(np.linspace(20, 80, 136).reshape(68, 2), (2, 1, 1))
    with pytest.raises(ModelError, match="image 0 must be uint8"):
        model.probs_at([np.zeros((100, 100), faces.dtype)] * 2, landmarks)
    assert model.probs(np.zeros((2, 12, 12), np.uint8)).shape == (2, 7)
