"""List files for the rest of the toolkit, rebuilt after every batch from ALL finished manifests under
DIR (videos of earlier runs into the same DIR included), in video id order.

The unit of the fusion is a person of a video: with `--faces target` (default) the video id itself,
with `--faces all` `<video id>@p<person id>` (person 1 = most screen presence). The fusion matches
units by name without folder (sse.fusion.formats.video_key), so two videos of one DIR must not share
a file name.

DIR/list.txt: one line `<crop path> <label>` per crop of every video whose status is 'ok', paths
relative to DIR (give DIR as convert_imageset's root folder or ImageData's root_folder), label =
class index in Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise order, -1 if unknown. Order:
videos by id; inside a video its people by id, each person's crops by source frame index.

DIR/frames.csv: the frame -> unit map the fusion reads (`sse-fuse --frame-list`); a header line
`crop,video,frame,label,status,person,time`, then one row per line of list.txt, in the same order:
the crop path as in list.txt, the unit (see above), the source frame index, the label (-1 if
unknown), the frame status (detected, tracked, interpolated), the person id and the time of the
frame in seconds (empty when the source has no frame rate, e.g. images).

DIR/videos.txt: the units, one per line, in list.txt order (`sse-fuse --video-list`).
DIR/labels.txt: `<unit> <class name>` for every unit whose label is known (`sse-evaluate --labels`);
not written (and an older one removed) when no label is known.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from caffe.atomic import atomic_path

from sse.classes import CLASS_NAMES

from . import atomic
from .video import MANIFEST, iter_frames, read_manifest

LIST_FILE = "list.txt"
FRAMES_FILE = "frames.csv"
VIDEO_LIST_FILE = "videos.txt"
LABELS_FILE = "labels.txt"
FRAMES_HEADER = ("crop", "video", "frame", "label", "status", "person", "time")


@dataclass(frozen=True)
class CropRow:
    """One crop as the list files give it."""

    crop: str
    unit: str
    frame: int
    label: int
    status: str
    person: int | None
    time: float | None


@dataclass
class ListsWritten:
    """What write_lists wrote: crops listed, units (with and without a label)."""

    crops: int = 0
    units: list[str] = field(default_factory=list)
    labelled: int = 0


def unit_name(video: str, person: int | None, faces: str = "target") -> str:
    """The fusion unit of a person of a video (see the module docstring)."""
    return video if faces != "all" or person is None else f"{video}@p{person}"


def read_manifests(out_dir: Path, frames: bool = True) -> list[dict]:
    """Every finished manifest under `out_dir`, ordered by video id (without their frames when
    `frames` is false)."""
    found = [read_manifest(path.parent, frames) for path in Path(out_dir).rglob(MANIFEST)]
    return sorted((m for m in found if m is not None), key=lambda m: m["video"])


def crop_rows(manifests: list[dict]) -> list[CropRow]:
    """The rows of list.txt / frames.csv for every crop of the 'ok' videos, in list order."""
    return [row for manifest in manifests for row in _video_rows(manifest, manifest.get("frames", []))]


def _video_rows(manifest: dict, frames: Iterable[dict]) -> Iterator[CropRow]:
    """The rows of one video's crops (its manifest, its frames entries: a list or a stream); what is
    held is one small tuple per crop (to order them), not the entries."""
    if manifest.get("status") != "ok":
        return
    label = manifest["label"] if manifest.get("label") is not None else -1
    faces = manifest.get("settings", {}).get("faces", "target")
    fps = manifest.get("fps")
    crops = sorted(((f.get("person") or 0, f["index"], f.get("person"), f["crop"], f["status"])
                    for f in frames if f.get("crop")), key=lambda c: c[:2])
    for _, index, person, crop, status in crops:
        yield CropRow(f"{manifest['video']}/{crop}", unit_name(manifest["video"], person, faces), index, label,
                      status, person, round(index / fps, 4) if fps else None)


def write_lists(out_dir: Path, manifests: list[dict] | None = None) -> ListsWritten:
    """Write list.txt, frames.csv, videos.txt and labels.txt atomically from `manifests` (default:
    every finished manifest under `out_dir`, each one's frames read entry by entry); the rows go to
    the files as they are made."""
    out_dir = Path(out_dir)
    if manifests is None:
        headers = [(m, path.parent) for path in out_dir.rglob(MANIFEST)
                   if (m := read_manifest(path.parent, frames=False)) is not None]
        headers.sort(key=lambda item: item[0]["video"])
        videos = [(m, iter_frames(folder)) for m, folder in headers]
    else:
        videos = [(m, m.get("frames", [])) for m in manifests]
    labels: dict[str, int] = {}
    count = 0
    with atomic_path(out_dir / LIST_FILE) as list_tmp, atomic_path(out_dir / FRAMES_FILE) as frames_tmp, \
            open(list_tmp, "w", encoding="utf-8", newline="") as list_file, \
            open(frames_tmp, "w", encoding="utf-8", newline="") as frames_file:
        writer = csv.writer(frames_file, lineterminator="\n")
        writer.writerow(FRAMES_HEADER)
        for manifest, frames in videos:
            for r in _video_rows(manifest, frames):
                list_file.write(f"{r.crop} {r.label}\n")
                writer.writerow((r.crop, r.unit, r.frame, r.label, r.status, "" if r.person is None else r.person,
                                 "" if r.time is None else r.time))
                labels[r.unit] = r.label
                count += 1
    units = list(labels)
    atomic.write_text(out_dir / VIDEO_LIST_FILE, "".join(f"{u}\n" for u in units))
    known = [(u, labels[u]) for u in units if labels[u] >= 0]
    if known:
        atomic.write_text(out_dir / LABELS_FILE, "".join(f"{u} {CLASS_NAMES[k]}\n" for u, k in known))
    else:
        (out_dir / LABELS_FILE).unlink(missing_ok=True)
    return ListsWritten(count, units, len(known))
