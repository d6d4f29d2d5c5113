"""Processing one video into its output folder: crops, manifest.json, contact sheet.

Layout of DIR/<video id>/: the crops (size x size, gray or BGR) named `<source frame index, 6
digits>.png`, directly in the folder for the target (`faces='target'`, the default) or in one folder
per person `p<person id>/` (`faces='all'`); `contact_sheet.png` (person 1's frames); `manifest.json`:

    {"format": "sse.faces.manifest/2", "video": id, "source": path, "label": int | null,
     "source_key": {"path": absolute path, "size": bytes, "mtime_ns": int} (a folder of frames:
                   {"path", "files": n, "size": total bytes, "listing": digest of names, sizes, times}),
     "status": "ok" | "no_face" | "unreadable" | "error", "reason": str,
     "settings": {...PipelineConfig.output_settings()...}, "backend": "opencv" | "pyav" | "images",
     "fps": float | null, "frame_size": [w, h], "frames_sampled": n, "counts": {status: n}, "crops": n,
     "cuts": [source frame indices that start a new shot],
     "undecodable": [{"index", "file", "reason"}],
     "tracks": [{"id", "first", "last", "frames", "score", "person": person id | null,
                 "identity": how far its faces speak for identity ("3 of 4 faces trusted", or "no face
                             trusted (face 36 px < 40): joined only in place"),
                 "split": present when identity split the track, "left_out": present when the track
                 is in no kept person, saying why (a false face and which check, too short, not the target)}],
     "left_out": [{"track", "first", "last", "frames", "reason"}],  # the tracks with "left_out"
     "people": [{"id", "tracks", "score", "frames", "first", "last", "identity"}],  # kept, id 1 = target
     "target_person": 1 | null, "target_tracks": [track ids of the target],
     "frames": [{"index", "person": id | null,
                 "status": "detected" | "tracked" | "interpolated" | "none" | "undecodable",
                 "box": [l, t, r, b] | null, "landmarks": [[x, y] * 68] | null,
                 "pose": {"yaw", "pitch", "roll", "occluded_side", "reprojection_error"} | null,
                 "crop": "000012.png" | "p2/000012.png" | null}],
     "complete": true}

`frames` holds, with faces='target', one entry per sampled frame (person null where the target is
absent or no face was found); with faces='all', for each kept person in id order one entry per sampled
frame from its first to its last frame. Indices are source frame numbers (with a stride, 0, s, 2s, ...);
the time of frame i is i / fps. People are numbered by screen presence (people.py). A track's person
is the kept person holding most of its frames (a track split by identity feeds two people); tracks of
no kept person (too few frames, or not the target with faces='target') have person null.

The manifest is written one frame entry at a time (``FrameEntries``, jsonstream.write_object: the
bytes json.dumps(indent=1) gives), and the readers that need only the rest of it or walk its frames
read it through a window (``read_manifest(frames=False)``, ``iter_frames``): a long video's entries,
about 10 KB of Python objects each, are never all held. The manifest is written last and
atomically, so its presence marks a finished video; a folder
without one is a half-done video that a resumed run redoes (after removing its stale crops). A
video is finished only for the source it was made from: a manifest whose `source_key` is not the
input's now (another folder's file of the same id, or the same path with a changed picture) is
redone. Redoing a video removes only what the pipeline wrote there (the crops its manifest lists,
or without a manifest the files named as crops, the contact sheet, the manifest): anything else a
user put into the folder stays.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from caffe.atomic import remove_leftovers

from . import atomic
from .contact import contact_sheet, pick_evenly
from .decode import list_images
from .errors import FacesError, UnreadableMediaError
from .inputs import VideoJob
from .jsonstream import read_object, scan_object, write_object
from .pipeline import FaceModels, FrameRecord, PipelineConfig, analyse, render

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "sse.faces.manifest/2"
CONTACT_SHEET = "contact_sheet.png"
SHEET_TILES = 48
_CROP_NAME = re.compile(r"^(?:p\d+/)?\d{6,}\.png$")
_PERSON_FOLDER = re.compile(r"^p\d+$")


def crop_name(index: int, person: int | None = None) -> str:
    """A crop's path inside its video folder: `000012.png`, or `p2/000012.png` for person 2."""
    return f"{index:06d}.png" if person is None else f"p{person}/{index:06d}.png"


