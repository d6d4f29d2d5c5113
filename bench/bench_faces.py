"""Benchmark of the face pipeline: end-to-end frames per second on a 640x360 clip.

Side by side in one run: detection every 5 frames with correlation tracking in between vs detection on
every frame (similarity alignment), the same with frontalization, every person kept (--faces all),
and two worker processes on two copies of the clip. End to end = decoding (both passes), shot cuts,
detection, tracking, landmarks, face chips and descriptors (identity linking), pose, crops, PNG
writing, manifest, contact sheet, list files. The time spent in dlib's face descriptor is measured
inside the same runs (single-process cases), so the table gives the rate with and without it. On a
shared, loaded machine the wall time says little; the CPU time of the benchmark process (all its
threads; in the single-process cases that is all the work) is given beside it.
Writes bench/results/faces.md.

    python bench/bench_faces.py [--clip PATH] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sse.faces import identity  # noqa: E402
from sse.faces.batch import run_batch  # noqa: E402
from sse.faces.inputs import discover  # noqa: E402
from sse.faces.pipeline import FaceModels, PipelineConfig  # noqa: E402

DEFAULT_CLIP = REPO.parent / "shared" / "data" / "media" / "videos" / "short_hamilton_clip.mp4"
RESULTS = REPO / "bench" / "results" / "faces.md"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


class DescriptorClock:
    """Wraps FaceDescriptor.__call__ in this process to add up its time and the faces described."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0
        original = identity.FaceDescriptor.__call__

        def timed(descriptor, chips):
            start = time.perf_counter()
            try:
                return original(descriptor, chips)
            finally:
                self.seconds += time.perf_counter() - start
                self.count += len(chips)

        identity.FaceDescriptor.__call__ = timed


def timed_run(inputs: list[Path], config: PipelineConfig, workers: int, repeat: int,
              clock: DescriptorClock) -> tuple[float, int, int, float, int, float]:
    """Best wall time over `repeat` runs into a fresh folder; frames and crops of the last run; the
    descriptor seconds and count and the CPU seconds of the best run (this process only)."""
    best, frames, faces, described, count, cpu = float("inf"), 0, 0, 0.0, 0, 0.0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as out:
            jobs = discover(inputs)
            clock.seconds, clock.count = 0.0, 0
            start, start_cpu = time.perf_counter(), time.process_time()
            summary = run_batch(jobs, Path(out), config, workers, progress=False)
            seconds = time.perf_counter() - start
            if seconds < best:
                best, described, count, cpu = seconds, clock.seconds, clock.count, time.process_time() - start_cpu
            frames, faces = summary.frames, summary.faces
    return best, frames, faces, described, count, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    cases = [
        ("detect every 5 + tracking, align", PipelineConfig(detect_every=5), 1),
        ("detect every frame, align", PipelineConfig(detect_every=1), 1),
        ("detect every 5 + tracking, frontalize", PipelineConfig(detect_every=5, frontalize=True), 1),
        ("detect every frame, frontalize", PipelineConfig(detect_every=1, frontalize=True), 1),
        ("detect every 5 + tracking, align, every person (--faces all)", PipelineConfig(faces="all"), 1),
    ]
    clock = DescriptorClock()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    FaceModels.load(PipelineConfig())
    model_seconds = time.perf_counter() - start
    rows = []
    for name, config, workers in cases:
        seconds, frames, faces, described, count, cpu = timed_run([args.clip], config, workers, args.repeat, clock)
        rows.append((name, workers, frames, faces, seconds, f"{count} / {described:.2f} s", frames / (seconds - described),
                     f"{cpu:.2f} s, {frames / cpu:.1f}"))
        print(f"{name}: {frames / seconds:.1f} fps ({frames} frames, {faces} crops, {seconds:.2f} s;"
              f" {count} descriptors in {described:.2f} s; {cpu:.2f} CPU s)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        copies = []
        for k in range(2):
            copy = Path(tmp) / f"copy{k}{args.clip.suffix}"
            shutil.copy(args.clip, copy)
            copies.append(copy)
        seconds, frames, faces, _, _, _ = timed_run(copies, PipelineConfig(detect_every=5), 2, args.repeat, clock)
    name = "detect every 5 + tracking, align, 2 clips / 2 workers"
    rows.append((name, 2, frames, faces, seconds, "in the workers", None, "in the workers"))
    print(f"{name}: {frames / seconds:.1f} fps ({frames} frames, {faces} crops, {seconds:.2f} s)")
    base = rows[1][2] / rows[1][4]
    lines = [
        "## Face preprocessing (bench/bench_faces.py)",
        "",
        f"Machine: {cpu_model()}, 2 cores (`lscpu` model name), Python {platform.python_version()}.",
        f"Load average (1 min) before/after the run: {load_before:.1f} / {os.getloadavg()[0]:.1f} (other"
        " sessions share these cores; a load above 2 slows every case, the ratios within one run hold better).",
        f"Clip: `{args.clip.name}` (640x360, 275 frames; a face in about half of them). Best of {args.repeat} runs.",
        "End to end: decode (two passes), shot cuts, HOG detection (upsample 1), correlation tracking,",
        "68 landmarks, face chips, dlib face descriptors on a few chips per track (identity linking),",
        "pose (solvePnP), 128x128 colour crops written as PNG, manifest, contact sheet, list files;",
        f"the times include loading the models once per process ({model_seconds:.2f} s here; worker processes",
        "are spawned, which adds their start-up too). Descriptors: faces described and the time spent",
        "in dlib's descriptor network in the best run; the next column is the rate without that time.",
        "",
        "| case | workers | frames | crops | seconds | frames/s | descriptors (faces / time) | frames/s without descriptors | CPU time, frames per CPU s | vs detect every frame |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, workers, frames, faces, seconds, described, without, cpu in rows:
        rate = "-" if without is None else f"{without:.1f}"
        lines.append(
            f"| {name} | {workers} | {frames} | {faces} | {seconds:.2f} | {frames / seconds:.1f} | {described} | {rate}"
            f" | {cpu} | {frames / seconds / base:.2f}x |"
        )
    lines.append("")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
