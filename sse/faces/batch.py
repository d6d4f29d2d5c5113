"""Many videos: worker processes, a progress bar, resume, the final summary.

A video whose folder already holds a finished manifest made with the same output settings from
the same source (video.source_key: path, size, time) is skipped; any other folder is (re)done from
scratch. Each worker process loads the models once. The list files are rebuilt from every finished
manifest under the output folder (lists.py).

Also what the command lines that run batches share: ``discover_outside`` finds the inputs but
never inside the output folder (a second run would take its own crops and sheets for new photos);
``quiet_decoders`` keeps FFmpeg's own messages ("moov atom not found") off the terminal, where the
tools' one-line reports say what could not be read.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from .errors import FacesError, InputNotFoundError
from .inputs import VideoJob, discover
from .lists import ListsWritten, write_lists
from .pipeline import FaceModels, PipelineConfig
from .video import is_done, process_video, read_manifest

SUMMARY_LINES = 20  # left-out tracks named in the summary (the manifests name every one)
_worker_models: FaceModels | None = None
_worker_config: PipelineConfig | None = None


@dataclass
class Summary:
    """Totals over a batch."""

    videos: int = 0
    skipped: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    faces: int = 0
    lists: ListsWritten | None = None  # None: not written (one share of a split batch)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (video, status, reason)
    undecodable: list[tuple[str, int, str, str]] = field(default_factory=list)  # (video, frame, file, reason)
    readings: list[str] = field(default_factory=list)  # how each image folder was read, once per folder
    left_out: list[str] = field(default_factory=list)  # tracks in no person (not counting non-targets)
    unlinked: list[str] = field(default_factory=list)  # people whose faces were never trusted for identity

    def add(self, manifest: dict) -> None:
        self.videos += 1
        status = manifest["status"]
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.frames += manifest.get("frames_sampled", 0)
        self.faces += manifest.get("crops", 0)
        if status not in ("ok",):
            self.failures.append((manifest["video"], status, manifest.get("reason", "")))
        for bad in manifest.get("undecodable", []):
            self.undecodable.append((manifest["video"], bad["index"], bad["file"], bad["reason"]))
        reading = manifest.get("reading", "")
        if reading.startswith("image folder") and reading not in self.readings:
            self.readings.append(reading)
        for out in manifest.get("left_out", []):
            if "not the target" not in out["reason"]:
                self.left_out.append(f"{manifest['video']} track {out['track']} (frames {out['first']}-{out['last']}):"
                                     f" {out['reason']}")
        apart = [str(p["id"]) for p in manifest.get("people", []) if p.get("identity", "").startswith("no face trusted")]
        if apart:
            self.unlinked.append(f"{manifest['video']} person {', '.join(apart)}")

    def text(self) -> str:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        lines = [
            f"videos: {self.videos} ({statuses}; {self.skipped} already done)",
            f"frames: {self.frames} sampled, {self.faces} with a face crop"
            + (f" ({100.0 * self.faces / self.frames:.1f}%)" if self.frames else ""),
        ]
        if self.lists is None:
            lines.append("list files: not written")
        else:
            lines.append(
                f"list.txt: {self.lists.crops} crops of {len(self.lists.units)} videos/people"
                f" ({self.lists.labelled} labelled in labels.txt)"
            )
        lines += [f"  {reading}" for reading in self.readings]
        lines += [f"  left out of people: {line}" for line in self.left_out[:SUMMARY_LINES]]
        if len(self.left_out) > SUMMARY_LINES:
            lines.append(f"  left out of people: {len(self.left_out) - SUMMARY_LINES} more tracks (see the manifests)")
        if self.unlinked:
            shown = "; ".join(self.unlinked[:SUMMARY_LINES]) + ("; ..." if len(self.unlinked) > SUMMARY_LINES else "")
            lines.append(f"  no face trusted for identity, joined only in place (a person of its own): {shown}")
        lines += [f"  {status}: {video}: {reason}" for video, status, reason in self.failures]
        lines += [
            f"  undecodable frame: {video} frame {index}" + (f" ({name})" if name else "") + f": {reason}"
            for video, index, name, reason in self.undecodable
        ]
        return "\n".join(lines)


def quiet_decoders() -> None:
    """Keep the decoders' own log lines off stderr: FFmpeg inside OpenCV (OPENCV_FFMPEG_LOGLEVEL,
    read when OpenCV first opens a video; a value the user set is kept) and inside PyAV. What
    cannot be read is reported by the tools, in one line per input."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    try:
        import av.logging
    except ImportError:
        return
    if av.logging.get_level() is not None:  # PyAV < 13 logs by default
        av.logging.set_level(av.logging.PANIC)


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def discover_outside(inputs: list[Path], out: Path, label_csv: Path | None = None,
                     image_folders: str = "auto", output_roots: list[Path] | None = None) -> list[VideoJob]:
    """``inputs.discover`` without what lies in the output folder ``out`` when ``out`` is inside an
    input folder (the tool's own crops, sheets and annotated pictures are not new inputs).

    An input folder that is ``out`` is refused; one inside ``out`` is read as given, unless a
    video's outputs (``<root>/<video id>`` for each of ``output_roots``, default ``[out]``) would
    land inside it, where the next run would read them back: that is refused too."""
    out_real = Path(out).resolve()
    roots = [Path(p).resolve() for p in inputs]
    for path, root in zip(inputs, roots):
        if root == out_real and Path(path).is_dir():
            raise FacesError(f"{path}: the input folder is the output folder; its outputs would be read "
                             "back as inputs next time: choose another --out")
    jobs = discover(inputs, label_csv, image_folders)
    deliberate = [(path, r) for path, r in zip(inputs, roots) if _within(r, out_real) and r.is_dir()]
    kept = [job for job in jobs if not _within(_real(job.path), out_real)
            or any(_within(_real(job.path), r) for _, r in deliberate)]
    for path, root in zip(inputs, roots):
        if root.is_dir() and _within(out_real, root) and not any(_within(_real(j.path), root) for j in kept):
            raise InputNotFoundError(f"{path}: no video or image found in this folder outside the output "
                                     f"folder {out}")
    for job in kept:
        for base in output_roots or [Path(out)]:
            folder = base.resolve() / job.video_id
            for path, root in deliberate:
                if _within(folder, root):
                    raise FacesError(f"{path}: the outputs of {job.video_id} would be written to "
                                     f"{base / job.video_id}, inside this input folder, and read back as "
                                     "inputs next time: choose an --out that does not hold the inputs")
    return kept


