"""sse-predict on real media with a tiny randomly initialised deploy net (no accuracy claim): the
CSV holds what a hand-made forward of the net gives on every crop, per person and source frame; the
summaries, timelines, sheet and annotations are written; unusable inputs are named and the batch goes
on; a rerun redoes only what is unfinished; the shipped models are the default."""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import caffe
from caffe.model_io import array_to_blobproto, write_binary
from conftest import DATA
from sse.classes import CLASS_NAMES
from sse.predict.cli import main
from sse.predict.models import load_scorers, primary
from sse.shipped import Ensemble, ModelError

MEDIA = DATA / "media"
SIZE = 24
DEPLOY = f"""name: "tiny"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 1 dim: {SIZE} dim: {SIZE} }} }} }}
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param {{ num_output: 4 kernel_size: 3 stride: 2 weight_filler {{ type: "gaussian" std: 0.01 }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "conv" top: "conv" }}
layer {{ name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
  inner_product_param {{ num_output: 7 weight_filler {{ type: "gaussian" std: 0.01 }} }} }}
layer {{ name: "prob" type: "Softmax" bottom: "fc" top: "prob" }}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path, Path]:
    """deploy.prototxt, random weights and a 28x28 mean image (centre-cropped to the 24x24 input)."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "deploy.prototxt").write_text(DEPLOY)
    caffe.set_random_seed(5)
    caffe.Net(str(root / "deploy.prototxt"), caffe.TEST).save(str(root / "tiny.caffemodel"))
    mean = np.random.default_rng(0).uniform(90, 140, size=(1, 1, SIZE + 4, SIZE + 4)).astype(np.float32)
    write_binary(array_to_blobproto(mean), root / "mean.binaryproto")
    return root / "deploy.prototxt", root / "tiny.caffemodel", root / "mean.binaryproto"


@pytest.fixture(scope="module")
def media() -> Path:
    if not MEDIA.is_dir():
        pytest.skip(f"real media not found at {MEDIA}")
    return MEDIA


