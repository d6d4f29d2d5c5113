"""How far one face's descriptor can be trusted, and whether a track's faces look like a face at all.

Face quality is measured on the faces the identity step describes (identity.ChipSampler keeps it
with each chip, about 0.5 ms a face):

* `size`: the side of the face box in source pixels (Box.size);
* `sharpness`: the variance of the Laplacian over the variance of the gray values, on the face
  of the descriptor chip (its padding cut off) brought to the face's own size in the source, at
  most SHARPNESS_SCALE (50) pixels: how much detail the face holds at the scale where identity
  lives, whatever the light (a sharp small face scores as a sharp large one, size is its own check;
  a large face softened by video compression still has its features at 50 pixels, a blurred one
  not; the scale is the one that separates them best in the measurement);
* `yaw`: the head's yaw from the 68 landmarks (frontalize.estimate_pose), in degrees;
* `fit`: the mean distance between the landmarks and the fitted generic 3D face, in eye distances
  (a shape predictor put on something that is not a face fits badly).

`TRUST` is the rule chosen from bench/identity_quality.py (bench/results/identity_quality.md): on
the clips and photos of shared/data/media, faces below those sizes or that sharpness, or turned
further, land within dlib's 0.6 of other people's faces (the blurred bystander joined to a speaker),
while faces that pass the rule keep other people beyond it. people.py joins fragments across shots
only on trusted descriptors.

`PLAUSIBLE` are the checks that keep false faces out of people: a track whose faces fit the generic
face badly, whose detector scores are all low, whose box is implausibly small or large for the
frame, or whose box lies inside another track's face box in most of its frames is left out of
people, and the manifest says why (people.py `screen_tracks`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .boxes import Box
from .face_model import eye_centres
from .frontalize import estimate_pose

# The descriptor chip (identity.CHIP_SIZE, padding identity.CHIP_PADDING) holds the face in its
# central 1/(1 + 2 x padding): 100 of 150 pixels.
_CHIP_FACE = slice(25, 125)
SHARPNESS_SCALE = 50.0


@dataclass(frozen=True, slots=True)
class FaceQuality:
    """What decides whether one face's descriptor is evidence of identity (see the module doc)."""

    size: float
    sharpness: float
    yaw: float
    fit: float

    def as_dict(self) -> dict:
        return {k: round(v, 3) for k, v in asdict(self).items()}


def chip_sharpness(chip: np.ndarray, size: float, scale: float = SHARPNESS_SCALE) -> float:
    """Variance of the Laplacian over the variance of the gray values, on the chip's face resized to
    `size` pixels (the face box's side in the source), at most `scale`."""
    gray = chip if chip.ndim == 2 else cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    face = gray[_CHIP_FACE, _CHIP_FACE].astype(np.float32)
    side = int(round(min(face.shape[0], scale, max(8.0, size))))
    if side < face.shape[0]:
        face = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    contrast = float(face.var())
    if contrast < 1e-6:
        return 0.0
    return float(cv2.Laplacian(face, cv2.CV_32F, ksize=1).var()) / contrast


def landmark_scale(landmarks: np.ndarray) -> float:
    """Distance between the eye centres, in pixels (at least 1)."""
    left, right = eye_centres(np.asarray(landmarks, dtype=np.float64))
    return max(1.0, float(np.linalg.norm(right - left)))


def face_quality(chip: np.ndarray, box: Box, landmarks: np.ndarray, frame_size: tuple[int, int]) -> FaceQuality:
    """The quality of one face: its box, its descriptor chip, its landmarks in a (width, height) frame."""
    try:
        pose = estimate_pose(landmarks, *frame_size)
        yaw, error = abs(pose.yaw), pose.reprojection_error
    except (ValueError, cv2.error):
        yaw, error = 90.0, float("inf")
    return FaceQuality(box.size, chip_sharpness(chip, box.size), float(yaw), float(error) / landmark_scale(landmarks))


@dataclass(frozen=True)
class TrustRule:
    """A face's descriptor is evidence of identity when the face is at least `min_size` pixels,
    at least `min_sharpness` sharp, turned at most `max_yaw` degrees and fits the generic face
    within `max_fit` eye distances."""

    min_size: float = 40.0
    min_sharpness: float = 0.04
    max_yaw: float = 45.0
    max_fit: float = 0.2

    def trusted(self, quality: FaceQuality | None) -> bool:
        if quality is None:
            return False
        return (quality.size >= self.min_size and quality.sharpness >= self.min_sharpness
                and quality.yaw <= self.max_yaw and quality.fit <= self.max_fit)

    def why_not(self, quality: FaceQuality | None) -> str:
        """Why a face is not trusted ('' when it is)."""
        if quality is None:
            return "no quality measured"
        reasons = []
        if quality.size < self.min_size:
            reasons.append(f"face {quality.size:.0f} px < {self.min_size:.0f}")
        if quality.sharpness < self.min_sharpness:
            reasons.append(f"sharpness {quality.sharpness:.2f} < {self.min_sharpness:.2f}")
        if quality.yaw > self.max_yaw:
            reasons.append(f"yaw {quality.yaw:.0f} > {self.max_yaw:.0f} deg")
        if quality.fit > self.max_fit:
            reasons.append(f"landmark fit {quality.fit:.2f} > {self.max_fit:.2f}")
        return ", ".join(reasons)


TRUST = TrustRule()


@dataclass(frozen=True)
class Plausibility:
    """When a track's faces are not a face (people.screen_tracks): its box lies inside a larger
    face box of another track (at least `inside` of its area, that box at least `inside_ratio`
    times its area) in at least `inside_frames` of its frames; the median landmark fit of its
    measured faces is above `max_fit` eye distances; its best HOG detector score is below
    `min_score`; or its median box side is below `min_size` of the frame's longer side or above
    `max_size` of its shorter side and none of its faces is trusted (TRUST: in an extreme close-up,
    bench/film_identity.py, a real face's box is 1.0-1.2 times the frame's height)."""

    inside: float = 0.8
    inside_ratio: float = 2.0
    inside_frames: float = 0.5
    max_fit: float = 0.3
    min_score: float = 0.0
    min_size: float = 1 / 50
    max_size: float = 1.0


PLAUSIBLE = Plausibility()
