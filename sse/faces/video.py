"""Processing one video into its output folder: crops, manifest.json, contact sheet.

Layout of DIR/<video id>/: the crops (size x size, gray or BGR) named `<source frame index, 6
digits>.png`, directly in the folder for the target (`faces='target'`, the default) or in one folder
per person `p<person id>/` (`faces='all'`); `contact_sheet.png` (person 1's frames); `manifest.json`:

    {"format": "sse.faces.manifest/2", "video": id, "source": path, "label": int | null,
     "status": "ok" | "no_face" | "unreadable" | "error", "reason": str,
     "settings": {...PipelineConfig.output_settings()...}, "backend": "opencv" | "pyav" | "images",
     "fps": float | null, "frame_size": [w, h], "frames_sampled": n, "counts": {status: n}, "crops": n,
     "cuts": [source frame indices that start a new shot],
     "undecodable": [{"index", "file", "reason"}],
     "tracks": [{"id", "first", "last", "frames", "score", "person": person id | null}],
     "people": [{"id", "tracks", "score", "frames", "first", "last"}],  # kept people, id 1 = target
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

The manifest is written last and atomically, so its presence marks a finished video; a folder
without one is a half-done video that a resumed run redoes (after removing its stale crops).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from . import atomic
from .contact import contact_sheet, pick_evenly
from .errors import FacesError, UnreadableMediaError
from .inputs import VideoJob
from .pipeline import FaceModels, PipelineConfig, analyse, render

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "sse.faces.manifest/2"
CONTACT_SHEET = "contact_sheet.png"
SHEET_TILES = 48


def crop_name(index: int, person: int | None = None) -> str:
    """A crop's path inside its video folder: `000012.png`, or `p2/000012.png` for person 2."""
    return f"{index:06d}.png" if person is None else f"p{person}/{index:06d}.png"


def read_manifest(video_dir: Path) -> dict | None:
    """The finished manifest of a video folder, or None if absent or incomplete."""
    path = Path(video_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("complete") is True else None


def is_done(video_dir: Path, config: PipelineConfig) -> bool:
    """True if the folder holds a finished manifest made with the same output settings."""
    manifest = read_manifest(video_dir)
    return manifest is not None and manifest.get("settings") == config.output_settings()


def process_video(job: VideoJob, out_dir: Path, config: PipelineConfig, models: FaceModels) -> dict:
    """Run the pipeline on one video and write its folder; returns the manifest.

    Unreadable media and other per-video failures end in the manifest's status, not in an exception,
    so a batch goes on."""
    video_dir = Path(out_dir) / job.video_id
    if video_dir.exists():
        shutil.rmtree(video_dir)
    video_dir.mkdir(parents=True)
    manifest = {
        "format": MANIFEST_FORMAT,
        "video": job.video_id,
        "source": str(job.path),
        "label": job.label,
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
    atomic.write_json(video_dir / MANIFEST, manifest)
    return manifest


def _run(job: VideoJob, video_dir: Path, config: PipelineConfig, models: FaceModels) -> dict:
    analysis = analyse(job.path, config, models)
    if config.faces == "all":
        records = [r for person in analysis.people for r in person.span()]
    else:
        records = analysis.records
    counts = {s: 0 for s in ("detected", "tracked", "interpolated", "none", "undecodable")}
    for record in records:
        counts[record.status] += 1
    crops: dict[tuple[int | None, int], str] = {}
    with_face = [r.index for r in analysis.records if r.landmarks is not None]
    sheet_indices = {with_face[k] for k in pick_evenly(len(with_face), SHEET_TILES)}
    target = analysis.people[0].person_id if analysis.people else None
    tiles = []
    for record, crop in render(job.path, records, config, models):
        name = crop_name(record.index, record.person if config.faces == "all" else None)
        atomic.write_png(video_dir / name, crop)
        crops[record.person, record.index] = name
        if record.person == target and record.index in sheet_indices:
            tiles.append((crop, record.index, record.status))
    if tiles:
        atomic.write_png(video_dir / CONTACT_SHEET, contact_sheet(tiles))
    frames = []
    for record in records:
        entry = record.as_dict()
        if record.landmarks is None and config.faces == "target":
            entry["person"] = None
        entry["crop"] = crops.get((record.person, record.index))
        frames.append(entry)
    return {
        "status": "ok" if crops else "no_face",
        "reason": "" if crops else "no face found in any frame",
        "backend": analysis.backend,
        "fps": analysis.fps,
        "frame_size": list(analysis.frame_size),
        "frames_sampled": len(analysis.records),
        "counts": counts,
        "crops": len(crops),
        "cuts": analysis.cuts,
        "undecodable": analysis.undecodable,
        "tracks": analysis.tracks,
        "people": [p.as_dict() for p in analysis.people],
        "target_person": target,
        "target_tracks": analysis.target_tracks,
        "frames": frames,
    }
