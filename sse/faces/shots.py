"""Shot cuts: where consecutive sampled frames change abruptly.

Each frame is reduced to a 64x36 grayscale thumbnail; a cut is declared when the mean absolute
difference to the previous thumbnail is at least `threshold` (fraction of the 0-255 range) and at
least `ratio` times the mean difference of the last few frames (camera motion raises every
difference, a cut only one). On the clips in shared/data/media the cuts score 0.11-0.12 and the
largest difference inside a shot 0.05. A cut ends every track (a correlation tracker would otherwise
carry on onto whatever face is now at that place) and no gap is interpolated across it; photos of
a set that is not a frame sequence are cuts from one another by construction. The same measure
(`frame_difference`) tells a folder of numbered photos from a clip's frames (decode.py): most
neighbouring photos differ as a cut does, neighbouring frames of a clip do not.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

THUMBNAIL = (64, 36)


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """The 64x36 float32 thumbnail the cut measure compares."""
    return cv2.resize(gray, THUMBNAIL, interpolation=cv2.INTER_AREA).astype(np.float32)


def frame_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, as a fraction of the 0-255 range."""
    return float(np.abs(a - b).mean()) / 255.0


class ShotCutDetector:
    """Feed the sampled frames in order with `is_cut`."""

    def __init__(self, threshold: float = 0.08, ratio: float = 3.0, history: int = 5):
        self.threshold = threshold
        self.ratio = ratio
        self._previous: np.ndarray | None = None
        self._recent: deque[float] = deque(maxlen=history)

    def is_cut(self, gray: np.ndarray) -> bool:
        """Whether this grayscale frame starts a new shot (the first frame does not)."""
        thumb = thumbnail(gray)
        previous, self._previous = self._previous, thumb
        if previous is None:
            return False
        difference = frame_difference(thumb, previous)
        usual = float(np.mean(self._recent)) if self._recent else 0.0
        self._recent.append(difference)
        return difference >= self.threshold and difference >= self.ratio * usual

    def reset(self) -> None:
        """Forget the previous frame (e.g. after an undecodable one)."""
        self._previous = None
