"""Face identity: dlib's 128-D face descriptor, and the face chips it is computed on.

The model is `dlib_face_recognition_resnet_model_v1.dat` (a ResNet trained for face verification:
two faces of one person lie within Euclidean distance 0.6 of each other, dlib's usual threshold),
found like the landmark model: an explicit path (`--identity-model`), the `models/` folder of
`face_recognition_models` (located, not imported), Debian's `libdlib-data`.

A descriptor costs about 0.1 s on one CPU core, so the pipeline does not describe every frame: on
the frames where a track is detected it cuts the 150x150 face chip (about 1 ms; `ChipSampler` keeps
a bounded, evenly thinned set of them per track, each with its quality: quality.py), and describes
only a few chips per track once the clip is read (see people.py).
"""

from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np

from .boxes import Box
from .landmarks import find_model_file

DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold for "same person" on this model
CHIP_SIZE = 150  # the model's input side
CHIP_PADDING = 0.25


def face_shape(box: Box, landmarks: np.ndarray) -> dlib.full_object_detection:
    """dlib's shape object for a box and its (68, 2) landmarks."""
    points = [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks]
    return dlib.full_object_detection(box.to_dlib(), points)


def face_chip(rgb: np.ndarray, box: Box, landmarks: np.ndarray) -> np.ndarray:
    """The aligned 150x150 RGB chip the descriptor network reads, cut from an RGB uint8 frame."""
    return dlib.get_face_chip(rgb, face_shape(box, landmarks), size=CHIP_SIZE, padding=CHIP_PADDING)


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors (below SAME_PERSON_DISTANCE: one person)."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


class FaceDescriptor:
    """dlib's face recognition network: face chips -> 128-D descriptors."""

    def __init__(self, model_path: Path | None = None):
        self.model_path = find_model_file(DESCRIPTOR_MODEL, model_path, "--identity-model")
        self._net = dlib.face_recognition_model_v1(str(self.model_path))

    def __call__(self, chips: list[np.ndarray]) -> np.ndarray:
        """Descriptors of 150x150 RGB chips as a float32 (n, 128) array."""
        if not chips:
            return np.zeros((0, 128), dtype=np.float32)
        return np.array([np.array(self._net.compute_face_descriptor(chip)) for chip in chips], dtype=np.float32)

    def describe_frame(self, rgb: np.ndarray, box: Box, landmarks: np.ndarray) -> np.ndarray:
        """The descriptor of one face of an RGB frame (a float32 (128,) array)."""
        return self([face_chip(rgb, box, landmarks)])[0]


class ChipSampler:
    """At most `capacity` face chips of one track, spread evenly over its frames, with the quality
    of each (quality.FaceQuality) when the caller measures it.

    Chips are added in frame order; when the set is full every other chip is dropped, so memory
    stays bounded (capacity x 66 KB) on long tracks while the kept chips still span the track."""

    def __init__(self, capacity: int = 32):
        if capacity < 2:
            raise ValueError(f"chip capacity must be >= 2, got {capacity}")
        self.capacity = capacity
        self.chips: dict[int, np.ndarray] = {}
        self.qualities: dict[int, object] = {}
        self._step = 1
        self._seen = 0

    def wants(self) -> bool:
        """Whether the next offered chip will be kept (callers skip cutting it otherwise)."""
        return self._seen % self._step == 0

    def add(self, index: int, chip_source, quality_of=None) -> None:
        """Offer the chip of frame `index`; `chip_source()` cuts it and `quality_of(chip)` measures
        it, both called only if it is kept."""
        if self.wants():
            chip = self.chips[index] = chip_source()
            if quality_of is not None:
                self.qualities[index] = quality_of(chip)
            if len(self.chips) > self.capacity:
                self.chips = dict(sorted(self.chips.items())[::2])
                self.qualities = {i: q for i, q in self.qualities.items() if i in self.chips}
                self._step *= 2
        self._seen += 1

    def indices(self) -> list[int]:
        return sorted(self.chips)

    def release(self) -> None:
        """Drop the chips (images), keep their qualities: the track has ended and been described."""
        self.chips = {}
