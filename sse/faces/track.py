"""Multi-face tracking: detections every N frames, dlib correlation trackers in between.

Every face gets its own track and its own correlation tracker, so several faces are followed at once.
On a detection frame the trackers are advanced first, then detections are
matched to them by box overlap (Hungarian assignment on IoU, IoU >= iou_threshold); a matched
tracker restarts on the detection box, an unmatched detection opens a new track, a track missed by
`max_misses` detection rounds in a row ends. Between detections a tracker whose peak-to-sidelobe
ratio drops below `psr_threshold` (or whose box leaves the frame) ends its track and asks for a
detection on the next frame. A new track is also followed backwards over the shot's last
`follow_back` frames (kept in a short buffer; by default those of the last three detection rounds,
detection frames included), so a face that appears between two detection frames is covered from
its first frame, not from the next scheduled detection, and a face the detector misses in a
round or two (a dark or soft face, measured on bench/film_identity.py's close-ups) is covered from
where the tracker can follow it back to. At a shot cut (`cut`) every
track ends and the next frame is a detection frame: a track never spans two shots. Which tracks are
one person is decided afterwards, by identity (people.py).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import dlib
import numpy as np
from scipy.optimize import linear_sum_assignment

from .boxes import Box
from .detect import Detection


@dataclass
class Track:
    """One face followed through the clip: its box per frame and how each was obtained."""

    track_id: int
    boxes: dict[int, Box] = field(default_factory=dict)
    status: dict[int, str] = field(default_factory=dict)  # 'detected' | 'tracked'
    scores: dict[int, float] = field(default_factory=dict)  # HOG detector score on its HOG detections
    active: bool = True
    misses: int = 0
    tracker: dlib.correlation_tracker | None = field(default=None, repr=False)

    @property
    def last_box(self) -> Box:
        return self.boxes[max(self.boxes)]

    @property
    def score(self) -> float:
        """Size x persistence: the sum of box sizes over the frames where the face was followed."""
        return float(sum(box.size for box in self.boxes.values()))

    def restart(self, image: np.ndarray, box: Box) -> None:
        self.tracker = dlib.correlation_tracker()
        self.tracker.start_track(image, box.to_dlib())


@dataclass
class TrackerConfig:
    detect_every: int = 5
    iou_threshold: float = 0.3
    psr_threshold: float = 7.0
    max_misses: int = 2
    min_visible: float = 0.5
    follow_back: int | None = None  # frames a new track may be followed back over (None: 3 x detect_every)

    @property
    def back_frames(self) -> int:
        return 3 * self.detect_every if self.follow_back is None else self.follow_back


class MultiFaceTracker:
    """Feeds frames in order; call `step` once per sampled frame."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.tracks: list[Track] = []
        self._active: list[Track] = []  # a superset of the active tracks (ended ones pruned when read)
        self._since_detection = 0
        self._force_detection = True
        self._recent: deque[tuple[int, np.ndarray]] = deque(maxlen=max(1, self.config.back_frames))

    def cut(self) -> None:
        """A new shot starts with the next frame: end every track, detect on the next frame, and do
        not follow new faces back into the previous shot."""
        for track in self.active_tracks():
            track.active = False
        self._force_detection = True
        self._recent.clear()

    def needs_detection(self) -> bool:
        """Whether the next frame is a detection frame (schedule or a lost tracker)."""
        return self._force_detection or self._since_detection >= self.config.detect_every

    def step(self, index: int, image: np.ndarray, detections: list[Detection] | None) -> list[tuple[Track, int, np.ndarray]]:
        """Advance all tracks to frame `index`; `detections` is None on a tracking-only frame.

        Returns (track, frame index, image) for every box this step added (this frame's and those
        filled in backwards for new tracks), so that the caller can compute their landmarks."""
        added = self._advance(index, image, detections)
        if self.config.back_frames > 0:
            self._recent.append((index, image))
        return added

    def _advance(self, index: int, image: np.ndarray, detections: list[Detection] | None) -> list[tuple[Track, int, np.ndarray]]:
        height, width = image.shape[:2]
        predicted: list[tuple[Track, Box, float]] = []
        for track in self.active_tracks():
            psr = track.tracker.update(image)
            predicted.append((track, Box.from_dlib(track.tracker.get_position()), psr))
        if detections is None:
            self._since_detection += 1
            for track, box, psr in predicted:
                if psr < self.config.psr_threshold or box.visible_fraction(width, height) < self.config.min_visible:
                    track.active = False
                    self._force_detection = True
                else:
                    track.boxes[index] = box
                    track.status[index] = "tracked"
            return [(t, index, image) for t in self.active_tracks()]
        self._since_detection = 1
        self._force_detection = False
        matched_tracks, matched_detections = self._associate([box for _, box, _ in predicted], detections)
        for (track, _, _), det_index in zip([predicted[i] for i in matched_tracks], matched_detections):
            box = detections[det_index].box
            track.boxes[index] = box
            track.status[index] = "detected"
            _note_score(track, index, detections[det_index])
            track.misses = 0
            track.restart(image, box)
        for i, (track, box, psr) in enumerate(predicted):
            if i in matched_tracks:
                continue
            track.misses += 1
            lost = psr < self.config.psr_threshold or box.visible_fraction(width, height) < self.config.min_visible
            if lost or track.misses >= self.config.max_misses:
                track.active = False
            else:
                track.boxes[index] = box
                track.status[index] = "tracked"
        added = [(t, index, image) for t in self.active_tracks()]
        for j, detection in enumerate(detections):
            if j not in matched_detections:
                track = Track(track_id=len(self.tracks))
                track.boxes[index] = detection.box
                track.status[index] = "detected"
                _note_score(track, index, detection)
                added += [(track, i, img) for i, img in self._follow_backwards(track, image, detection.box)]
                track.restart(image, detection.box)
                self.tracks.append(track)
                self._active.append(track)
                added.append((track, index, image))
        return added

    def _follow_backwards(self, track: Track, image: np.ndarray, box: Box) -> list[tuple[int, np.ndarray]]:
        """Track a new face back over the buffered frames while the tracker holds and no other track
        already covers that spot."""
        tracker = dlib.correlation_tracker()
        tracker.start_track(image, box.to_dlib())
        filled = []
        for index, earlier in reversed(self._recent):
            psr = tracker.update(earlier)
            found = Box.from_dlib(tracker.get_position())
            height, width = earlier.shape[:2]
            if psr < self.config.psr_threshold or found.visible_fraction(width, height) < self.config.min_visible:
                break
            if any(index in t.boxes and t.boxes[index].iou(found) >= self.config.iou_threshold for t in self.tracks):
                break
            track.boxes[index] = found
            track.status[index] = "tracked"
            filled.append((index, earlier))
        return filled

    def active_tracks(self) -> list[Track]:
        """The tracks still followed, in creation order (the cost grows with them, not with every
        track of the video)."""
        still = []
        for track in self._active:
            if track.active:
                still.append(track)
            else:
                track.tracker = None  # its correlation filter (about 1 MB) is no longer needed
        self._active = still
        return list(still)

    def _associate(self, boxes: list[Box], detections: list[Detection]) -> tuple[list[int], list[int]]:
        """Hungarian matching on IoU; pairs below the threshold are dropped."""
        if not boxes or not detections:
            return [], []
        iou = np.array([[b.iou(d.box) for d in detections] for b in boxes])
        rows, cols = linear_sum_assignment(-iou)
        keep = iou[rows, cols] >= self.config.iou_threshold
        return list(rows[keep]), list(cols[keep])



def _note_score(track: Track, index: int, detection: Detection) -> None:
    """Keep the detector's score of a HOG detection (the second detectors score on other scales)."""
    if detection.source == "hog":
        track.scores[index] = detection.score
