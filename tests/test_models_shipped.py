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
from sse.fer2013.framing import cut_faces, locate
from sse.shipped import Ensemble, EmotionModel, FaceCrops, load

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


SUBSET = 500


@pytest.fixture(scope="module")
def public_subset():
    """The first PublicTest faces, their labels and their landmarks as the training data found them
    (the face pipeline's detector and landmarks on the enlarged face; the mean landmarks if missed)."""
    root = shared_data("fer2013")
    faces, labels = load_split(root, "PublicTest")
    landmarks, _ = locate(faces[:SUBSET])
    return faces[:SUBSET], labels[:SUBSET], landmarks


def _as_model_sees(model: EmotionModel, subset) -> np.ndarray:
    """The faces cut with the model's crop (its training data's cut), or as they are without one."""
    faces, _, landmarks = subset
    return faces if model.prep.crop is None else cut_faces(faces, landmarks, model.prep.crop)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_model_scores_the_publictest_subset_as_its_card_says(folder, public_subset):
    meta = json.loads((folder / "model.json").read_text())
    n = meta["publictest_subset"]["faces"]
    _, labels, _ = public_subset
    model = EmotionModel.from_dir(folder)
    probs = model.probs(_as_model_sees(model, public_subset)[:n])
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
    faces, labels, landmarks = public_subset
    n = spec["publictest_subset"]["faces"]
    crops = FaceCrops({m.prep.crop: _as_model_sees(m, public_subset) for m in ensemble.members})
    accuracy = float((ensemble.score(crops).argmax(1) == labels[:n]).mean())
    assert abs(accuracy - spec["publictest_subset"]["accuracy"]) <= TOLERANCE
