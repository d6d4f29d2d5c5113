"""Face detection: dlib's HOG frontal face detector, optionally a second detector for hard frames.

Frames wider than `detect_width` are downscaled before detection (HOG cost grows with the pixel
count; landmarks are still computed on the full frame), and boxes are scaled back. The second
detector runs only when HOG finds nothing: 'haar' (OpenCV's frontal face cascade, fast, more false
alarms) or 'mmod' (dlib's CNN detector from face_recognition_models, slow on a CPU, finds profile
and small faces HOG misses; it runs without upsampling first, four times cheaper, and upsampled
only where that finds nothing). A call may name its own second detector (the pipeline uses mmod on
single photos, where a missed face is a missed answer and time matters less than on video);
each second detector is loaded on first use.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import dlib
import numpy as np

from .boxes import Box
from .landmarks import find_model_file

SECOND_DETECTORS = ("none", "haar", "mmod")
MMOD_MODEL = "mmod_human_face_detector.dat"


@dataclass(frozen=True)
class Detection:
    """A face box in full-frame pixels, the detector's score and which detector found it."""

    box: Box
    score: float
    source: str


class FaceDetector:
    """HOG detection (upsampling configurable) with an optional fallback detector."""

    def __init__(self, upsample: int = 1, detect_width: int = 640, second: str = "none", min_score: float = 0.0):
        if second not in SECOND_DETECTORS:
            raise ValueError(f"second detector must be one of {SECOND_DETECTORS}, got {second!r}")
        self.upsample = upsample
        self.detect_width = detect_width
        self.min_score = min_score
        self.second = second
        self._hog = dlib.get_frontal_face_detector()
        self._second: dict[str, object] = {}
        if second != "none":
            self._load(second)

    def _load(self, name: str):
        if name not in self._second:
            if name == "haar":
                self._second[name] = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
            else:
                self._second[name] = dlib.cnn_face_detection_model_v1(str(find_model_file(MMOD_MODEL)))
        return self._second[name]

    def detect(self, gray: np.ndarray, second: str | None = None) -> list[Detection]:
        """Faces in a grayscale uint8 frame, largest first; ``second`` overrides the second detector."""
        second = self.second if second is None else second
        if second not in SECOND_DETECTORS:
            raise ValueError(f"second detector must be one of {SECOND_DETECTORS}, got {second!r}")
        small, scale = self._downscale(gray)
        rects, scores, _ = self._hog.run(small, self.upsample, self.min_score)
        found = [Detection(Box.from_dlib(r).scaled(1 / scale), float(s), "hog") for r, s in zip(rects, scores)]
        if not found and second == "haar":
            faces = self._load("haar").detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
            found = [Detection(Box(x, y, x + w, y + h).scaled(1 / scale), 0.0, "haar") for x, y, w, h in faces]
        for upsample in sorted({0, self.upsample}) if second == "mmod" else ():
            if found:
                break
            found = [
                Detection(Box.from_dlib(d.rect).scaled(1 / scale), float(d.confidence), "mmod")
                for d in self._load("mmod")(small, upsample)
            ]
        return sorted(found, key=lambda d: -d.box.area)

    def _downscale(self, gray: np.ndarray) -> tuple[np.ndarray, float]:
        width = gray.shape[1]
        if self.detect_width <= 0 or width <= self.detect_width:
            return gray, 1.0
        scale = self.detect_width / width
        size = (self.detect_width, int(round(gray.shape[0] * scale)))
        return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), scale
