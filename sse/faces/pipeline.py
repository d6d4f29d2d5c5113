"""One video through the face pipeline, in two passes over its frames.

Pass 1 (analysis) decodes the frames at the stride, finds shot cuts (shots.py), detects faces every
`detect_every` frames (and after a tracker loss or a cut), follows every face with its correlation
tracker, computes 68 landmarks for every followed face and keeps a few face chips per track. At the
end the tracks are described and joined into people by identity and position (people.py); person 1,
the one with the most screen presence, is the target. With `faces='target'` only the target is kept,
with `faces='all'` every person with at least `min_person_frames` frames. Frames a kept person misses
inside its span, for at most `max_gap` sampled frames, get landmarks and box interpolated linearly
between the neighbouring frames, unless the gap holds a cut or an undecodable frame; the rest are
'none' (or 'undecodable'). Head pose is fitted on every frame with landmarks.
Pass 2 (rendering) decodes again and cuts the aligned or frontalized crop of every frame with
landmarks.

Memory (issue 21). No frame is held beyond the one being read, except the tracker's buffer of at
most 3 x `detect_every` gray frames for following a new face backwards (track.py); every crop is written as it is cut.
What grows with the video's length, per face (one person in one sampled frame), is compact: its box
(a Box of four floats) and status in the tracks, and the row of its 68 landmarks in a ``FaceStore``
(facestore.py): the landmarks themselves (float32, 544 bytes) go to an append-only temporary file
and are read back one face at a time (pose, crop, manifest entry); then, in the kept people's
records, a FrameRecord (~100 bytes) with the box, the landmarks' row and the pose, kept in the
store as 33 bytes. Per sampled frame one index. Face
chips (150x150 RGB, 66 KB each, up to `chips_per_track` per track) are held only while their track
is followed: a track is described (a few 128-D descriptors) as soon as it ends and its chips are
dropped, so what the people across cuts are built from is per track its boxes, statuses, qualities
and descriptors. A kept person holds records for its own span only (those outside are made when
`PersonRecords.records` is read), so a film's many people do not each hold a record per frame. The
manifest's per-frame entries are made and written one at a time (video.py).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from .align import ANCHOR_SETS
from .boxes import Box
from .crop import CropSpec, cut_crop
from .decode import IMAGE_EXTENSIONS, MediaReader
from .detect import SECOND_DETECTORS, FaceDetector
from .facestore import FaceStore
from .frontalize import Pose, estimate_pose
from .identity import SAME_PERSON_DISTANCE, ChipSampler, FaceDescriptor, face_chip
from .landmarks import LandmarkPredictor
from .people import (LinkConfig, Person, describe_track, describe_tracks, false_by_itself, identity_note, link_people,
                     screen_tracks, track_entries)
from .quality import face_quality
from .shots import ShotCutDetector
from .track import MultiFaceTracker, Track, TrackerConfig

FACES_MODES = ("target", "all")


@dataclass
class PipelineConfig:
    """Every setting of the pipeline; `output_settings` are those that change the outputs."""

    stride: int = 1
    detect_every: int = 5
    upsample: int = 1
    detect_width: int = 640
    second_detector: str = "none"
    photo_detector: str = "mmod"  # the second detector on a single photo (every face counts there)
    psr_threshold: float = 7.0
    max_gap: int = 5
    size: int = 128
    gray: bool = False
    frontalize: bool = False
    anchors: str = "eyes"
    mirror_yaw_start: float = 15.0
    mirror_yaw_full: float = 40.0
    faces: str = "target"
    identity_threshold: float = SAME_PERSON_DISTANCE
    identity_samples: int = 3
    chips_per_track: int = 32
    min_person_frames: int = 3
    cut_threshold: float = 0.08
    landmarks_model: str | None = None
    identity_model: str | None = None

    def __post_init__(self) -> None:
        if self.stride < 1 or self.detect_every < 1 or self.size < 16 or self.max_gap < 0:
            raise ValueError("stride and detect_every must be >= 1, size >= 16, max_gap >= 0")
        if self.anchors not in ANCHOR_SETS:
            raise ValueError(f"anchors must be one of {ANCHOR_SETS}")
        if self.photo_detector not in SECOND_DETECTORS:
            raise ValueError(f"photo_detector must be one of {SECOND_DETECTORS}, got {self.photo_detector!r}")
        if self.faces not in FACES_MODES:
            raise ValueError(f"faces must be one of {FACES_MODES}, got {self.faces!r}")
        if self.identity_samples < 2 or self.chips_per_track < 2 or self.min_person_frames < 1:
            raise ValueError("identity_samples and chips_per_track must be >= 2, min_person_frames >= 1")

    def output_settings(self) -> dict:
        settings = asdict(self)
        settings.pop("landmarks_model")
        settings.pop("identity_model")
        return settings

    def crop_spec(self) -> CropSpec:
        """The crop the pipeline writes: the release's 128 template at ``size``, as configured."""
        return CropSpec(size=self.size, anchors=self.anchors, gray=self.gray, frontalize=self.frontalize,
                        mirror_yaw_start=self.mirror_yaw_start, mirror_yaw_full=self.mirror_yaw_full)

    def link_config(self) -> LinkConfig:
        return LinkConfig(
            threshold=self.identity_threshold,
            samples=self.identity_samples,
            link_gap=(self.max_gap + 1) * self.stride,
        )


