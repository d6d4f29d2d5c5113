"""One crop from training to prediction: the FER2013 training data and sse-predict cut a model's faces
with the same function, so the same face at the same landmarks gives the same crop on both paths."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import caffe
from caffe.data.db import iterate
from caffe.io import datum_to_array
from caffe.proto import caffe_pb2
from conftest import DATA
from sse import fer2013
from sse.classes import CLASS_NAMES
from sse.faces.crop import CropSpec, cut_crop
from sse.fer2013.framing import FER2013_FRAMING, cut_faces, mean_landmarks
from sse.predict.cli import main as predict_main
from sse.shipped import EmotionModel, ModelError, Preprocessing

SPEC = CropSpec(size=32, eye_distance=0.36, eye_height=0.38, anchors="landmarks", gray=True)
DEPLOY = """name: "tiny32"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 32 dim: 32 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param { num_output: 7 weight_filler { type: "gaussian" std: 0.002 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


@pytest.fixture()
def model_folder(tmp_path) -> Path:
    """A tiny model folder whose model.json names its crop."""
    folder = tmp_path / "tiny32"
    folder.mkdir()
    (folder / "deploy.prototxt").write_text(DEPLOY)
    caffe.set_random_seed(3)
    caffe.Net(str(folder / "deploy.prototxt"), caffe.TEST).save(str(folder / "model.caffemodel"))
    (folder / "model.json").write_text(json.dumps({"name": "tiny32", "input_size": 32, "channels": 1,
                                                   "mean_value": [120.0], "crop": SPEC.to_json()}))
    return folder


def test_sse_predict_scores_the_crop_the_training_data_path_cuts(model_folder, tmp_path):
    photo = DATA / "media" / "photos" / "face_recognition_two_people.jpg"
    if not photo.is_file():
        pytest.skip(f"real media not found at {photo}")
    out = tmp_path / "out"
    assert predict_main([str(photo), "--out", str(out), "--model", str(model_folder), "--no-progress"]) == 0
    manifest = json.loads((out / "faces" / photo.stem / "manifest.json").read_text())
    entries = [f for f in manifest["frames"] if f.get("crop")]
    landmarks = np.array([e["landmarks"] for e in entries], np.float64)
    image = cv2.imread(str(photo))  # BGR, as sse-predict decodes it; the crop is gray
    training = cut_faces(np.stack([image] * len(entries)), landmarks, SPEC)  # the training data's function
    with open(out / photo.stem / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    scored = np.array([[float(r[c]) for c in CLASS_NAMES] for r in rows])
    model = EmotionModel.from_dir(model_folder)
    np.testing.assert_allclose(scored, model.probs(training), atol=2e-5)
    resized = model.probs(np.stack([cv2.imread(str(out / "faces" / photo.stem / e["crop"])) for e in entries]))
    assert np.abs(resized - scored).max() > 1e-3  # the face pipeline's 128x128 crop, resized, is another input


def test_the_fer2013_training_data_is_cut_at_the_pipeline_landmarks_with_the_shipped_crop(tmp_path):
    rng = np.random.default_rng(4)
    data, work = tmp_path / "fer", tmp_path / "work"
    data.mkdir()
    work.mkdir()
    splits = {}
    for split, n in (("Training", 6), ("PublicTest", 3), ("PrivateTest", 3)):
        faces = np.stack([cv2.GaussianBlur(rng.integers(0, 256, (48, 48)).astype(np.uint8), (0, 0), 1.5)
                          for _ in range(n)])
        blobs = [cv2.imencode(".png", f)[1].ravel() for f in faces]
        np.savez(data / f"{split}.npz", jpeg_data=np.concatenate(blobs),
                 jpeg_offsets=np.concatenate([[0], np.cumsum([len(b) for b in blobs])]), labels=np.arange(n) % 7)
        found = np.arange(n) % 2 == 0  # as if the detector had found every other face, turned and shifted
        angle = np.radians(8.0)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = (mean_landmarks() - 24) @ rot.T * 0.9 + 25
        landmarks = np.where(found[:, None, None], points, np.nan).astype(np.float32)
        np.savez(work / f"landmarks_{split.lower()}.npz", landmarks=landmarks, found=found)
        splits[split] = (faces, points, found)
    info = fer2013.prepare(data, work, FER2013_FRAMING)
    assert info["crop"] == FER2013_FRAMING.to_json() and info["detected"]["Training"] == 0.5
    faces, points, found = splits["Training"]
    stored = sorted(datum_to_array(caffe_pb2.Datum.FromString(v))[0].tobytes() for _, v in
                    iterate(work / "training_lmdb", "lmdb"))
    expected = [cut_crop(f, points if hit else mean_landmarks(), FER2013_FRAMING, pad=4) for f, hit in zip(faces, found)]
    assert stored == sorted(e.tobytes() for e in expected)
    missed = [e for e, hit in zip(expected, found) if not hit]
    assert all(np.array_equal(e[4:52, 4:52], f) for e, f in zip(missed, faces[~found]))  # a missed face is itself
    public, _ = fer2013.load_prepared(data, work, "PublicTest")
    pf, pp, pfound = splits["PublicTest"]
    np.testing.assert_array_equal(public[0], cut_crop(pf[0], pp, FER2013_FRAMING))


def test_a_model_whose_crop_is_not_its_input_is_refused(model_folder):
    meta = json.loads((model_folder / "model.json").read_text())
    meta["crop"]["size"] = 48
    (model_folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="not the net's input"):
        EmotionModel.from_dir(model_folder)
    with pytest.raises(ModelError, match="unknown key"):
        Preprocessing.from_json(_write(model_folder, {**meta, "crop": {"size": 32, "zoom": 2}}))


def _write(folder: Path, meta: dict) -> Path:
    (folder / "model.json").write_text(json.dumps(meta))
    return folder / "model.json"
