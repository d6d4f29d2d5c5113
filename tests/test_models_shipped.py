"""The FER2013 models shipped in models/: each loads in this engine and in OpenCV dnn with the
same outputs, and scores the first PublicTest faces at the accuracy its model.json records; the
ensemble file is read and applied by the code the prediction command uses (sse.shipped)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, shared_data
from sse.fer2013 import load_split
from sse.shipped import Ensemble, EmotionModel, load

MODELS = REPO / "models"
FOLDERS = sorted(p for p in MODELS.glob("fer2013_*") if p.is_dir())
ENSEMBLE = MODELS / "fer2013_ensemble.json"
TOLERANCE = 0.005  # half a point


def test_four_models_and_their_ensemble_are_shipped():
    names = {p.name for p in FOLDERS}
    assert {"fer2013_holonet48_3conv-s_concat", "fer2013_holonet48_4conv-c_concat",
            "fer2013_holonet48_3conv-s_eltwise", "fer2013_holonet48_original"} <= names
    members = [m["model"] for m in json.loads(ENSEMBLE.read_text())["members"]]
    assert set(members) <= names and len(members) >= 3
    for folder in FOLDERS:
        assert (folder / "model.caffemodel").stat().st_size < 25 * 2**20
        assert (folder / "README.md").is_file() and (folder / "mean.binaryproto").is_file()


@pytest.fixture(scope="module")
def public_subset():
    root = shared_data("fer2013")
    faces, labels = load_split(root, "PublicTest")
    return faces, labels


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_model_scores_the_publictest_subset_as_its_card_says(folder, public_subset):
    meta = json.loads((folder / "model.json").read_text())
    n = meta["publictest_subset"]["faces"]
    faces, labels = public_subset
    probs = EmotionModel.from_dir(folder).probs(faces[:n])
    accuracy = float((probs.argmax(1) == labels[:n]).mean())
    assert abs(accuracy - meta["publictest_subset"]["accuracy"]) <= TOLERANCE


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_model_gives_the_same_probabilities_in_opencv_dnn(folder):
    model = EmotionModel.from_dir(folder)
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48)).astype(np.uint8)
    ours = model.probs(faces)
    cv_net = cv2.dnn.readNetFromCaffe(str(folder / "deploy.prototxt"), str(folder / "model.caffemodel"))
    x = faces.astype(np.float32)[:, None] - np.float32(model.prep.mean_value[0])
    cv_net.setInput(x)
    theirs = cv_net.forward("prob").reshape(4, -1)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)


def test_the_ensemble_file_is_applied_as_recorded(public_subset):
    spec = json.loads(ENSEMBLE.read_text())
    ensemble = load(ENSEMBLE)
    assert isinstance(ensemble, Ensemble)
    assert [m.name for m in ensemble.members] == [m["model"] for m in spec["members"]]
    faces, labels = public_subset
    n = spec["publictest_subset"]["faces"]
    accuracy = float((ensemble.probs(faces[:n]).argmax(1) == labels[:n]).mean())
    assert abs(accuracy - spec["publictest_subset"]["accuracy"]) <= TOLERANCE
