"""One video's (or photo's) emotions: its face crops scored by every model, and its output folder.

Reads the face pipeline's folder of the video (``faces/<video id>/``: manifest.json with every
person's frames, boxes and crops) and writes ``<out>/<video id>/``:

Each model scores its own crop of every face (``model.json``'s ``crop``), cut from the source frame
at the manifest's landmarks, as its training data was cut; a model without one scores the face
pipeline's crop, resized.

* ``predictions.csv``: one row per crop and model, columns ``PREDICTIONS_HEADER``: the source file,
  the video id, the person id (1 = most screen presence), the source frame index, its time in
  seconds (empty for a photo), the face box in source pixels (left, top, right, bottom), the frame
  status (detected, tracked, interpolated), the model, the seven probabilities (CLASS_NAMES order)
  and the predicted class;
* ``timeline_p<id>.png``: per person seen in more than one frame, the primary model's probabilities
  over source time (over source frames when the source has no frame rate);
* ``contact_sheet.png``: up to 48 crops of each person, framed and captioned with the prediction;
* with ``annotate``: ``annotated.mp4`` (a video) or ``annotated.png`` (a photo), every face boxed
  with its person, predicted class, probability and bars;
* ``summary.json`` last (its presence, with the same settings and the ``source_key`` of the face
  pipeline's manifest, i.e. the same source path, size and time, marks the video as done):
  ``{"format": "sse.predict.summary/1", "video", "source", "source_key", "fps", "settings", "primary",
  "people": [{"person", "frames", "first", "last", "seconds", "models": {model: {"mean": {class: p},
  "dominant": class}}, "mean", "dominant"}], "complete": true}`` (``mean`` and ``dominant`` of the
  primary model).

Redoing a video first removes what an earlier run wrote into its folder (summary.json first, then
predictions.csv, the timelines, the sheet, annotated.mp4/png), so no file of another source or
another set of people is left beside the new ones; other files in the folder stay.

A video is streamed (issue 21): the manifest's entries are read one at a time into compact arrays
(person, frame, box, status: about 50 bytes a face) and an unnamed temporary file of landmarks; the
source is decoded once, and ``CHUNK_FACES`` faces at a time (whole frames) are cut for every model,
scored, and their CSV rows spooled to another temporary file, from which predictions.csv is put
together in (model, person, frame) order and renamed into place. What stays per face is those
numbers and the primary model's 7 probabilities (for the timelines); per person and model a float32
sum of probabilities (the summary's means, summed face after face as numpy's mean sums them). The
contact sheet reads its tiles back from the crop files; annotated.mp4 is decoded, drawn and encoded
one frame at a time. A video that fits in one chunk is scored in the same batches as the whole
video at once, so its files are those of the code before streaming; with several chunks, a model's
batches differ and a probability may differ in its last printed digit.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from caffe.atomic import atomic_path
from sse.classes import CLASS_NAMES
from sse.faces import atomic
from sse.faces.contact import pick_evenly
from sse.faces.decode import MediaReader
from sse.faces.video import crop_name, iter_frames
from sse.fusion.evaluate import save_timeline_png

from sse.faces.crop import CropSpec, cut_crop
from sse.shipped import FaceCrops

from .draw import annotate_face, sheet
from .models import ModelError, Scorer

SUMMARY = "summary.json"
SUMMARY_FORMAT = "sse.predict.summary/1"
PREDICTIONS = "predictions.csv"
PREDICTIONS_HEADER = ("source", "video", "person", "frame", "time", "left", "top", "right", "bottom",
                      "status", "model", *CLASS_NAMES, "predicted")
SHEET_TILES = 48


STATUSES = ("detected", "tracked", "interpolated", "none", "undecodable")
CHUNK_FACES = 512  # faces scored together (whole frames: a chunk may pass it by one frame's faces); a model
# without its own crop reads the pipeline's 128x128x3 crops, 25 MB a chunk


class LandmarkFile:
    """The 68 x 2 landmarks of every face in an unnamed temporary file (float64, as the manifest's
    one-decimal values were read), row by row, so a long video's landmarks are on disk, not in memory."""

    ROW = 68 * 2 * 8

    def __init__(self, folder: Path | None = None) -> None:
        self.file = tempfile.TemporaryFile(dir=folder)
        self.count = 0

    def append(self, points) -> None:
        row = np.asarray(points, np.float64).reshape(68, 2)
        self.file.write(row.tobytes())
        self.count += 1

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The landmarks of file rows ``rows`` (any order), as an n x 68 x 2 float64 array."""
        self.file.flush()
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), 68, 2), np.float64)
        order = np.argsort(rows, kind="stable")
        k = 0
        while k < len(order):  # one read per run of consecutive rows
            first = end = int(rows[order[k]])
            m = k + 1
            while m < len(order) and int(rows[order[m]]) == end + 1:
                end += 1
                m += 1
            data = os.pread(self.file.fileno(), (end - first + 1) * self.ROW, first * self.ROW)
            out[order[k:m]] = np.frombuffer(data, np.float64).reshape(-1, 68, 2)
            k = m
        return out

    def close(self) -> None:
        self.file.close()


@dataclass
class Faces:
    """The crops of one video that the face pipeline kept, in (person, frame) order, as compact
    arrays (about 50 bytes a face); their landmarks in a ``LandmarkFile`` (row ``landmark_rows[i]``
    for face i), their crop files named as the pipeline names them (``crop_path``)."""

    persons: np.ndarray  # int, per face
    frames: np.ndarray   # int, source frame index per face
    boxes: np.ndarray    # float, N x 4
    status_codes: np.ndarray  # uint8 index into status_names, per face
    status_names: list[str]
    landmark_file: LandmarkFile
    landmark_rows: np.ndarray  # int, the file row of face i
    folder: Path  # the video's folder of the face pipeline (crops)
    faces_mode: str  # the pipeline's 'faces' setting: crop names p<person>/<index>.png with 'all'
    odd_crops: dict[int, str]  # face -> crop name, where the manifest names it otherwise

    def landmarks(self, rows: np.ndarray) -> np.ndarray:
        return self.landmark_file.read(self.landmark_rows[rows])

    def crop_path(self, row: int) -> Path:
        row = int(row)
        if row in self.odd_crops:
            return self.folder / self.odd_crops[row]
        return self.folder / crop_name(int(self.frames[row]), int(self.persons[row]) if self.faces_mode == "all" else None)

    def read_crops(self, rows: np.ndarray) -> list[np.ndarray]:
        """The face pipeline's crops of faces ``rows``, read from their files."""
        return [self._read_crop(r) for r in rows]

    def stacked_crops(self, rows: np.ndarray) -> np.ndarray:
        """The same as one N x H x W (x 3) array, filled as the files are read (no list of them)."""
        if not len(rows):
            return np.zeros((0, 1, 1), np.uint8)
        first = self._read_crop(rows[0])
        out = np.empty((len(rows), *first.shape), first.dtype)
        out[0] = first
        for k, r in enumerate(rows[1:], start=1):
            crop = self._read_crop(r)
            if crop.shape != first.shape or crop.dtype != first.dtype:  # crops of another size: as before
                return _stack([*out[:k], crop, *self.read_crops(rows[k + 1:])])
            out[k] = crop
        return out

    def _read_crop(self, row: int) -> np.ndarray:
        path = self.crop_path(row)
        crop = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if crop is None:
            raise OSError(f"{path}: crop listed in the manifest cannot be read")
        return crop

    def close(self) -> None:
        self.landmark_file.close()


