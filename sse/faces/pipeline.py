"""One video through the face pipeline, in two passes over its frames.

Pass 1 (analysis) decodes the frames at the stride, detects faces every `detect_every` frames (and
after a tracker loss), follows every face with its correlation tracker, computes 68 landmarks for
every followed face, and at the end picks the target (the best chain of linked track fragments, see
track.py). Frames the target misses inside its span, for at most `max_gap` sampled frames, get
landmarks and box interpolated linearly between the neighbouring frames; the rest are 'none'. Head pose is fitted on every frame with landmarks.
Pass 2 (rendering) decodes again and cuts the aligned or frontalized crop of every frame with
landmarks. Two passes keep memory flat for long videos: only the landmarks are held, not frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .align import ANCHOR_SETS, align_face
from .boxes import Box
from .decode import MediaReader
from .detect import FaceDetector
from .frontalize import Frontalizer, Pose, estimate_pose
from .landmarks import LandmarkPredictor
from .track import MultiFaceTracker, TrackerConfig


@dataclass
class PipelineConfig:
    """Every setting of the pipeline; `output_settings` are those that change the outputs."""

    stride: int = 1
    detect_every: int = 5
    upsample: int = 1
    detect_width: int = 640
    second_detector: str = "none"
    psr_threshold: float = 7.0
    max_gap: int = 5
    size: int = 128
    gray: bool = False
    frontalize: bool = False
    anchors: str = "eyes"
    mirror_yaw_start: float = 15.0
    mirror_yaw_full: float = 40.0
    landmarks_model: str | None = None

    def __post_init__(self) -> None:
        if self.stride < 1 or self.detect_every < 1 or self.size < 16 or self.max_gap < 0:
            raise ValueError("stride and detect_every must be >= 1, size >= 16, max_gap >= 0")
        if self.anchors not in ANCHOR_SETS:
            raise ValueError(f"anchors must be one of {ANCHOR_SETS}")

    def output_settings(self) -> dict:
        settings = asdict(self)
        settings.pop("landmarks_model")
        return settings


@dataclass
class FaceModels:
    """The detector, landmark predictor and frontalizer, loaded once per worker process."""

    detector: FaceDetector
    predictor: LandmarkPredictor
    frontalizer: Frontalizer

    @classmethod
    def load(cls, config: PipelineConfig) -> "FaceModels":
        model = Path(config.landmarks_model) if config.landmarks_model else None
        return cls(
            FaceDetector(config.upsample, config.detect_width, config.second_detector),
            LandmarkPredictor(model),
            Frontalizer(config.size, config.mirror_yaw_start, config.mirror_yaw_full),
        )


@dataclass
class FrameRecord:
    """What the pipeline knows about one sampled frame of the target face."""

    index: int
    status: str = "none"  # detected | tracked | interpolated | none
    box: Box | None = None
    landmarks: np.ndarray | None = None
    pose: Pose | None = None

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "status": self.status,
            "box": self.box.as_list() if self.box else None,
            "landmarks": np.round(self.landmarks, 1).tolist() if self.landmarks is not None else None,
            "pose": self.pose.as_dict() if self.pose else None,
        }


@dataclass
class Analysis:
    """Result of pass 1."""

    records: list[FrameRecord]
    tracks: list[dict] = field(default_factory=list)
    target_tracks: list[int] = field(default_factory=list)
    frame_size: tuple[int, int] = (0, 0)  # width, height
    backend: str = ""


def to_gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def analyse(path: Path, config: PipelineConfig, models: FaceModels) -> Analysis:
    """Pass 1: detection, tracking, landmarks, target choice, interpolation, pose."""
    reader = MediaReader(path, config.stride)
    tracker = MultiFaceTracker(
        TrackerConfig(
            detect_every=config.detect_every,
            psr_threshold=config.psr_threshold,
            link_gap=(config.max_gap + 1) * config.stride,
        )
    )
    landmarks: dict[tuple[int, int], np.ndarray] = {}
    indices: list[int] = []
    width = height = 0
    for frame in reader.frames():
        indices.append(frame.index)
        if frame.image is None:
            continue
        height, width = frame.image.shape[:2]
        gray = to_gray(frame.image)
        detections = models.detector.detect(gray) if tracker.needs_detection() else None
        for track, index, image in tracker.step(frame.index, gray, detections):
            landmarks[track.track_id, index] = models.predictor(image, track.boxes[index])
    reader.check_complete()
    target = tracker.target()
    records = [FrameRecord(i) for i in indices]
    if target is not None:
        for record in records:
            if record.index in target.boxes:
                record.status = target.status[record.index]
                record.box = target.boxes[record.index]
                record.landmarks = next(landmarks[p, record.index] for p in target.parts if (p, record.index) in landmarks)
        interpolate_gaps(records, config.max_gap)
        for record in records:
            if record.landmarks is not None:
                record.pose = estimate_pose(record.landmarks, width, height)
    tracks = [
        {"id": t.track_id, "first": min(t.boxes), "last": max(t.boxes), "frames": len(t.boxes), "score": round(t.score, 1)}
        for t in tracker.tracks
    ]
    return Analysis(records, tracks, target.parts if target else [], (width, height), reader.backend)


def interpolate_gaps(records: list[FrameRecord], max_gap: int) -> None:
    """Fill runs of at most `max_gap` 'none' records between two records with landmarks."""
    known = [i for i, r in enumerate(records) if r.landmarks is not None]
    for a, b in zip(known, known[1:]):
        gap = b - a - 1
        if gap == 0 or gap > max_gap:
            continue
        first, last = records[a], records[b]
        for k in range(a + 1, b):
            t = (k - a) / (b - a)
            records[k].status = "interpolated"
            records[k].box = Box.interpolate(first.box, last.box, t)
            records[k].landmarks = (1 - t) * first.landmarks + t * last.landmarks


def render(
    path: Path, records: list[FrameRecord], config: PipelineConfig, models: FaceModels
) -> Iterator[tuple[FrameRecord, np.ndarray]]:
    """Pass 2: yield (record, crop) for every record with landmarks, in frame order."""
    wanted = {r.index: r for r in records if r.landmarks is not None}
    if not wanted:
        return
    last = max(wanted)
    for frame in MediaReader(path, config.stride).frames():
        record = wanted.get(frame.index)
        if record is not None and frame.image is not None:
            image = to_gray(frame.image) if config.gray else frame.image
            yield record, crop_face(image, record, config, models)
        if frame.index >= last:
            break


def crop_face(image: np.ndarray, record: FrameRecord, config: PipelineConfig, models: FaceModels) -> np.ndarray:
    """The size x size crop of one frame: frontalized or similarity-aligned."""
    if config.frontalize:
        return models.frontalizer(image, record.landmarks, record.pose)
    return align_face(image, record.landmarks, config.size, config.anchors)