@dataclass
class FaceModels:
    """The detector, landmark predictor and face descriptor, loaded once per worker."""

    detector: FaceDetector
    predictor: LandmarkPredictor
    descriptor: FaceDescriptor

    @classmethod
    def load(cls, config: PipelineConfig) -> "FaceModels":
        landmarks = Path(config.landmarks_model) if config.landmarks_model else None
        identity = Path(config.identity_model) if config.identity_model else None
        return cls(
            FaceDetector(config.upsample, config.detect_width, config.second_detector),
            LandmarkPredictor(landmarks),
            FaceDescriptor(identity),
        )


class FrameRecord:
    """What the pipeline knows about one sampled frame of one person (None: no person): about 100
    bytes, plus its box and, where it has a face, its landmarks (a float32 68 x 2 array) and pose.
    A record made with a ``FaceStore`` keeps its landmarks and pose there (a row number, issue 21):
    ``landmarks`` and ``pose`` read them back (a new array and Pose each time), assigning stores them."""

    __slots__ = ("index", "status", "box", "person", "cropped", "_store", "_face", "_pose")

    def __init__(self, index: int, status: str = "none", box: Box | None = None, landmarks: np.ndarray | None = None,
                 pose: Pose | None = None, person: int | None = None, cropped: bool = False,
                 store: FaceStore | None = None, row: int | None = None) -> None:
        self.index = index
        self.status = status  # detected | tracked | interpolated | none | undecodable
        self.box = box
        self.person = person
        self.cropped = cropped  # pass 2 wrote its crop
        self._store = store
        self._face: np.ndarray | int | None = row
        self._pose: Pose | None = None
        if landmarks is not None:
            self.landmarks = landmarks
        if pose is not None:
            self.pose = pose

    @property
    def has_landmarks(self) -> bool:
        return self._face is not None

    @property
    def landmarks(self) -> np.ndarray | None:
        face = self._face
        return self._store.landmarks(face) if isinstance(face, int) else face

    @landmarks.setter
    def landmarks(self, value: np.ndarray | None) -> None:
        pose = self.pose
        if value is not None and self._store is not None and self._store.fits(value):
            self._face = self._store.add(value)
        else:
            self._face = value
        self._pose = None
        if pose is not None:
            self.pose = pose

    def attach(self, store: FaceStore, row: int) -> None:
        """Landmarks already stored in `store` at `row` (no pose yet)."""
        self._store, self._face, self._pose = store, row, None

    @property
    def pose(self) -> Pose | None:
        face = self._face
        return self._store.pose(face) if isinstance(face, int) else self._pose

    @pose.setter
    def pose(self, value: Pose | None) -> None:
        face = self._face
        if isinstance(face, int):
            if value is None:
                self._store.clear_pose(face)
            else:
                self._store.set_pose(face, value)
        else:
            self._pose = value

    def _fields(self) -> tuple:
        return (self.index, self.status, self.box, self.landmarks, self.pose, self.person, self.cropped)

    def __repr__(self) -> str:
        names = ("index", "status", "box", "landmarks", "pose", "person", "cropped")
        return "FrameRecord(" + ", ".join(f"{n}={v!r}" for n, v in zip(names, self._fields())) + ")"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrameRecord):
            return NotImplemented
        a, b = self._fields(), other._fields()
        same_points = (a[3] is None and b[3] is None) or (
            a[3] is not None and b[3] is not None and np.array_equal(a[3], b[3]))
        return same_points and a[:3] + a[4:] == b[:3] + b[4:]

    __hash__ = None

    def as_dict(self) -> dict:
        landmarks, pose = self.landmarks, self.pose
        return {
            "index": self.index,
            "person": self.person,
            "status": self.status,
            "box": self.box.as_list() if self.box else None,
            "landmarks": np.round(landmarks, 1).tolist() if landmarks is not None else None,
            "pose": pose.as_dict() if pose else None,
        }


