"""Frontalization: a face turned in yaw (synthesized from a frontal photo with a cylinder model of
the head, independent of the pipeline's 3D face) comes out closer to the frontal template than the
similarity alignment, by the distance of landmarks found again on the crops."""

import cv2
import numpy as np
import pytest

from sse.faces.align import align_face
from sse.faces.boxes import Box
from sse.faces.detect import FaceDetector
from sse.faces.face_model import MODEL_3D, template_landmarks
from sse.faces.frontalize import Frontalizer, camera_matrix, estimate_pose
from sse.faces.landmarks import LandmarkPredictor

from conftest import DATA, needs_shared_data

PHOTOS = DATA / "media" / "photos"
needs_photos = needs_shared_data("media", "photos")


@pytest.fixture(scope="module")
def models():
    return FaceDetector(upsample=1, detect_width=0), LandmarkPredictor(), Frontalizer(128)


def turn_head(image, landmarks, degrees):
    """Rotate the face about a vertical cylinder through the nose (orthographic); hidden parts black."""
    centre = landmarks[27:31, 0].mean()
    radius = 0.55 * (landmarks[16, 0] - landmarks[0, 0])
    height, width = image.shape[:2]
    x = (np.arange(width) - centre) / radius
    inside = np.abs(x) < 1
    source_angle = np.arcsin(np.clip(x, -1, 1)) - np.radians(degrees)
    seen = inside & (np.abs(source_angle) < np.pi / 2)
    source_x = np.where(seen, centre + radius * np.sin(source_angle), np.arange(width)).astype(np.float32)
    map_x = np.tile(source_x, (height, 1))
    map_y = np.tile(np.arange(height, dtype=np.float32)[:, None], (1, width))
    turned = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR)
    turned[:, inside & ~seen] = 0
    return turned


def distance_to_template(predictor, crop):
    template = template_landmarks(128)
    box = Box(template[:, 0].min(), template[17:27, 1].min(), template[:, 0].max(), template[:, 1].max())
    return float(np.linalg.norm(predictor(crop, box) - template, axis=1).mean())


def test_pose_of_the_model_seen_from_the_front_is_zero():
    camera = camera_matrix(640, 480)
    points = MODEL_3D + [0, 0, 8.0]
    projected = (points @ camera.T)[:, :2] / points[:, 2:]
    pose = estimate_pose(projected, 640, 480)
    assert abs(pose.yaw) < 0.5 and abs(pose.pitch) < 0.5 and abs(pose.roll) < 0.5
    assert pose.reprojection_error < 0.01


def test_pose_of_a_turned_model_gives_the_yaw_and_the_hidden_side():
    camera = camera_matrix(640, 480)
    for yaw in (-30.0, 30.0):
        rotation, _ = cv2.Rodrigues(np.array([0.0, np.radians(yaw), 0.0]))
        points = MODEL_3D @ rotation.T + [0, 0, 8.0]
        projected = (points @ camera.T)[:, :2] / points[:, 2:]
        pose = estimate_pose(projected, 640, 480)
        assert pose.yaw == pytest.approx(yaw, abs=0.5)
        assert pose.occluded_side == ("left" if yaw > 0 else "right")


@pytest.mark.parametrize("name", ["face_recognition_two_people.jpg", "dlib_2008_002470.jpg"])
@pytest.mark.parametrize("degrees", [-25, 25])
@needs_photos
def test_frontalized_turned_face_is_closer_to_the_template_than_aligned(models, name, degrees):
    detector, predictor, frontalizer = models
    gray = cv2.imread(str(PHOTOS / name), cv2.IMREAD_GRAYSCALE)
    face = detector.detect(gray)[0]
    turned = turn_head(gray, predictor(gray, face.box), degrees)
    found = [d for d in detector.detect(turned) if d.box.iou(face.box) > 0.3]
    assert found, "the turned face is still found"
    landmarks = predictor(turned, found[0].box)
    pose = estimate_pose(landmarks, gray.shape[1], gray.shape[0])
    assert abs(pose.yaw) > 5
    aligned = distance_to_template(predictor, align_face(turned, landmarks))
    frontal = distance_to_template(predictor, frontalizer(turned, landmarks, pose))
    assert frontal < 0.7 * aligned, (frontal, aligned)


@needs_photos
def test_turning_left_and_right_hides_opposite_sides(models):
    detector, predictor, _ = models
    gray = cv2.imread(str(PHOTOS / "face_recognition_two_people.jpg"), cv2.IMREAD_GRAYSCALE)
    face = detector.detect(gray)[0]
    landmarks = predictor(gray, face.box)
    sides = set()
    for degrees in (-30, 30):
        turned = turn_head(gray, landmarks, degrees)
        found = [d for d in detector.detect(turned) if d.box.iou(face.box) > 0.3][0]
        sides.add(estimate_pose(predictor(turned, found.box), gray.shape[1], gray.shape[0]).occluded_side)
    assert sides == {"left", "right"}


@needs_photos
def test_frontal_crop_keeps_channels_and_size(models):
    detector, predictor, frontalizer = models
    colour = cv2.imread(str(PHOTOS / "face_recognition_two_people.jpg"))
    gray = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    landmarks = predictor(gray, detector.detect(gray)[0].box)
    pose = estimate_pose(landmarks, gray.shape[1], gray.shape[0])
    assert frontalizer(colour, landmarks, pose).shape == (128, 128, 3)
    assert frontalizer(gray, landmarks, pose).shape == (128, 128)