def read_faces(manifest: dict, faces_dir: Path, spill: Path | None = None) -> Faces:
    """Every crop of the manifest's video (crop files under ``faces_dir/<video id>/``): its
    ``frames`` when the dict holds them, else the manifest file's entries read one at a time; the
    landmarks go to a temporary file in ``spill`` (default: the system's temporary folder)."""
    folder = Path(faces_dir) / manifest["video"]
    entries = manifest["frames"] if "frames" in manifest else iter_frames(folder)
    faces_mode = manifest.get("settings", {}).get("faces", "target")
    persons, order_persons, frames, boxes, codes = array("q"), array("q"), array("q"), array("d"), array("B")
    names = list(STATUSES)
    odd: dict[int, str] = {}
    landmarks = LandmarkFile(spill)
    try:
        for entry in entries:
            if not entry.get("crop"):
                continue
            n = len(frames)
            person = entry.get("person")
            persons.append(person or 1)
            order_persons.append(person or 0)
            frames.append(entry["index"])
            box = entry["box"]
            boxes.extend(float(v) for v in (box if box is not None and len(box) == 4 else (np.nan,) * 4))
            if entry["status"] not in names:
                names.append(entry["status"])
            codes.append(names.index(entry["status"]))
            landmarks.append(entry["landmarks"])
            if entry["crop"] != crop_name(entry["index"], person if faces_mode == "all" else None):
                odd[n] = entry["crop"]
    except BaseException:
        landmarks.close()
        raise
    frames_a = np.frombuffer(frames, np.int64)
    order = np.lexsort((frames_a, np.frombuffer(order_persons, np.int64)))  # stable: (person, frame)
    where = np.empty_like(order)
    where[order] = np.arange(len(order))
    return Faces(np.frombuffer(persons, np.int64)[order], frames_a[order],
                 np.frombuffer(boxes, np.float64).reshape(-1, 4)[order], np.frombuffer(codes, np.uint8)[order],
                 names, landmarks, order, folder, faces_mode, {int(where[k]): v for k, v in odd.items()})