class PersonRecords:
    """One kept person: its id (1 = the target), the tracker tracks it joins, its screen presence
    score, and one record per sampled frame of the clip (``records``). Only the records of its span
    (first to last frame with a face) are held; those outside it (status none, or undecodable) are
    made when ``records`` is read, so a film's many people do not each hold a record per frame."""

    def __init__(self, person_id: int, track_ids: list[int], score: float, records: list[FrameRecord],
                 identity: str = "", indices: Sequence[int] | None = None,
                 undecodable: frozenset[int] | set[int] = frozenset()) -> None:
        """``records``: every sampled frame's, or with ``indices`` (every sampled frame index) only
        those of the span."""
        self.person_id, self.track_ids, self.score, self.identity = person_id, track_ids, score, identity
        if indices is None:
            indices = [r.index for r in records]
            seen = [k for k, r in enumerate(records) if r.has_landmarks]
            records = records[seen[0]:seen[-1] + 1] if seen else []
        self._span = records
        self._indices = indices
        self._undecodable = undecodable

    @property
    def records(self) -> list[FrameRecord]:
        span = self._span
        if not span:
            return [self._outside(i) for i in self._indices]
        first, last = span[0].index, span[-1].index
        return ([self._outside(i) for i in self._indices if i < first] + list(span)
                + [self._outside(i) for i in self._indices if i > last])

    def _outside(self, index: int) -> FrameRecord:
        return FrameRecord(index, "undecodable" if index in self._undecodable else "none", person=self.person_id)

    def span(self) -> list[FrameRecord]:
        """The records from the person's first to its last frame with a face."""
        return self._span

    def as_dict(self) -> dict:
        present = [r.index for r in self._span if r.has_landmarks]
        return {
            "id": self.person_id,
            "tracks": self.track_ids,
            "score": round(self.score, 1),
            "frames": len(present),
            "first": min(present, default=None),
            "last": max(present, default=None),
            "identity": self.identity,
        }


@dataclass
class Analysis:
    """Result of pass 1. `records` are the target's (person 1's); `people` the kept people."""

    records: list[FrameRecord]
    people: list[PersonRecords] = field(default_factory=list)
    tracks: list[dict] = field(default_factory=list)
    target_tracks: list[int] = field(default_factory=list)
    frame_size: tuple[int, int] = (0, 0)  # width, height
    backend: str = ""
    fps: float | None = None
    cuts: list[int] = field(default_factory=list)
    undecodable: list[dict] = field(default_factory=list)  # {"index", "file", "reason"}
    left_out: list[dict] = field(default_factory=list)  # {"track", "first", "last", "frames", "reason"}


