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
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from caffe.atomic import atomic_path
from sse.classes import CLASS_NAMES
from sse.faces import atomic
from sse.faces.contact import pick_evenly
from sse.faces.decode import MediaReader
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


@dataclass
class Faces:
    """The crops of one video that the face pipeline kept, in (person, frame) order."""

    persons: np.ndarray  # int, per crop
    frames: np.ndarray   # int, source frame index per crop
    boxes: np.ndarray    # float, N x 4
    statuses: list[str]
    crops: list[np.ndarray]  # the face pipeline's crops
    landmarks: np.ndarray  # float, N x 68 x 2 in source pixels

    def times(self, fps: float | None) -> list[float | None]:
        return [round(f / fps, 4) if fps else None for f in self.frames.tolist()]


def read_faces(manifest: dict, faces_dir: Path) -> Faces:
    """Every crop of the manifest's video (crop files under ``faces_dir/<video id>/``)."""
    entries = sorted((f for f in manifest["frames"] if f.get("crop")), key=lambda f: (f.get("person") or 0, f["index"]))
    crops = []
    for entry in entries:
        path = faces_dir / manifest["video"] / entry["crop"]
        crop = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if crop is None:
            raise OSError(f"{path}: crop listed in the manifest cannot be read")
        crops.append(crop)
    return Faces(np.array([e.get("person") or 1 for e in entries], np.int64),
                 np.array([e["index"] for e in entries], np.int64),
                 np.array([e["box"] for e in entries], np.float64).reshape(-1, 4),
                 [e["status"] for e in entries], crops,
                 np.array([e["landmarks"] for e in entries], np.float64).reshape(-1, 68, 2))


def model_crops(manifest: dict, faces: Faces, specs: Sequence[CropSpec | None]) -> FaceCrops:
    """Every face cut as each crop spec says, from the source frames (decoded once, at the
    manifest's stride) and the manifest's landmarks; None stands for the face pipeline's crops."""
    by_spec: dict[CropSpec | None, np.ndarray] = {}
    if None in specs:
        by_spec[None] = _stack(faces.crops)
    wanted = [s for s in specs if s is not None]
    if not wanted or not len(faces.frames):
        return FaceCrops({**by_spec, **{s: np.zeros((0, s.size, s.size), np.uint8) for s in wanted}})
    rows: dict[int, list[int]] = {}
    for r, frame in enumerate(faces.frames.tolist()):
        rows.setdefault(frame, []).append(r)
    cut: dict[CropSpec, list] = {s: [None] * len(faces.frames) for s in wanted}
    source = Path(manifest["source"])
    for frame in MediaReader(source, int(manifest.get("settings", {}).get("stride", 1))).frames():
        if frame.image is not None:
            for r in rows.get(frame.index, []):
                for spec in wanted:
                    cut[spec][r] = cut_crop(frame.image, faces.landmarks[r], spec)
        if frame.index >= faces.frames.max():
            break
    for spec, crops in cut.items():
        missing = [int(faces.frames[r]) for r, c in enumerate(crops) if c is None]
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
                  tta: str, settings: dict, annotate: bool) -> dict:
    """Score the video's crops with every scorer and write its folder; returns the summary."""
    clear_video_out(video_out)
    faces = read_faces(manifest, faces_dir)
    crops = model_crops(manifest, faces, list(dict.fromkeys(spec for s in scorers for spec in s.crop_specs())))
    probs = {s.name: s.score(crops, tta) for s in scorers}
    for name, p in probs.items():
        bad = ~np.isfinite(p).all(axis=1)
        if bad.any():
            raise ModelError(f"model {name} gives NaN or infinite probabilities for {int(bad.sum())} of "
                             f"{len(p)} crops of {manifest['video']} (untrained BatchNorm statistics?)")
    video_out.mkdir(parents=True, exist_ok=True)
    fps = manifest.get("fps")
    atomic.write_text(video_out / PREDICTIONS, predictions_csv(manifest, faces, probs))
    main = probs[primary.name]
    people = []
    tiles = []
    for person in sorted(set(faces.persons.tolist())):
        rows = np.nonzero(faces.persons == person)[0]
        frames = faces.frames[rows]
        entry = {"person": person, "frames": len(rows), "first": int(frames[0]), "last": int(frames[-1]),
                 "seconds": round(len(rows) / fps, 3) if fps else None,
                 "models": {name: _mean(p[rows]) for name, p in probs.items()}}
        entry.update(entry["models"][primary.name])
        people.append(entry)
        if len(rows) > 1:
            save_timeline_png(main[rows], video_out / f"timeline_p{person}.png",
                              title=f"{manifest['video']} person {person} ({primary.name})",
                              frame_indices=frames.tolist(), fps=fps)
        for k in pick_evenly(len(rows), SHEET_TILES):
            r = rows[k]
            tiles.append((faces.crops[r], f"p{person} f{faces.frames[r]}", main[r]))
    if tiles:
        atomic.write_png(video_out / "contact_sheet.png", sheet(tiles))
    if annotate:
        annotate_source(Path(manifest["source"]), manifest, faces, main, video_out)
    summary = {"format": SUMMARY_FORMAT, "video": manifest["video"], "source": manifest["source"],
               "source_key": manifest.get("source_key"), "fps": fps,
               "settings": settings, "primary": primary.name, "people": people, "complete": True}
    atomic.write_json(video_out / SUMMARY, summary)
    return summary


