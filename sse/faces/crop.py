"""How a model's faces are cut: one crop definition, one function, for training data and prediction.

A model learns faces framed one way (where the eyes sit, how much of the head shows, the size, gray
or colour); showing it faces framed another way costs accuracy. ``CropSpec`` says how one model's
faces are cut from a source image and its 68 landmarks, ``cut_crop`` cuts it, and the same call makes
the training data (``sse.fer2013``) and the faces ``sse-predict`` and ``sse.shipped`` score.

A spec places the mean face shape (``face_model.MEAN_SHAPE``) in a size x size crop, its eye centres
``eye_height * size`` from the top and ``eye_distance * size`` apart, centred on the mirror axis, and
maps the face's landmarks onto that template by a similarity fitted on the anchor set (``align.py``):
'eyes', 'eyes+mouth' or all 68 'landmarks'. ``frontalize`` renders the face frontally into the
template instead (``frontalize.py``). In a model's ``model.json`` the spec is the object ``crop``:

    "crop": {"size": 48, "eye_distance": 0.365, "eye_height": 0.392, "anchors": "landmarks", "gray": true}

Two specs have names: ``AFEW_128`` is the release's 128x128 crop that ``sse-preprocess`` writes;
the FER2013 framing the shipped models learn is measured from the data (``sse.fer2013.framing``).
Shrinking a face by more than half is done in two steps (the warp at an integer multiple of the
size, then an area average), so small crops are not aliased.
"""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from .align import ANCHOR_SETS, template_matrix, warp_crop
from .face_model import TEMPLATE_EYE_DISTANCE, TEMPLATE_EYE_HEIGHT, template_landmarks
from .frontalize import Frontalizer, Pose, estimate_pose

MAX_SUPERSAMPLE = 4


class CropError(ValueError):
    """A crop definition that is malformed (names the field and what was expected)."""


@dataclass(frozen=True)
class CropSpec:
    """One way of cutting a face: template geometry, anchors, size, gray or colour, frontal or not."""

    size: int = 128
    eye_distance: float = TEMPLATE_EYE_DISTANCE
    eye_height: float = TEMPLATE_EYE_HEIGHT
    anchors: str = "eyes"
    gray: bool = False
    frontalize: bool = False
    mirror_yaw_start: float = 15.0
    mirror_yaw_full: float = 40.0

    def __post_init__(self) -> None:
        if self.size < 8:
            raise CropError(f"crop size must be >= 8, got {self.size}")
        if not 0 < self.eye_distance < 1 or not 0 < self.eye_height < 1:
            raise CropError(f"crop eye_distance and eye_height are fractions of the size in (0, 1), got "
                            f"{self.eye_distance} and {self.eye_height}")
        if self.anchors not in ANCHOR_SETS:
            raise CropError(f"crop anchors must be one of {', '.join(ANCHOR_SETS)}, got {self.anchors!r}")

    @classmethod
    def from_json(cls, data: dict) -> "CropSpec":
        """The spec of a ``model.json``'s ``crop`` object (unknown keys are an error)."""
        if not isinstance(data, dict):
            raise CropError(f"crop must be an object with size, eye_distance, eye_height, anchors, gray; "
                            f"got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CropError(f"crop has unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        try:
            return cls(**{k: type(getattr(cls, k))(v) if k != "anchors" else str(v) for k, v in data.items()})
        except (TypeError, ValueError) as exc:
            if isinstance(exc, CropError):
                raise
            raise CropError(f"crop {data!r}: {exc}") from exc

    def to_json(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """A stable text form (to group models that see the same crop)."""
        return json.dumps(self.to_json(), sort_keys=True)

    def template(self) -> np.ndarray:
        """The 68 template landmarks in the crop."""
        return template_landmarks(self.size, self.eye_distance, self.eye_height)

    def matrix(self, landmarks: np.ndarray, pad: int = 0) -> np.ndarray:
        """The 2x3 similarity from source pixels to crop pixels (``pad`` extra pixels on each side)."""
        matrix = template_matrix(np.asarray(landmarks, np.float64), self.template(), self.anchors)
        matrix[:, 2] += pad
        return matrix


AFEW_128 = CropSpec()


def cut_crop(image: np.ndarray, landmarks: np.ndarray, spec: CropSpec, pad: int = 0,
             pose: Pose | None = None) -> np.ndarray:
    """The face with these 68 landmarks cut from a source image as ``spec`` says: uint8,
    (size + 2 pad) square, gray (H x W) when ``spec.gray`` else as the image's channels.

    ``pad`` widens the cut by real surroundings (for training-time random crops); ``pose`` (frontal
    rendering only) is estimated from the landmarks when not given."""
    if spec.gray and image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if spec.frontalize:
        if pad:
            raise CropError("a frontalized crop has no padding (the template ends at the crop's border)")
        if pose is None:
            pose = estimate_pose(landmarks, image.shape[1], image.shape[0])
        return _frontalizer(spec.size, spec.mirror_yaw_start, spec.mirror_yaw_full)(image, landmarks, pose)
    out = spec.size + 2 * pad
    matrix = spec.matrix(landmarks, pad)
    factor = min(MAX_SUPERSAMPLE, int(1.0 / max(np.hypot(*matrix[0, :2]), 1e-6)))
    if factor < 2:
        return warp_crop(image, matrix, out)
    big_matrix = matrix * factor
    big_matrix[:, 2] += (factor - 1) / 2.0  # big pixel centres (i + 0.5) / factor - 0.5 in the crop
    big = warp_crop(image, big_matrix, out * factor)
    return cv2.resize(big, (out, out), interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=8)
def _frontalizer(size: int, yaw_start: float, yaw_full: float) -> Frontalizer:
    return Frontalizer(size, yaw_start, yaw_full)
