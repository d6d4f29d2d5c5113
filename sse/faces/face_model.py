"""The generic face: a 2D mean shape of the 68 dlib landmarks, its 3D version, the crop template.

MEAN_SHAPE (x right, y down; unit = distance between the eye centres; origin = midpoint of the eye
centres) was computed once by this project: dlib's HOG detector (upsample 1) and 68-point predictor on
the 52 faces of shared/data/media/photos, each face and its mirror image (landmarks swapped with
MIRROR), generalised Procrustes alignment (similarity), mean, normalised to eye centres (-0.5, 0) and
(0.5, 0). Averaging with mirror images makes it exactly left/right symmetric.

MODEL_3D adds a depth to every point (z away from the camera, so x, y, z is right-handed like
OpenCV's camera frame and a frontal face has rotation identity). The depth is a parametric face
written down here: a horizontal elliptic cylinder (the head's width, 1.25 eye distances half-width,
0.9 deep) plus forward offsets for the brow ridge, the nose, the lips and the chin, chosen so that
the nose tip is ~0.45 eye distances in front of the outer eye corners and the mouth corners ~0.3
behind the nose tip (usual adult proportions).

The crop template puts the mean shape into a size x size crop: eye distance 36/128 of the size,
eye centres 40/128 of the size from the top, centred horizontally on (size-1)/2 (the mirror axis).
"""

from __future__ import annotations

import numpy as np

MEAN_SHAPE = np.array(
    [
        (-1.178, 0.053), (-1.170, 0.366), (-1.136, 0.679), (-1.080, 0.989),
        (-0.968, 1.282), (-0.784, 1.533), (-0.552, 1.746), (-0.298, 1.916),
        (0.000, 1.967), (0.298, 1.916), (0.552, 1.746), (0.784, 1.533),
        (0.968, 1.282), (1.080, 0.989), (1.136, 0.679), (1.170, 0.366),
        (1.178, 0.053), (-0.928, -0.170), (-0.788, -0.307), (-0.593, -0.352),
        (-0.385, -0.332), (-0.183, -0.256), (0.183, -0.256), (0.385, -0.332),
        (0.593, -0.352), (0.788, -0.307), (0.928, -0.170), (0.000, -0.038),
        (0.000, 0.163), (0.000, 0.365), (0.000, 0.574), (-0.241, 0.710),
        (-0.124, 0.755), (0.000, 0.795), (0.124, 0.755), (0.241, 0.710),
        (-0.688, 0.009), (-0.569, -0.063), (-0.430, -0.063), (-0.302, 0.022),
        (-0.433, 0.046), (-0.577, 0.049), (0.302, 0.022), (0.430, -0.063),
        (0.569, -0.063), (0.688, 0.009), (0.577, 0.049), (0.433, 0.046),
        (-0.466, 1.101), (-0.298, 1.037), (-0.124, 1.008), (0.000, 1.037),
        (0.124, 1.008), (0.298, 1.037), (0.466, 1.101), (0.305, 1.264),
        (0.136, 1.333), (0.000, 1.343), (-0.136, 1.333), (-0.305, 1.264),
        (-0.396, 1.110), (-0.125, 1.098), (0.000, 1.112), (0.125, 1.098),
        (0.396, 1.110), (0.127, 1.190), (0.000, 1.204), (-0.127, 1.190),
    ],
    dtype=np.float64,
)

# Index of each landmark's mirror partner (left <-> right) in the 68-point order.
MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40] + [54, 53, 52, 51, 50, 49, 48]
    + [59, 58, 57, 56, 55] + [64, 63, 62, 61, 60] + [67, 66, 65]
)

JAW = np.arange(0, 17)
LEFT_EYE = np.arange(36, 42)   # on the image's left (the subject's right eye)
RIGHT_EYE = np.arange(42, 48)
OUTER_MOUTH = np.arange(48, 60)

# Forward offsets (negative z = towards the camera), in eye distances.
_DEPTH_OFFSETS = {
    **{i: -0.05 for i in range(17, 27)},                      # brow ridge
    27: -0.08, 28: -0.14, 29: -0.21, 30: -0.30,               # nose bridge to tip
    31: -0.10, 32: -0.15, 33: -0.18, 34: -0.15, 35: -0.10,    # nostrils
    48: -0.02, 54: -0.02, 60: -0.02, 64: -0.02,               # mouth corners
    49: -0.08, 53: -0.08, 55: -0.08, 59: -0.08,
    50: -0.12, 52: -0.12, 56: -0.12, 58: -0.12,
    51: -0.14, 57: -0.14,
    61: -0.10, 62: -0.10, 63: -0.10, 65: -0.10, 66: -0.10, 67: -0.10,
    8: -0.12, 7: -0.08, 9: -0.08, 6: -0.03, 10: -0.03,         # chin
}
_HEAD_HALF_WIDTH = 1.25
_HEAD_DEPTH = 0.9


def _model_3d() -> np.ndarray:
    x = MEAN_SHAPE[:, 0]
    ratio = np.clip(x / _HEAD_HALF_WIDTH, -1.0, 1.0)
    z = _HEAD_DEPTH * (1.0 - np.sqrt(1.0 - ratio**2))
    for index, offset in _DEPTH_OFFSETS.items():
        z[index] += offset
    return np.column_stack([MEAN_SHAPE, z])


MODEL_3D = _model_3d()

TEMPLATE_EYE_DISTANCE = 36.0 / 128.0
TEMPLATE_EYE_HEIGHT = 40.0 / 128.0


def template_landmarks(size: int = 128, eye_distance: float = TEMPLATE_EYE_DISTANCE,
                       eye_height: float = TEMPLATE_EYE_HEIGHT) -> np.ndarray:
    """The 68 template landmark positions (float64, (68, 2)) in a size x size crop: the mean shape
    with its eye distance ``eye_distance * size``, its eye centres ``eye_height * size`` from the top,
    centred on the mirror axis (size - 1) / 2."""
    scale = eye_distance * size
    origin = np.array([(size - 1) / 2.0, eye_height * size])
    return MEAN_SHAPE * scale + origin


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the image-left and image-right eyes (means of their 6 points)."""
    points = np.asarray(landmarks, dtype=np.float64)
    return points[LEFT_EYE].mean(axis=0), points[RIGHT_EYE].mean(axis=0)


def mouth_centre(landmarks: np.ndarray) -> np.ndarray:
    """Centre of the outer lip contour."""
    return np.asarray(landmarks, dtype=np.float64)[OUTER_MOUTH].mean(axis=0)


def anchor_points(landmarks: np.ndarray) -> np.ndarray:
    """The three alignment anchors: left eye centre, right eye centre, mouth centre ((3, 2))."""
    left, right = eye_centres(landmarks)
    return np.stack([left, right, mouth_centre(landmarks)])
