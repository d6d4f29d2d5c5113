"""FER2013's faces through the toolkit's face pipeline, and the framing measured from them.

FER2013's 48x48 faces are tight, unaligned boxes in which the face fills the picture. To cut the
training data with the same function as prediction (``sse.faces.crop.cut_crop``), every face is
first made a picture the face pipeline can read (``picture``: enlarged ``ENLARGE`` times, bicubic,
with ``BORDER`` original pixels of reflected surroundings on each side), then found by the
pipeline's detector (dlib HOG) and given its 68 landmarks (``locate``, cached per split).

Faces the detector misses (about a quarter: turned heads, hands, occlusions) get the **mean FER2013
landmarks**: the template of ``FER2013_FRAMING`` placed in the 48x48 face, i.e. they are taken to be
framed as FER2013 frames its faces on average; cut with that framing, such a face is its own 48x48
picture.

``fit_framing`` measures the framing: the least-squares similarity of the mean face shape onto each
found face's landmarks gives its eye distance and the height of its eye line; the medians over the
Training split are ``FER2013_FRAMING`` (``python -m sse.fer2013 framing`` prints them again).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from caffe import atomic

from ..faces.align import fit_similarity
from ..faces.crop import CropSpec, cut_crop
from ..faces.face_model import MEAN_SHAPE
from .data import SIZE

ENLARGE = 3
BORDER = 24
# Measured by fit_framing on the Training split (python -m sse.fer2013 framing): the median face.
FER2013_FRAMING = CropSpec(size=SIZE, eye_distance=0.3511, eye_height=0.3816, anchors="landmarks", gray=True)


def picture(face: np.ndarray) -> np.ndarray:
    """A 48x48 face as a picture the detector reads: enlarged, with reflected surroundings."""
    big = cv2.resize(face, None, fx=ENLARGE, fy=ENLARGE, interpolation=cv2.INTER_CUBIC)
    b = BORDER * ENLARGE
    return cv2.copyMakeBorder(big, b, b, b, b, cv2.BORDER_REFLECT_101)


def to_picture(points: np.ndarray) -> np.ndarray:
    """Landmarks in the 48x48 face's pixels -> the picture's pixels."""
    return (np.asarray(points, np.float64) + 0.5 + BORDER) * ENLARGE - 0.5


def to_face(points: np.ndarray) -> np.ndarray:
    """Landmarks in the picture's pixels -> the 48x48 face's pixels."""
    return (np.asarray(points, np.float64) + 0.5) / ENLARGE - BORDER - 0.5


def mean_landmarks() -> np.ndarray:
    """The landmarks given to a face the detector misses: the FER2013 framing's template."""
    return FER2013_FRAMING.template()


def locate(faces: np.ndarray, log: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(landmarks N x 68 x 2 in the 48x48 faces' pixels, found: bool N) by the pipeline's detector
    (the largest face of the picture) and landmark predictor; missed faces get ``mean_landmarks``."""
    from ..faces.detect import FaceDetector
    from ..faces.landmarks import LandmarkPredictor

    detector, predictor = FaceDetector(upsample=0, detect_width=0), LandmarkPredictor()
    points = np.empty((len(faces), 68, 2), np.float32)
    found = np.zeros(len(faces), bool)
    fallback = mean_landmarks()
    for i, face in enumerate(faces):
        image = picture(face)
        detections = detector.detect(image)
        if detections:
            points[i] = to_face(predictor(image, detections[0].box))
            found[i] = True
        else:
            points[i] = fallback
        if log and (i + 1) % 2000 == 0:
            log(f"located {i + 1}/{len(faces)} faces ({found[:i + 1].mean():.1%} detected)")
    return points, found


def cached_landmarks(faces: np.ndarray, cache: Path, log: Callable[[str], None] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``locate``'s result, computed once and kept in ``cache`` (an .npz); the missed faces'
    landmarks are set on reading, so the cache outlives a change of ``FER2013_FRAMING``."""
    points = found = None
    if cache.is_file():
        with np.load(cache) as d:
            if len(d["found"]) == len(faces):
                points, found = d["landmarks"], d["found"]
    if points is None:
        points, found = locate(faces, log)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(cache, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, landmarks=points, found=found)
    points[~found] = mean_landmarks()
    return points, found


def cut_faces(faces: np.ndarray, landmarks: np.ndarray, spec: CropSpec, pad: int = 0) -> np.ndarray:
    """Every face cut as ``spec`` says, by the same ``cut_crop`` as prediction, from its own 48x48
    pixels (the enlarged picture serves detection only: cutting from it would resample twice)."""
    return np.stack([cut_crop(face, points, spec, pad) for face, points in zip(faces, landmarks)])


def fit_framing(landmarks: np.ndarray, size: int = SIZE) -> CropSpec:
    """The median framing of faces with these landmarks (in size x size pixels), as a crop spec on
    all 68 landmarks."""
    distance, height = [], []
    for points in landmarks:
        matrix = fit_similarity(MEAN_SHAPE, points)
        distance.append(np.hypot(*matrix[0, :2]))  # MEAN_SHAPE has unit eye distance
        height.append(matrix[1, 2])  # where its eye midpoint (the origin) lands
    return CropSpec(size=size, eye_distance=round(float(np.median(distance)) / size, 4),
                    eye_height=round(float(np.median(height)) / size, 4), anchors="landmarks", gray=True)