def chunks(faces: Faces, size: int = CHUNK_FACES) -> list[np.ndarray]:
    """The faces in chunks of whole frames, in frame order, each of at most ``size`` faces (or one
    frame's faces); each chunk's faces in (person, frame) order."""
    if size < 1:
        raise ValueError(f"the chunk size must be at least 1 face, got {size}")
    by_frame = np.argsort(faces.frames, kind="stable")
    if not len(by_frame):
        return []
    ends = [*(np.flatnonzero(np.diff(faces.frames[by_frame])) + 1).tolist(), len(by_frame)]  # each frame's end
    out, begin, previous = [], 0, 0
    for stop in ends:  # close the chunk before a frame that would take it past size
        if stop - begin > size and previous > begin:
            out.append(np.sort(by_frame[begin:previous]))
            begin = previous
        previous = stop
    out.append(np.sort(by_frame[begin:previous]))
    return out


def cut_chunk(reader: Iterator, pending: list, manifest: dict, faces: Faces, rows: np.ndarray,
              specs: Sequence[CropSpec | None]) -> FaceCrops:
    """The faces ``rows`` of one chunk cut for every crop spec from the source frames, which
    ``reader`` (MediaReader.frames(), shared by the chunks: the source is decoded once) yields in
    order; None stands for the face pipeline's crops (read from their files)."""
    by_spec: dict[CropSpec | None, np.ndarray] = {}
    if None in specs:
        by_spec[None] = faces.stacked_crops(rows)
    wanted = [s for s in specs if s is not None]
    if not wanted or not len(rows):
        return FaceCrops({**by_spec, **{s: np.zeros((0, s.size, s.size), np.uint8) for s in wanted}})
    landmarks = faces.landmarks(rows)
    at: dict[int, list[int]] = {}
    for k, frame in enumerate(faces.frames[rows].tolist()):
        at.setdefault(frame, []).append(k)
    cut: dict[CropSpec, list] = {s: [None] * len(rows) for s in wanted}
    last = max(at)
    while True:
        frame = pending.pop() if pending else next(reader, None)
        if frame is None:
            break
        if frame.index > last:
            pending.append(frame)  # the next chunk's
            break
        if frame.image is not None:
            for k in at.get(frame.index, []):
                for spec in wanted:
                    cut[spec][k] = cut_crop(frame.image, landmarks[k], spec)
        if frame.index == last:
            break
    source = Path(manifest["source"])
    for spec, crops in cut.items():
        missing = [int(faces.frames[rows[k]]) for k, c in enumerate(crops) if c is None]
        if missing:
            raise OSError(f"{source}: frame {missing[0]} no longer decodes (the face pipeline read it); "
                          f"{len(missing)} face(s) cannot be cut for the models")
        by_spec[spec] = np.stack(crops)
    return FaceCrops(by_spec)


def is_done(video_out: Path, settings: dict, manifest: dict) -> bool:
    """True if the folder holds a finished summary made with the same settings from the source the
    face pipeline's ``manifest`` was made from (its ``source_key``)."""
    try:
        summary = json.loads((video_out / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(summary, dict) and summary.get("complete") is True and summary.get("settings") == settings
            and manifest.get("source_key") is not None and summary.get("source_key") == manifest.get("source_key"))


_WRITTEN = re.compile(r"^(?:predictions\.csv|contact_sheet\.png|timeline_p\d+\.png|annotated\.(?:mp4|png))$")


def clear_video_out(video_out: Path) -> None:
    """Remove the files an earlier run wrote into a video's folder (summary.json first, so an
    interrupted clear leaves the video unfinished); nothing else."""
    (video_out / SUMMARY).unlink(missing_ok=True)
    if video_out.is_dir():
        for path in sorted(video_out.iterdir()):
            if _WRITTEN.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)


