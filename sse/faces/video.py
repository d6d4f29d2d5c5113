"""Processing one video into its output folder: crops, manifest.json, contact sheet.

Layout of DIR/<video id>/: `<frame index, 6 digits>.png` crops (size x size, gray or BGR),
`contact_sheet.png`, and `manifest.json`:

    {"format": "sse.faces.manifest/1", "video": id, "source": path, "label": int | null,
     "status": "ok" | "no_face" | "unreadable" | "error", "reason": str,
     "settings": {...PipelineConfig.output_settings()...}, "backend": "opencv" | "pyav" | "images",
     "frame_size": [w, h], "frames_sampled": n, "counts": {status: n}, "crops": n,
     "tracks": [{"id", "first", "last", "frames", "score"}], "target_tracks": [ids linked into the target],
     "frames": [{"index", "status": "detected" | "tracked" | "interpolated" | "none",
                 "box": [l, t, r, b] | null, "landmarks": [[x, y] * 68] | null,
                 "pose": {"yaw", "pitch", "roll", "occluded_side", "reprojection_error"} | null,
                 "crop": "000012.png" | null}],
     "complete": true}

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
MANIFEST_FORMAT = "sse.faces.manifest/1"
CONTACT_SHEET = "contact_sheet.png"
SHEET_TILES = 48


def crop_name(index: int) -> str:
    return f"{index:06d}.png"


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
    records = analysis.records
    counts = {s: 0 for s in ("detected", "tracked", "interpolated", "none")}
    for record in records:
        counts[record.status] += 1
    crops: dict[int, str] = {}
    with_face = [r.index for r in records if r.landmarks is not None]
    sheet_indices = {with_face[k] for k in pick_evenly(len(with_face), SHEET_TILES)}
    tiles = []
    for record, crop in render(job.path, records, config, models):
        name = crop_name(record.index)
        atomic.write_png(video_dir / name, crop)
        crops[record.index] = name
        if record.index in sheet_indices:
            tiles.append((crop, record.index, record.status))
    if tiles:
        atomic.write_png(video_dir / CONTACT_SHEET, contact_sheet(tiles))
    frames = []
    for record in records:
        entry = record.as_dict()
        entry["crop"] = crops.get(record.index)
        frames.append(entry)
    return {
        "status": "ok" if crops else "no_face",
        "reason": "" if crops else "no face found in any frame",
        "backend": analysis.backend,
        "frame_size": list(analysis.frame_size),
        "frames_sampled": len(records),
        "counts": counts,
        "crops": len(crops),
        "tracks": analysis.tracks,
        "target_tracks": analysis.target_tracks,
        "frames": frames,
    }