def read_manifest(video_dir: Path, frames: bool = True) -> dict | None:
    """The finished manifest of a video folder, or None if absent or incomplete. With ``frames``
    false the manifest comes without its ``frames`` (read through a window of the file and dropped
    entry by entry: a long video's frames are most of the file); ``iter_frames`` yields them."""
    path = Path(video_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8")) if frames else read_object(path, "frames")
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("complete") is True else None


def iter_frames(video_dir: Path) -> Iterator[dict]:
    """The ``frames`` entries of a video folder's manifest, one at a time, in the manifest's order
    (memory for one entry, not for the video)."""
    yield from scan_object(Path(video_dir) / MANIFEST, "frames")


def source_key(path: Path) -> dict:
    """What a finished video is keyed by besides its id: the source's absolute path, size and
    modification time (a folder of frames: its images' count, total size and a digest of their
    names, sizes and times), so that another file of the same id or a changed file is redone."""
    path = Path(path)
    key: dict = {"path": os.path.abspath(path)}
    try:
        if path.is_dir():
            stats = [(f.name, f.stat()) for f in list_images(path)]
            listing = "\n".join(f"{name}\t{st.st_size}\t{st.st_mtime_ns}" for name, st in stats)
            key.update(files=len(stats), size=sum(st.st_size for _, st in stats),
                       listing=hashlib.sha256(listing.encode("utf-8", "surrogateescape")).hexdigest())
        else:
            st = path.stat()
            key.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    except OSError as exc:
        key["error"] = exc.strerror or str(exc)
    return key


def is_done(video_dir: Path, config: PipelineConfig, source: Path) -> bool:
    """True if the folder holds a finished manifest made with the same output settings from the
    same source (``source_key``)."""
    manifest = read_manifest(video_dir, frames=False)
    return (manifest is not None and manifest.get("settings") == config.output_settings()
            and manifest.get("source_key") == source_key(source))


def clear_video_dir(video_dir: Path) -> None:
    """Remove what the pipeline wrote into a video's folder (the crops its manifest lists, or
    without a finished manifest every file named as a crop; the contact sheet; the manifest last),
    and person folders left empty; nothing else."""
    video_dir = Path(video_dir)
    names: Iterable[str]
    if read_manifest(video_dir, frames=False) is not None:  # its crops, read entry by entry
        names = (f["crop"] for f in iter_frames(video_dir) if isinstance(f, dict) and isinstance(f.get("crop"), str))
    else:
        names = [p.relative_to(video_dir).as_posix() for p in [*video_dir.glob("*.png"), *video_dir.glob("p*/*.png")]]
    for name in names:
        if _CROP_NAME.match(name):
            (video_dir / name).unlink(missing_ok=True)
    (video_dir / CONTACT_SHEET).unlink(missing_ok=True)
    (video_dir / MANIFEST).unlink(missing_ok=True)
    for folder in [video_dir, *sorted(video_dir.glob("p*"))]:
        if folder == video_dir or (folder.is_dir() and _PERSON_FOLDER.match(folder.name)):
            remove_leftovers(folder)
            if folder != video_dir:
                try:
                    folder.rmdir()  # only when empty
                except OSError:
                    pass


def process_video(job: VideoJob, out_dir: Path, config: PipelineConfig, models: FaceModels) -> dict:
    """Run the pipeline on one video and write its folder; returns the manifest.

    Unreadable media and other per-video failures end in the manifest's status, not in an exception,
    so a batch goes on."""
    video_dir = Path(out_dir) / job.video_id
    if video_dir.exists():
        clear_video_dir(video_dir)
    video_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": MANIFEST_FORMAT,
        "video": job.video_id,
        "source": str(job.path),
        "source_key": source_key(job.path),
        "label": job.label,
        "reading": job.reading,
        "status": "ok",
        "reason": "",
        "settings": config.output_settings(),
    }
    started = time.perf_counter()
    try:
        manifest.update(_run(job, video_dir, config, models))
    except UnreadableMediaError as exc:
        manifest.update(status="unreadable", reason=str(exc), frames=[])
    except (FacesError, ValueError, OSError, RuntimeError) as exc:
        manifest.update(status="error", reason=f"{type(exc).__name__}: {exc}", frames=[])
    manifest["seconds"] = round(time.perf_counter() - started, 2)
    manifest["complete"] = True
    write_object(video_dir / MANIFEST, manifest, "frames")  # the entries made and written one at a time
    return manifest


class FrameEntries(Sequence):
    """The manifest's ``frames``: one entry (a dict) per record, made when it is read, so a long
    video's entries (about 10 KB of Python objects each, with their 68 landmarks as lists) are
    never all held at once; the records are what the pipeline keeps anyway."""

    def __init__(self, records: list[FrameRecord], faces: str) -> None:
        self.records, self.faces = records, faces

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self.entry(r) for r in self.records[k]]
        return self.entry(self.records[k])

    def __iter__(self) -> Iterator[dict]:
        return (self.entry(r) for r in self.records)

    def entry(self, record: FrameRecord) -> dict:
        entry = record.as_dict()
        if not record.has_landmarks and self.faces == "target":
            entry["person"] = None
        entry["crop"] = crop_name(record.index, record.person if self.faces == "all" else None) if record.cropped else None
        return entry


def _run(job: VideoJob, video_dir: Path, config: PipelineConfig, models: FaceModels) -> dict:
    analysis = analyse(job.path, config, models)
    if config.faces == "all":
        records = [r for person in analysis.people for r in person.span()]
    else:
        records = analysis.records
    counts = {s: 0 for s in ("detected", "tracked", "interpolated", "none", "undecodable")}
    for record in records:
        counts[record.status] += 1
    with_face = [r.index for r in analysis.records if r.has_landmarks]
    sheet_indices = {with_face[k] for k in pick_evenly(len(with_face), SHEET_TILES)}
    del with_face
    target = analysis.people[0].person_id if analysis.people else None
    tiles = []
    crops = 0
    for record, crop in render(job.path, records, config, models):
        atomic.write_png(video_dir / crop_name(record.index, record.person if config.faces == "all" else None), crop)
        record.cropped = True
        crops += 1
        if record.person == target and record.index in sheet_indices:
            tiles.append((crop, record.index, record.status))
    if tiles:
        atomic.write_png(video_dir / CONTACT_SHEET, contact_sheet(tiles))
    frames = FrameEntries(records, config.faces)
    return {
        "status": "ok" if crops else "no_face",
        "reason": "" if crops else "no face found in any frame",
        "backend": analysis.backend,
        "fps": analysis.fps,
        "frame_size": list(analysis.frame_size),
        "frames_sampled": len(analysis.records),
        "counts": counts,
        "crops": crops,
        "cuts": analysis.cuts,
        "undecodable": analysis.undecodable,
        "tracks": analysis.tracks,
        "left_out": analysis.left_out,
        "people": [p.as_dict() for p in analysis.people],
        "target_person": target,
        "target_tracks": analysis.target_tracks,
        "frames": frames,
    }