def to_gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def analyse(path: Path, config: PipelineConfig, models: FaceModels) -> Analysis:
    """Pass 1: cuts, detection, tracking, landmarks, chips; people; interpolation, pose."""
    reader = MediaReader(path, config.stride)
    second = config.photo_detector if is_photo(path) else None
    tracker = MultiFaceTracker(TrackerConfig(detect_every=config.detect_every, psr_threshold=config.psr_threshold))
    shots = ShotCutDetector(config.cut_threshold)
    store = FaceStore()  # every face's landmarks (a temporary file) and, for kept people, pose
    landmarks: dict[int, dict[int, int]] = {}  # track id -> {frame index: its landmarks' row in store}
    samplers: dict[int, ChipSampler] = {}
    indices: list[int] = []
    cuts: list[int] = []
    undecodable: list[dict] = []
    link = config.link_config()
    live: list[Track] = []  # the tracks still followed
    described: dict[int, dict[int, np.ndarray]] = {}  # track id -> its descriptors (chips dropped)

    def ended(tracks: list[Track]) -> None:
        """Describe tracks that have ended (unless false faces by themselves) and drop their chips."""
        for track in tracks:
            sampler = samplers.get(track.track_id)
            if not false_by_itself(track, sampler):
                described[track.track_id] = describe_track(track, sampler, models.descriptor, link)
            if sampler is not None:
                sampler.release()

    width = height = 0
    for frame in reader.frames():
        indices.append(frame.index)
        if frame.image is None:
            undecodable.append({"index": frame.index, "file": frame.source, "reason": frame.error})
            continue
        height, width = frame.image.shape[:2]
        gray = to_gray(frame.image)
        if shots.is_cut(gray):
            cuts.append(frame.index)
            tracker.cut()
        detections = models.detector.detect(gray, second) if tracker.needs_detection() else None
        rgb: list[np.ndarray] = []
        for track, index, image in tracker.step(frame.index, gray, detections):
            box = track.boxes[index]
            points = models.predictor(image, box)
            landmarks.setdefault(track.track_id, {})[index] = store.add(points)
            if index == frame.index and track.status[index] == "detected":
                sampler = samplers.get(track.track_id)
                if sampler is None:
                    sampler = samplers[track.track_id] = ChipSampler(config.chips_per_track)
                sampler.add(index, lambda: face_chip(_rgb(frame.image, rgb), box, points),
                            lambda chip: face_quality(chip, box, points, (width, height)))
        now = tracker.active_tracks()
        ended([t for t in live if not t.active])
        live = now
    reader.check_complete()
    ended(live)
    plausible, false_faces = screen_tracks(tracker.tracks, samplers, (width, height))
    fragments = describe_tracks(plausible, samplers, models.descriptor, link, described)
    short: list[Person] = []
    people = link_people(fragments, cuts, link, min(config.min_person_frames, reader.decoded_frames), short)
    kept = people if config.faces == "all" else people[:1]
    broken = {u["index"] for u in undecodable}
    results = [
        PersonRecords(p.person_id, p.track_ids, p.score,
                      person_records(p, indices, landmarks, set(cuts), broken, config, (width, height), store),
                      identity_note({i: q for f in p.fragments for i, q in f.qualities.items()}, link.trust),
                      indices, broken)
        for p in kept
    ]
    tracks = track_entries(tracker.tracks, samplers, fragments, people, kept, short, false_faces, link)
    left_out = [{"track": e["id"], "first": e["first"], "last": e["last"], "frames": e["frames"],
                 "reason": e["left_out"]} for e in tracks if "left_out" in e]
    target = results[0].records if results else _empty_records(indices, broken)
    return Analysis(
        target, results, tracks, results[0].track_ids if results else [], (width, height), reader.backend,
        reader.fps, cuts, undecodable, left_out,
    )


