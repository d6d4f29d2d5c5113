"""Benchmark of sse-predict: source frames per second end to end on a 640x360 clip, side by side with
the face pipeline alone.

Cases, each from an empty output folder (nothing resumed), best of --repeat runs:
  face pipeline alone   sse-preprocess's work with every person kept (--faces all): decode, cuts,
                        detection every 5 frames + tracking, landmarks, descriptors, crops, manifest
  sse-predict           the same, then an SSE-HoloNet 3conv-s + Concat at 48x48 (the shipped FER2013
                        form; random weights: speed does not depend on them) on every crop, the CSV,
                        summaries, a timeline per person and the contact sheet
  + --annotate          the same and the annotated MP4 (the clip decoded a third time, every frame
                        drawn and encoded)
  + --tta tencrop       the same as sse-predict with ten views of every crop
  shipped models        sse-predict with no --model: the shipped ensemble and every shipped model
                        folder, each model cutting its own crop from the source frames (a second
                        decode of the clip)
The frame rate is the clip's source frames over the wall time of the command as a user runs it,
in-process (interpreter start and imports excluded, model loading included). The CPU time of the
process is given beside it: on a shared machine it says more than the wall time.
Writes bench/results/predict.md.

    python bench/bench_predict.py [--clip PATH] [--repeat N] [--jobs N]
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

import torch  # noqa: E402

import caffe  # noqa: E402
from bench_faces import cpu_model  # noqa: E402
from caffe.atomic import write_text  # noqa: E402
from sse.faces.batch import run_batch  # noqa: E402
from sse.faces.inputs import discover  # noqa: E402
from sse.faces.pipeline import PipelineConfig  # noqa: E402
from sse.predict.cli import main as predict_main  # noqa: E402

DEFAULT_CLIP = REPO.parent / "shared" / "data" / "media" / "videos" / "short_hamilton_clip.mp4"
RESULTS = REPO / "bench" / "results" / "predict.md"


def make_model(folder: Path) -> list[str]:
    """DEPLOY CAFFEMODEL MEAN of an SSE-HoloNet 3conv-s + Concat at 48x48 gray, random weights, no mean."""
    subprocess.run(["sse-gen-nets", "--backbone", "holonet", "--variant", "3conv-s+concat", "--input-size", "48",
                    "--out", str(folder)], check=True, capture_output=True)
    deploy = next(folder.rglob("*_deploy.prototxt"))
    caffe.set_random_seed(0)
    weights = folder / "holonet48.caffemodel"
    net = caffe.Net(str(deploy), caffe.TEST)
    for name, layer in net.layer_dict.items():
        if layer.type == "BatchNorm":  # unit variance and scale factor: finite outputs from random weights
            net.params[name][1].data[...] = 1.0
            net.params[name][2].data[...] = 1.0
    net.save(str(weights))
    return [str(deploy), str(weights), "-"]


def timed(run) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its finished children) of run()."""
    cpu0, wall0 = _cpu(), time.perf_counter()
    run()
    return time.perf_counter() - wall0, _cpu() - cpu0


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--jobs", type=int, default=1, help="face pipeline workers (default 1: one clip)")
    args = p.parse_args()
    if not args.clip.is_file():
        print(f"clip not found: {args.clip}", file=sys.stderr)
        return 1
    import cv2
    capture = cv2.VideoCapture(str(args.clip))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    size = f"{int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
    capture.release()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        tmp = Path(tmp)
        model = make_model(tmp / "nets")
        base = [str(args.clip), "--model", *model, "--no-progress", "--jobs", str(args.jobs)]
        config = PipelineConfig(faces="all")

        def faces_alone(out: Path) -> None:
            run_batch(discover([args.clip]), out, config, args.jobs, progress=False)

        def predict(*extra: str, shipped: bool = False):
            def run(out: Path) -> None:
                argv = [a for a in base if a not in model[:3] and a != "--model"] if shipped else base
                with open(os.devnull, "w") as sink:
                    stdout, sys.stdout = sys.stdout, sink
                    try:
                        assert predict_main(argv + ["--out", str(out), *extra]) == 0
                    finally:
                        sys.stdout = stdout
            return run

        cases = [("face pipeline alone (--faces all)", faces_alone), ("sse-predict", predict()),
                 ("sse-predict --annotate", predict("--annotate")),
                 ("sse-predict --tta tencrop", predict("--tta", "tencrop")),
                 ("sse-predict, shipped models (default: ensemble + every model folder, each cutting its own "
                  "crop from the source frames)", predict(shipped=True))]
        rows = []
        for name, run in cases:
            best = None
            for k in range(args.repeat):
                out = tmp / f"out_{len(rows)}_{k}"
                wall, cpu = timed(lambda: run(out))
                shutil.rmtree(out, ignore_errors=True)
                if best is None or wall < best[0]:
                    best = (wall, cpu)
            rows.append((name, *best))
            print(f"{name}: {best[0]:.2f} s wall, {frames / best[0]:.1f} frames/s, {best[1]:.2f} s CPU", flush=True)
    load_after = os.getloadavg()[0]
    face_wall = rows[0][1]
    lines = [
        "## sse-predict end to end (bench/bench_predict.py)", "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads.",
        f"Load average (1 min) before/after the run: {load_before:.1f} / {load_after:.1f} (other sessions share "
        "these cores; a load above their count slows every case).",
        f"Clip: `{args.clip.name}` ({size}, {frames} frames). Best of {args.repeat} runs per case, each into an empty "
        f"folder; face pipeline workers: {args.jobs}. Model: SSE-HoloNet 3conv-s + Concat at 48x48 gray (the "
        "shipped FER2013 form), random weights (BatchNorm statistics set to unit variance). "
        f"Command: `python bench/bench_predict.py --repeat {args.repeat} --jobs {args.jobs}`.", "",
        "| case | seconds | source frames/s | CPU seconds | source frames per CPU second | vs face pipeline alone |",
        "|---|---|---|---|---|---|",
    ]
    for name, wall, cpu in rows:
        lines.append(f"| {name} | {wall:.2f} | {frames / wall:.1f} | {cpu:.2f} | {frames / cpu:.1f} | "
                     f"{wall / face_wall:.2f}x time |")
    write_text(RESULTS, "\n".join(lines) + "\n")
    print(f"-> {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