def predict_video(manifest: dict, faces_dir: Path, video_out: Path, scorers: Sequence[Scorer], primary: Scorer,
                  tta: str, settings: dict, annotate: bool, chunk: int = CHUNK_FACES) -> dict:
    """Score the video's crops with every scorer and write its folder; returns the summary.

    Streams: the source is decoded once, ``chunk`` faces (whole frames) at a time are cut for every
    model, scored and written to a spool of CSV rows; what stays is per face a few numbers (person,
    frame, box, status, the primary model's 7 probabilities for the timelines) and per person and
    model a sum of probabilities. predictions.csv is put together from the spool in (model, person,
    frame) order and renamed into place; the contact sheet reads its few crops back from their
    files. The files are those the whole video scored at once gives (the same batches of the
    models when the video fits in one chunk; otherwise the same up to the last bits of float32,
    which the forward pass of other batch sizes may change)."""
    clear_video_out(video_out)
    video_out.mkdir(parents=True, exist_ok=True)
    faces = read_faces(manifest, faces_dir, video_out)
    try:
        return _predict(manifest, faces, video_out, scorers, primary, tta, settings, annotate, chunk)
    finally:
        faces.close()


def _predict(manifest: dict, faces: Faces, video_out: Path, scorers: Sequence[Scorer], primary: Scorer,
             tta: str, settings: dict, annotate: bool, chunk: int) -> dict:
    fps = manifest.get("fps")
    specs = list(dict.fromkeys(spec for s in scorers for spec in s.crop_specs()))
    names = [s.name for s in scorers]
    people = sorted(set(faces.persons.tolist()))
    counts = {person: int((faces.persons == person).sum()) for person in people}
    sums = {(name, person): np.zeros(len(CLASS_NAMES), np.float32) for name in names for person in people}
    main = np.zeros((len(faces.frames), len(CLASS_NAMES)), np.float32)  # the primary model's, per face
    segments: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (model, person) -> (offset, length) in the spool
    with tempfile.TemporaryFile(dir=video_out) as spool:
        reader = iter(MediaReader(Path(manifest["source"]), int(manifest.get("settings", {}).get("stride", 1))).frames()) \
            if any(s is not None for s in specs) and len(faces.frames) else iter(())
        pending: list = []
        try:
            for rows in chunks(faces, chunk):
                crops = cut_chunk(reader, pending, manifest, faces, rows, specs)
                probs = {s.name: s.score(crops, tta) for s in scorers}
                for name, p in probs.items():
                    bad = ~np.isfinite(p).all(axis=1)
                    if bad.any():
                        raise ModelError(f"model {name} gives NaN or infinite probabilities for {int(bad.sum())} of "
                                         f"{len(p)} crops of {manifest['video']} (frames {int(faces.frames[rows].min())}"
                                         f"-{int(faces.frames[rows].max())}; untrained BatchNorm statistics?)")
                main[rows] = probs[primary.name]
                chunk_persons = faces.persons[rows]
                for m, (name, p) in enumerate(probs.items()):
                    for person in np.unique(chunk_persons).tolist():
                        mine = chunk_persons == person
                        # summed in float32 face after face, as numpy's mean over the rows sums them
                        sums[name, person] = np.add.reduce(np.vstack([sums[name, person][None], p[mine]]), axis=0)
                        text = _csv_rows(manifest, faces, rows[mine], name, p[mine]).encode("utf-8")
                        segments.setdefault((m, person), []).append((spool.tell(), len(text)))
                        spool.write(text)
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()
        spool.flush()
        with atomic_path(video_out / PREDICTIONS) as tmp, open(tmp, "wb") as out:
            out.write((",".join(PREDICTIONS_HEADER) + "\n").encode("utf-8"))
            for m in range(len(names)):
                for person in people:
                    for offset, length in segments.get((m, person), []):
                        out.write(os.pread(spool.fileno(), length, offset))
    entries = []
    tiles = []
    for person in people:
        rows = np.nonzero(faces.persons == person)[0]
        frames = faces.frames[rows]
        entry = {"person": person, "frames": len(rows), "first": int(frames[0]), "last": int(frames[-1]),
                 "seconds": round(len(rows) / fps, 3) if fps else None,
                 "models": {name: _mean_of(sums[name, person], counts[person]) for name in names}}
        entry.update(entry["models"][primary.name])
        entries.append(entry)
        if len(rows) > 1:
            save_timeline_png(main[rows], video_out / f"timeline_p{person}.png",
                              title=f"{manifest['video']} person {person} ({primary.name})",
                              frame_indices=frames.tolist(), fps=fps)
        picked = rows[pick_evenly(len(rows), SHEET_TILES)]
        for r, crop in zip(picked, faces.read_crops(picked)):
            tiles.append((crop, f"p{person} f{faces.frames[r]}", main[r]))
    if tiles:
        atomic.write_png(video_out / "contact_sheet.png", sheet(tiles))
    del tiles
    if annotate:
        annotate_source(Path(manifest["source"]), manifest, faces, main, video_out)
    summary = {"format": SUMMARY_FORMAT, "video": manifest["video"], "source": manifest["source"],
               "source_key": manifest.get("source_key"), "fps": fps,
               "settings": settings, "primary": primary.name, "people": entries, "complete": True}
    atomic.write_json(video_out / SUMMARY, summary)
    return summary