def is_photo(path: Path) -> bool:
    """A single image file (not a video, not a folder of frames)."""
    return Path(path).is_file() and Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _rgb(image: np.ndarray, cache: list[np.ndarray]) -> np.ndarray:
    """The RGB version of a BGR frame, converted once per frame (`cache` holds it)."""
    if not cache:
        cache.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB))
    return cache[0]


def _empty_records(indices: list[int], undecodable: set[int]) -> list[FrameRecord]:
    return [FrameRecord(i, "undecodable" if i in undecodable else "none") for i in indices]


def person_records(person: Person, indices: list[int], landmarks: dict[int, dict[int, int]],
                   cuts: set[int], undecodable: set[int], config: PipelineConfig,
                   frame_size: tuple[int, int], store: FaceStore) -> list[FrameRecord]:
    """One record per sampled frame of `person`'s span (its first to its last frame with a face):
    its boxes and landmarks, interpolated gaps (never across a cut or an undecodable frame), head pose.
    `landmarks`: track id -> {frame index: row in `store`}; the records keep their landmarks and
    poses in `store` (interpolated landmarks are appended to it)."""
    boxes, status, track_of = person.boxes, person.status, person.track_of
    if not boxes:
        return []
    records = []
    for index in indices[bisect_left(indices, min(boxes)):bisect_right(indices, max(boxes))]:
        record = FrameRecord(index, "undecodable" if index in undecodable else "none", person=person.person_id,
                             store=store)
        if index in boxes:
            record.status = status[index]
            record.box = boxes[index]
            record.attach(store, landmarks[track_of[index]][index])
        records.append(record)
    interpolate_gaps(records, config.max_gap, cuts | undecodable)
    for record in records:
        if record.has_landmarks:
            record.pose = estimate_pose(record.landmarks, *frame_size)
    return records


def interpolate_gaps(records: list[FrameRecord], max_gap: int, barriers: set[int] = frozenset()) -> None:
    """Fill runs of at most `max_gap` 'none' records between two records with landmarks, unless a
    barrier (a cut: the frame that starts a new shot, or an undecodable frame) lies in the run or
    at its end."""
    known = [i for i, r in enumerate(records) if r.has_landmarks]
    for a, b in zip(known, known[1:]):
        gap = b - a - 1
        if gap == 0 or gap > max_gap or any(records[k].index in barriers for k in range(a + 1, b + 1)):
            continue
        first, last = records[a], records[b]
        first_points, last_points = first.landmarks, last.landmarks
        for k in range(a + 1, b):
            t = (k - a) / (b - a)
            records[k].status = "interpolated"
            records[k].box = Box.interpolate(first.box, last.box, t)
            records[k].landmarks = (1 - t) * first_points + t * last_points


def render(
    path: Path, records: list[FrameRecord], config: PipelineConfig, models: FaceModels
) -> Iterator[tuple[FrameRecord, np.ndarray]]:
    """Pass 2: yield (record, crop) for every record with landmarks (of any person), in frame order."""
    wanted: dict[int, list[FrameRecord]] = {}
    for record in records:
        if record.has_landmarks:
            wanted.setdefault(record.index, []).append(record)
    if not wanted:
        return
    last = max(wanted)
    for frame in MediaReader(path, config.stride).frames():
        if frame.image is not None:
            image = to_gray(frame.image) if config.gray else frame.image
            for record in wanted.get(frame.index, []):
                yield record, crop_face(image, record, config, models)
        if frame.index >= last:
            break


def crop_face(image: np.ndarray, record: FrameRecord, config: PipelineConfig, models: FaceModels) -> np.ndarray:
    """The size x size crop of one frame: frontalized or similarity-aligned (``crop.cut_crop``)."""
    return cut_crop(image, record.landmarks, config.crop_spec(), pose=record.pose)

