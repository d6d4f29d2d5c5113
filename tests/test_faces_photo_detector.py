"""A single photo gets the second detector (dlib's CNN by default) where HOG finds nothing; a video
does not (its speed matters, and the tracker carries faces between detections)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import DATA
from sse.faces.detect import FaceDetector
from sse.faces.pipeline import FaceModels, PipelineConfig, analyse, is_photo
from sse.fer2013.data import load_split


class _Spy:
    """The real detector, recording which second detector each call asked for."""

    def __init__(self, detector: FaceDetector) -> None:
        self.detector, self.asked = detector, []

    def detect(self, gray, second=None):
        self.asked.append(second)
        return self.detector.detect(gray, second)


def test_the_photo_detector_runs_on_photos_only(tmp_path):
    photo = DATA / "media" / "photos" / "face_recognition_two_people.jpg"
    if not photo.is_file():
        pytest.skip(f"real media not found at {photo}")
    config = PipelineConfig(faces="all")
    models = FaceModels.load(config)
    models.detector = _Spy(models.detector)
    assert is_photo(photo) and analyse(photo, config, models).people
    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(2):
        cv2.imwrite(str(clip / f"frame_{i:03d}.png"), cv2.imread(str(photo)))
    assert not is_photo(clip)
    analyse(clip, config, models)
    assert models.detector.asked == ["mmod", None]


def test_dlibs_cnn_finds_fer2013_faces_that_hog_misses():
    data = DATA / "fer2013"
    if not (data / "PublicTest.npz").is_file():
        pytest.skip(f"FER2013 not found at {data}")
    faces, _ = load_split(data, "PublicTest")
    detector = FaceDetector()
    pictures = [cv2.copyMakeBorder(cv2.resize(f, (144, 144), interpolation=cv2.INTER_CUBIC), 60, 60, 60, 60,
                                   cv2.BORDER_REFLECT_101) for f in faces[:40]]
    missed = [p for p in pictures if not detector.detect(p, "none")]
    assert len(missed) >= 3
    found = sum(bool(detector.detect(p, "mmod")) for p in missed)
    assert found >= 0.6 * len(missed)
    assert np.all([d.source == "mmod" for p in missed[:3] for d in detector.detect(p, "mmod")])