def _real(path: Path) -> Path:
    """The path with its folder resolved (a symlinked clip keeps its own name)."""
    path = Path(path)
    return path.parent.resolve() / path.name


def _init_worker(config: PipelineConfig, single_thread: bool = False) -> None:
    global _worker_models, _worker_config
    quiet_decoders()
    if single_thread:
        cv2.setNumThreads(1)  # the worker processes already share the cores
    _worker_config = config
    _worker_models = FaceModels.load(config)


def _work(item: tuple[VideoJob, Path]) -> dict:
    """One video; what comes back (from a worker process, pickled) is its manifest without the
    frames, which are in the manifest file."""
    job, out_dir = item
    manifest = process_video(job, out_dir, _worker_config, _worker_models)
    return {k: v for k, v in manifest.items() if k != "frames"}


def run_batch(
    jobs: list[VideoJob],
    out_dir: Path,
    config: PipelineConfig,
    workers: int = 1,
    progress: bool | None = None,
    lists: bool = True,
) -> Summary:
    """Process every job not already done, then rebuild the list files from all manifests in out_dir.

    With ``lists`` false (one share of inputs split between processes, possibly on several machines,
    writing into one folder) the list files are left alone: they are built once, after every share.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"the number of worker processes must be a positive integer, got {workers!r}")
    quiet_decoders()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    todo = [job for job in jobs if not is_done(out_dir / job.video_id, config, job.path)]
    summary.skipped = len(jobs) - len(todo)
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(todo), unit="video", disable=not show, file=sys.stderr)
    items = [(job, out_dir) for job in todo]
    if not todo:
        pass  # every video done: the models (about 100 MB, seconds to load) are not loaded
    elif workers <= 1 or len(todo) <= 1:
        _init_worker(config)
        _consume(map(_work, items), bar)
    else:
        FaceModels.load(config)  # fail early (e.g. missing model file) before any worker starts
        with multiprocessing.get_context("spawn").Pool(workers, _init_worker, (config, True)) as pool:
            _consume(pool.imap_unordered(_work, items), bar)
    bar.close()
    for job in jobs:  # one manifest at a time, without its frames (Summary reads none)
        manifest = read_manifest(out_dir / job.video_id, frames=False)
        if manifest is not None:
            summary.add(manifest)
    if lists:
        summary.lists = write_lists(out_dir)
    return summary


def _consume(results, bar: tqdm) -> None:
    for manifest in results:
        bar.set_postfix_str(f"{manifest['video']}: {manifest['status']}", refresh=False)
        bar.update(1)