def _stack(crops: list[np.ndarray]) -> np.ndarray:
    """The crops as one N x H x W (gray) or N x H x W x 3 array."""
    return np.stack(crops) if crops else np.zeros((0, 1, 1), np.uint8)


def _mean_of(total: np.ndarray, count: int) -> dict:
    """The mean and dominant class of a person's probabilities from their float32 sum."""
    mean = np.true_divide(total, count)
    return {"mean": {c: round(float(p), 5) for c, p in zip(CLASS_NAMES, mean)},
            "dominant": CLASS_NAMES[int(mean.argmax())]}


def _csv_rows(manifest: dict, faces: Faces, rows: np.ndarray, name: str, probs: np.ndarray) -> str:
    """predictions.csv's lines of faces ``rows`` scored by model ``name`` (see the module docstring)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fps = manifest.get("fps")
    for r, p in zip(rows.tolist(), probs):
        frame = int(faces.frames[r])
        writer.writerow((manifest["source"], manifest["video"], int(faces.persons[r]), frame,
                         round(frame / fps, 4) if fps else "", *(round(float(v), 1) for v in faces.boxes[r]),
                         faces.status_names[faces.status_codes[r]], name, *(f"{v:.5f}" for v in p),
                         CLASS_NAMES[int(p.argmax())]))
    return buffer.getvalue()


def annotate_source(source: Path, manifest: dict, faces: Faces, probs: np.ndarray, video_out: Path) -> None:
    """annotated.mp4 of a video (every source frame, decoded and written one at a time, faces drawn
    where the pipeline saw them), or annotated.png of a photo."""
    by_frame = np.argsort(faces.frames, kind="stable")  # the faces of frame f: a slice of it
    sorted_frames = faces.frames[by_frame]

    def rows_at(index: int) -> np.ndarray:
        return by_frame[np.searchsorted(sorted_frames, index, "left"):np.searchsorted(sorted_frames, index, "right")]

    reader = MediaReader(source, 1)
    fps = manifest.get("fps")
    if not fps:
        frame = next((f for f in reader.frames() if f.image is not None), None)
        if frame is not None:
            atomic.write_png(video_out / "annotated.png", _draw(frame.image, rows_at(frame.index), faces, probs))
        return
    writer = None
    with atomic_path(video_out / "annotated.mp4", suffix=".mp4") as tmp:
        try:
            for frame in reader.frames():
                if frame.image is None:
                    continue
                image = _draw(frame.image, rows_at(frame.index), faces, probs)
                if writer is None:
                    h, w = image.shape[:2]
                    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
                    if not writer.isOpened():
                        raise OSError(f"{video_out / 'annotated.mp4'}: OpenCV cannot write MP4 (mp4v)")
                writer.write(image)
        finally:
            if writer is not None:
                writer.release()


def _draw(image: np.ndarray, rows: Sequence[int], faces: Faces, probs: np.ndarray) -> np.ndarray:
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    for i in rows:
        annotate_face(out, faces.boxes[i], probs[i], f"p{faces.persons[i]}")
    return out