def _hand_forward(tiny, crops: list[np.ndarray]) -> np.ndarray:
    deploy, weights, mean_path = tiny
    net = caffe.Net(str(deploy), caffe.TEST, weights=str(weights))
    mean = caffe.io.blobproto_to_array(caffe.io.caffe_pb2.BlobProto.FromString(mean_path.read_bytes()))[0]
    mean = mean[:, 2:2 + SIZE, 2:2 + SIZE]
    rows = []
    for crop in crops:
        small = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        x = gray.astype(np.float32)[None] - mean
        net.blobs["data"].data[...] = x[None]
        rows.append(net.forward()["prob"].reshape(-1).copy())
    return np.array(rows)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_gif_photo_and_bad_inputs_give_checked_predictions_and_resume(media, tiny, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    photo = media / "photos" / "face_recognition_two_people.jpg"
    gif = media / "videos" / "elon-musk-smoke.gif"
    out = tmp_path / "out"
    argv = [str(gif), str(photo), str(bad), str(tmp_path / "missing.mp4"), "--out", str(out),
            "--model", *map(str, tiny), "--annotate", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "not used: " + str(bad) in printed and "unreadable" in printed
    assert "missing.mp4: refused: input not found" in printed
    run = json.loads((out / "summary.json").read_text())
    assert {f["status"] for f in run["failures"]} == {"refused", "unreadable"}

    rows = _rows(out / "predictions.csv")
    assert list(rows[0]) == ["source", "video", "person", "frame", "time", "left", "top", "right", "bottom",
                             "status", "model", *CLASS_NAMES, "predicted"]
    manifest = json.loads((out / "faces" / "elon-musk-smoke" / "manifest.json").read_text())
    crops = {(e.get("person") or 1, e["index"]): e for e in manifest["frames"] if e.get("crop")}
    gif_rows = [r for r in rows if r["video"] == "elon-musk-smoke"]
    assert len(gif_rows) == len(crops) > 10
    images = [cv2.imread(str(out / "faces" / "elon-musk-smoke" / crops[int(r["person"]), int(r["frame"])]["crop"]),
                         cv2.IMREAD_UNCHANGED) for r in gif_rows]
    probs = np.array([[float(r[c]) for c in CLASS_NAMES] for r in gif_rows])
    np.testing.assert_allclose(probs, _hand_forward(tiny, images), atol=2e-5)
    for r in gif_rows:
        entry = crops[int(r["person"]), int(r["frame"])]
        assert [float(r[k]) for k in ("left", "top", "right", "bottom")] == pytest.approx(entry["box"], abs=0.051)
        assert float(r["time"]) == pytest.approx(int(r["frame"]) / manifest["fps"], abs=1e-4)
        assert r["predicted"] == CLASS_NAMES[int(np.argmax([float(r[c]) for c in CLASS_NAMES]))]

    summary = json.loads((out / "elon-musk-smoke" / "summary.json").read_text())
    for person in summary["people"]:
        mine = probs[[int(r["person"]) == person["person"] for r in gif_rows]]
        assert person["frames"] == len(mine)
        assert person["dominant"] == CLASS_NAMES[int(mine.mean(axis=0).argmax())]
        assert (out / "elon-musk-smoke" / f"timeline_p{person['person']}.png").stat().st_size > 0
    assert (out / "elon-musk-smoke" / "contact_sheet.png").stat().st_size > 0
    video = cv2.VideoCapture(str(out / "elon-musk-smoke" / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == manifest["frames_sampled"]
    photo_rows = [r for r in rows if r["video"] == "face_recognition_two_people"]
    assert {r["person"] for r in photo_rows} == {"1", "2"} and all(r["time"] == "" for r in photo_rows)
    assert cv2.imread(str(out / "face_recognition_two_people" / "annotated.png")).shape == cv2.imread(str(photo)).shape

    done = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    (out / "face_recognition_two_people" / "summary.json").unlink()
    assert main(argv) == 0
    assert (out / "elon-musk-smoke" / "summary.json").stat().st_mtime_ns == done[out / "elon-musk-smoke" / "summary.json"]
    assert (out / "face_recognition_two_people" / "summary.json").exists()
    assert _rows(out / "predictions.csv") == rows


def test_tta_and_several_models_are_columns_of_one_csv(media, tiny, tmp_path):
    photo = media / "photos" / "face_recognition_two_people.jpg"
    out = tmp_path / "out"
    argv = [str(photo), "--out", str(out), "--model", *map(str, tiny), "--model", *map(str, tiny[:2]), "-",
            "--tta", "mirror", "--no-progress"]
    assert main(argv) == 0
    rows = _rows(out / "predictions.csv")
    assert sorted({r["model"] for r in rows}) == ["tiny", "tiny_2"]
    scorer = load_scorers([list(map(str, tiny))])[0]
    mine = [r for r in rows if r["model"] == "tiny"]
    manifest = json.loads((out / "faces" / photo.stem / "manifest.json").read_text())
    crops = {(e.get("person") or 1): e["crop"] for e in manifest["frames"] if e.get("crop")}
    faces = np.stack([cv2.imread(str(out / "faces" / photo.stem / crops[int(r["person"])])) for r in mine])
    expected = scorer.probs(faces, "mirror")
    np.testing.assert_allclose([[float(r[c]) for c in CLASS_NAMES] for r in mine], expected, atol=2e-5)
    np.testing.assert_allclose(expected, (scorer.probs(faces) + scorer.probs(faces[:, :, ::-1])) / 2, atol=1e-6)


def test_default_models_are_the_shipped_folders_and_ensembles(tiny, tmp_path):
    models = tmp_path / "models"
    for name in ("a", "b"):
        folder = models / name
        folder.mkdir(parents=True)
        shutil.copy(tiny[0], folder / "deploy.prototxt")
        shutil.copy(tiny[1], folder / "model.caffemodel")
        (folder / "model.json").write_text(json.dumps({"input_size": SIZE, "channels": 1, "mean_value": [120]}))
    (models / "ensemble.json").write_text(json.dumps({"members": [{"model": "a", "weight": 1}, {"model": "b", "weight": 3}],
                                                      "aggregate": "mean"}))
    scorers = load_scorers(None, models_dir=models)
    assert [s.name for s in scorers] == ["ensemble", "a", "b"]
    assert isinstance(primary(scorers), Ensemble) and primary(scorers).weights == [1.0, 3.0]
    with pytest.raises(ModelError, match="no model given and none shipped"):
        load_scorers(None, models_dir=tmp_path / "empty")
    with pytest.raises(ModelError, match="DEPLOY CAFFEMODEL MEAN, got 2"):
        load_scorers([[str(tiny[0]), str(tiny[1])]])


@pytest.mark.slow
def test_film_clip_people_and_annotated_video(media, tiny, tmp_path):
    """The four-shot Hamilton clip: every source frame in the annotated MP4, a timeline per person."""
    clip = media / "videos" / "short_hamilton_clip.mp4"
    out = tmp_path / "out"
    assert main([str(clip), "--out", str(out), "--model", *map(str, tiny), "--annotate", "--no-progress",
                 "--jobs", str(min(2, os.cpu_count() or 1))]) == 0
    summary = json.loads((out / clip.stem / "summary.json").read_text())
    assert len(summary["people"]) >= 2
    rows = _rows(out / "predictions.csv")
    assert sum(p["frames"] for p in summary["people"]) == len(rows)
    video = cv2.VideoCapture(str(out / clip.stem / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 275
    for person in summary["people"]:
        assert (out / clip.stem / f"timeline_p{person['person']}.png").exists()
