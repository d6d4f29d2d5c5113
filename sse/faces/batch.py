"""Many videos: worker processes, a progress bar, resume, the final summary.

A video whose folder already holds a finished manifest made with the same output settings is
skipped; any other folder is (re)done from scratch. Each worker process loads the models once. The
list files are rebuilt from every finished manifest under the output folder (lists.py).
"""

from __future__ import annotations

import multiprocessing
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from .inputs import VideoJob
from .lists import ListsWritten, write_lists
from .pipeline import FaceModels, PipelineConfig
from .video import is_done, process_video, read_manifest

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
        lines += [f"  {status}: {video}: {reason}" for video, status, reason in self.failures]
        lines += [
            f"  undecodable frame: {video} frame {index}" + (f" ({name})" if name else "") + f": {reason}"
            for video, index, name, reason in self.undecodable
        ]
        return "\n".join(lines)


def _init_worker(config: PipelineConfig, single_thread: bool = False) -> None:
    global _worker_models, _worker_config
    if single_thread:
        cv2.setNumThreads(1)  # the worker processes already share the cores
    _worker_config = config
    _worker_models = FaceModels.load(config)


def _work(item: tuple[VideoJob, Path]) -> dict:
    job, out_dir = item
    return process_video(job, out_dir, _worker_config, _worker_models)


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
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    todo = [job for job in jobs if not is_done(out_dir / job.video_id, config)]
    summary.skipped = len(jobs) - len(todo)
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(todo), unit="video", disable=not show, file=sys.stderr)
    items = [(job, out_dir) for job in todo]
    if workers <= 1 or len(todo) <= 1:
        _init_worker(config)
        _consume(map(_work, items), bar)
    else:
        FaceModels.load(config)  # fail early (e.g. missing model file) before any worker starts
        with multiprocessing.get_context("spawn").Pool(workers, _init_worker, (config, True)) as pool:
            _consume(pool.imap_unordered(_work, items), bar)
    bar.close()
    manifests = [m for m in (read_manifest(out_dir / job.video_id) for job in jobs) if m is not None]
    for manifest in manifests:
        summary.add(manifest)
    if lists:
        summary.lists = write_lists(out_dir)
    return summary


def _consume(results, bar: tqdm) -> None:
    for manifest in results:
        bar.set_postfix_str(f"{manifest['video']}: {manifest['status']}", refresh=False)
        bar.update(1)
