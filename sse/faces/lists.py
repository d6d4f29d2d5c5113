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
import io
from dataclasses import dataclass, field
from pathlib import Path

from sse.classes import CLASS_NAMES

from . import atomic
from .video import MANIFEST, read_manifest

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


def read_manifests(out_dir: Path) -> list[dict]:
    """Every finished manifest under `out_dir`, ordered by video id."""
    found = [read_manifest(path.parent) for path in Path(out_dir).rglob(MANIFEST)]
    return sorted((m for m in found if m is not None), key=lambda m: m["video"])


def crop_rows(manifests: list[dict]) -> list[CropRow]:
    """The rows of list.txt / frames.csv for every crop of the 'ok' videos, in list order."""
    rows = []
    for manifest in manifests:
        if manifest.get("status") != "ok":
            continue
        label = manifest["label"] if manifest.get("label") is not None else -1
        faces = manifest.get("settings", {}).get("faces", "target")
        fps = manifest.get("fps")
        frames = [f for f in manifest["frames"] if f.get("crop")]
        frames.sort(key=lambda f: (f.get("person") or 0, f["index"]))
        for frame in frames:
            person = frame.get("person")
            rows.append(CropRow(
                f"{manifest['video']}/{frame['crop']}",
                unit_name(manifest["video"], person, faces),
                frame["index"],
                label,
                frame["status"],
                person,
                round(frame["index"] / fps, 4) if fps else None,
            ))
    return rows


def write_lists(out_dir: Path, manifests: list[dict] | None = None) -> ListsWritten:
    """Write list.txt, frames.csv, videos.txt and labels.txt atomically from `manifests` (default:
    every finished manifest under `out_dir`)."""
    out_dir = Path(out_dir)
    rows = crop_rows(read_manifests(out_dir) if manifests is None else manifests)
    atomic.write_text(out_dir / LIST_FILE, "".join(f"{r.crop} {r.label}\n" for r in rows))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FRAMES_HEADER)
    for r in rows:
        writer.writerow((r.crop, r.unit, r.frame, r.label, r.status, "" if r.person is None else r.person,
                         "" if r.time is None else r.time))
    atomic.write_text(out_dir / FRAMES_FILE, buffer.getvalue())
    labels = {r.unit: r.label for r in rows}
    units = list(labels)
    atomic.write_text(out_dir / VIDEO_LIST_FILE, "".join(f"{u}\n" for u in units))
    known = [(u, labels[u]) for u in units if labels[u] >= 0]
    if known:
        atomic.write_text(out_dir / LABELS_FILE, "".join(f"{u} {CLASS_NAMES[k]}\n" for u, k in known))
    else:
        (out_dir / LABELS_FILE).unlink(missing_ok=True)
    return ListsWritten(len(rows), units, len(known))
