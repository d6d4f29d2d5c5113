"""sse.faces.crop: one crop definition cuts a model's faces, for its training data and for prediction."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from sse.faces.align import apply_affine, warp_crop
from sse.faces.crop import AFEW_128, CropError, CropSpec, cut_crop
from sse.faces.face_model import eye_centres
from sse.faces.pipeline import PipelineConfig

FER_LIKE = CropSpec(size=48, eye_distance=0.35, eye_height=0.38, anchors="landmarks", gray=True)


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth textured BGR picture and a face's landmarks in it (the template, moved and turned)."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3)).astype(np.uint8), (0, 0), 3)
    angle = np.radians(12.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (AFEW_128.template() - 64) @ rot.T * 1.5 + np.array([210.0, 140.0])
    return image, landmarks


def test_the_release_crop_is_the_pipeline_crop_and_maps_the_eyes_onto_the_template():
    assert PipelineConfig().crop_spec() == AFEW_128
    _, landmarks = _scene()
    matrix = AFEW_128.matrix(landmarks)
    np.testing.assert_allclose(np.stack(eye_centres(apply_affine(matrix, landmarks))),
                               np.stack(eye_centres(AFEW_128.template())), atol=1e-9)


def test_a_padded_cut_holds_the_crop_in_its_centre():
    image, landmarks = _scene()
    spec = CropSpec(size=48, eye_distance=0.35, eye_height=0.38, anchors="eyes")
    crop, padded = cut_crop(image, landmarks, spec), cut_crop(image, landmarks, spec, pad=4)
    assert crop.shape == (48, 48, 3) and padded.shape == (56, 56, 3)
    assert np.abs(padded[4:52, 4:52].astype(int) - crop.astype(int)).max() <= 1


def test_a_gray_spec_cuts_gray_from_colour_and_shrinks_without_aliasing():
    image, landmarks = _scene()
    crop = cut_crop(image, landmarks, FER_LIKE)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    stripes = np.zeros((300, 400), np.uint8)
    stripes[:, ::2] = 255  # a one-pixel pattern: a point sample shows it, an area average is grey
    flat = cut_crop(stripes, landmarks, FER_LIKE)[10:38, 10:38]
    sampled = warp_crop(stripes, FER_LIKE.matrix(landmarks), 48)[10:38, 10:38]
    assert abs(float(flat.mean()) - 127.5) < 12 and flat.std() < 30 < 60 < sampled.std()


def test_a_face_framed_as_the_template_is_cut_as_it_is():
    face = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (48, 48)).astype(np.uint8), (0, 0), 1)
    np.testing.assert_array_equal(cut_crop(face, FER_LIKE.template(), FER_LIKE), face)


def test_a_crop_spec_round_trips_through_json_and_refuses_what_it_does_not_know():
    assert CropSpec.from_json(json.loads(json.dumps(FER_LIKE.to_json()))) == FER_LIKE
    with pytest.raises(CropError, match="unknown key.*margin"):
        CropSpec.from_json({"size": 48, "margin": 0.2})
    with pytest.raises(CropError, match="anchors must be one of"):
        CropSpec.from_json({"size": 48, "anchors": "nose"})
    with pytest.raises(CropError, match="fractions of the size"):
        CropSpec(eye_distance=1.5)


def test_a_frontal_crop_takes_no_padding():
    image, landmarks = _scene()
    spec = CropSpec(size=64, frontalize=True)
    assert cut_crop(image, landmarks, spec).shape == (64, 64, 3)
    with pytest.raises(CropError, match="no padding"):
        cut_crop(image, landmarks, spec, pad=2)