def _stack(crops: list[np.ndarray]) -> np.ndarray:
    """The crops as one N x H x W (gray) or N x H x W x 3 array."""
    return np.stack(crops) if crops else np.zeros((0, 1, 1), np.uint8)


def _mean(rows: np.ndarray) -> dict:
    mean = rows.mean(axis=0)
    return {"mean": {c: round(float(p), 5) for c, p in zip(CLASS_NAMES, mean)},
            "dominant": CLASS_NAMES[int(mean.argmax())]}


def predictions_csv(manifest: dict, faces: Faces, probs: dict[str, np.ndarray]) -> str:
    """The text of predictions.csv (see the module docstring)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PREDICTIONS_HEADER)
    times = faces.times(manifest.get("fps"))
    for name, p in probs.items():
        for i in range(len(faces.frames)):
            writer.writerow((manifest["source"], manifest["video"], int(faces.persons[i]), int(faces.frames[i]),
                             "" if times[i] is None else times[i], *(round(float(v), 1) for v in faces.boxes[i]),
                             faces.statuses[i], name, *(f"{v:.5f}" for v in p[i]), CLASS_NAMES[int(p[i].argmax())]))
    return buffer.getvalue()


def annotate_source(source: Path, manifest: dict, faces: Faces, probs: np.ndarray, video_out: Path) -> None:
    """annotated.mp4 of a video (every source frame, faces drawn where the pipeline saw them), or
    annotated.png of a photo."""
    by_frame: dict[int, list[int]] = {}
    for i, frame in enumerate(faces.frames.tolist()):
        by_frame.setdefault(frame, []).append(i)
    reader = MediaReader(source, 1)
    fps = manifest.get("fps")
    if not fps:
        frame = next((f for f in reader.frames() if f.image is not None), None)
        if frame is not None:
            atomic.write_png(video_out / "annotated.png", _draw(frame.image, by_frame.get(frame.index, []), faces, probs))
        return
    writer = None
    with atomic_path(video_out / "annotated.mp4", suffix=".mp4") as tmp:
        try:
            for frame in reader.frames():
                if frame.image is None:
                    continue
                image = _draw(frame.image, by_frame.get(frame.index, []), faces, probs)
                if writer is None:
                    h, w = image.shape[:2]
                    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
                    if not writer.isOpened():
                        raise OSError(f"{video_out / 'annotated.mp4'}: OpenCV cannot write MP4 (mp4v)")
                writer.write(image)
        finally:
            if writer is not None:
                writer.release()


def _draw(image: np.ndarray, rows: list[int], faces: Faces, probs: np.ndarray) -> np.ndarray:
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    for i in rows:
        annotate_face(out, faces.boxes[i], probs[i], f"p{faces.persons[i]}")
    return out
