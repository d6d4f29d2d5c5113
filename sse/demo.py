"""``sse-demo``: the whole SSE workflow on the embedded default data, on the CPU, in minutes.

Steps, each with the toolkit's own command (the same ones a user runs on real data):

1. draw labelled face clips (``sse.synth``): training and held-out videos;
2. ``convert_imageset --gray --shuffle`` -> LMDBs, ``compute_image_mean`` -> mean.binaryproto;
3. ``sse-gen-nets``' generator -> SSE-HoloNet (3conv-s + Concat) train/test prototxts and a solver;
4. ``caffe train`` (its log tee'd to ``train.log``) -> caffemodel; ``caffe-plot-log`` -> curves PNG;
5. ``extract_features`` of ``prob`` on the held-out frames (the test prototxt) -> LevelDB; ``leveldb2mat`` -> features.mat;
6. ``sse.fusion``: frames -> videos (mean), accuracy, per-class table, confusion matrix and a
   per-video timeline PNG.

Everything lands in ``--out`` (default ``demo_out``); a finished step is not redone when the
command is run again (delete the folder to start over).
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.io

from caffe import model_io
from caffe.tools import compute_image_mean, convert_imageset, extract_features, plot_log
from caffe.tools.cli_util import guarded
from sse.classes import CLASS_NAMES
from sse.fusion import (aggregate_frames, evaluate, read_frame_list, read_labels, save_confusion_png,
                        save_timeline_png, write_predictions)
from sse.fusion import leveldb2mat
from sse.nets.common import DataConfig
from sse.nets.generate import write_variant
from sse.synth import make_dataset

VARIANT = "3conv-s+concat"


def _step(title: str) -> float:
    print(f"\n== {title}", file=sys.stderr, flush=True)
    return time.time()


def _done(start: float) -> None:
    print(f"   ({time.time() - start:.0f} s)", file=sys.stderr, flush=True)


def _tool(main, args: list[str]) -> None:
    code = main(args)
    if code:
        raise SystemExit(f"sse-demo: {main.__module__} {' '.join(args)} failed with exit code {code}")


def make_data(out: Path, train: tuple[int, int], val: tuple[int, int], seed: int, size: int) -> Path:
    data = out / "data"
    if not (data / "val_videos.txt").exists():
        t = _step(f"drawing {7 * train[0]} training clips of {train[1]} frames and {7 * val[0]} "
                  f"held-out clips of {val[1]} frames")
        make_dataset(data, {"train": train, "val": val}, seed, size)
        _done(t)
    for split in ("train", "val"):
        db = out / f"{split}_lmdb"
        if not db.exists():
            t = _step(f"convert_imageset --gray --shuffle {split}")
            _tool(convert_imageset.main, ["--gray", "--shuffle", "--seed=1", "--no_progress", f"{data}/",
                                          str(data / f"{split}.txt"), str(db)])
            _done(t)
    mean = out / "mean.binaryproto"
    if not mean.exists():
        _tool(compute_image_mean.main, [str(out / "train_lmdb"), str(mean)])
    return data


def make_nets(out: Path, data: Path, iterations: int, batch: int, val_frames: int, size: int
              ) -> dict[str, Path]:
    cfg = DataConfig(input_size=size, channels=1, mean_file=str(out / "mean.binaryproto"),
                     train_source=str(out / "train_lmdb"), val_source=str(out / "val_lmdb"),
                     test_list=str(data / "val.txt"), test_root=f"{data}/", train_batch=batch,
                     val_batch=batch, test_batch=batch)
    paths = write_variant("holonet", VARIANT, out / "nets", cfg, max_iter=iterations,
                          solver_mode="CPU")
    solver = model_io.read_solver(paths["solver"])
    solver.base_lr = 0.01
    solver.lr_policy = "step"
    solver.gamma = 0.1
    solver.stepsize = int(iterations * 0.75)
    solver.display = 10
    solver.average_loss = 10
    solver.test_interval = max(iterations // 2, 1)
    del solver.test_iter[:]
    solver.test_iter.append(math.ceil(val_frames / batch))
    solver.test_initialization = False
    solver.snapshot = 0
    solver.snapshot_prefix = str(out / "snapshots" / "holonet")
    solver.random_seed = 1701
    (out / "snapshots").mkdir(exist_ok=True)
    model_io.write_text(solver, paths["solver"])
    return paths


def train(out: Path, solver: Path, iterations: int) -> Path:
    """Run ``caffe train`` as a user would, its log shown and kept in train.log."""
    model = out / "snapshots" / f"holonet_iter_{iterations}.caffemodel"
    if model.exists():
        return model
    t = _step(f"caffe train --solver={solver} ({iterations} iterations)")
    log_path = out / "train.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "caffe.tools.caffe_cli", "train",
                                 f"--solver={solver}", "--no_progress"],
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        for line in proc.stderr:
            log.write(line)
            log.flush()
            if "loss = " in line or "Test net output" in line or "Error" in line or "error" in line:
                sys.stderr.write("   " + line.split("] ", 1)[-1])
        if proc.wait():
            raise SystemExit(f"sse-demo: caffe train failed (exit {proc.returncode}); see {log_path}")
    _done(t)
    _tool(plot_log.main, [str(log_path), "-o", str(out / "training_curves.png"),
                          "--title", "SSE-HoloNet on the demo clips"])
    return model


def extract(out: Path, model: Path, net: Path, val_frames: int, batch: int) -> np.ndarray:
    """Per-frame ``prob`` of the held-out frames, in list order: the test prototxt (ImageData over
    the held-out list, BatchNorm with global statistics)."""
    mat = out / "features.mat"
    if not mat.exists():
        t = _step("extract_features prob -> LevelDB -> leveldb2mat -> features.mat")
        db = out / "features_prob"
        batches = math.ceil(val_frames / batch)
        _tool(extract_features.main, [str(model), str(net), "prob", str(db), str(batches),
                                      "leveldb", "CPU", "--overwrite", "--no_progress"])
        _tool(leveldb2mat.main, [str(db), str(batches), str(batch), str(len(CLASS_NAMES)), str(mat),
                                 "--quiet"])
        _done(t)
    feats = scipy.io.loadmat(str(mat))
    name = next(k for k in feats if not k.startswith("__"))
    return np.asarray(feats[name])[:val_frames]


def report(out: Path, data: Path, frame_probs: np.ndarray) -> float:
    frames = read_frame_list(data / "val_frames.txt")
    videos, labels = read_labels(data / "val_videos.txt")
    names, video_probs = aggregate_frames(frame_probs, frames, videos=videos, method="mean")
    write_predictions(out / "val_predictions.txt", video_probs)
    result = evaluate(video_probs, labels)
    frame_result = evaluate(frame_probs, [labels[videos.index(v)] for v in frames.videos])
    save_confusion_png(result, out / "confusion_matrix.png",
                       title=f"demo, held-out videos: accuracy {result.accuracy:.1%}")
    first = names[int(np.argmax([labels[i] == CLASS_NAMES.index("Happy") for i in range(len(names))]))]
    rows = [i for i, v in enumerate(frames.videos) if v == first]
    save_timeline_png(frame_probs[rows], out / f"timeline_{first}.png", title=first)
    print(f"\n{result.table()}\n", file=sys.stderr)
    print(f"frame accuracy {frame_result.accuracy:.1%} ({frame_result.total} frames); "
          f"video accuracy {result.accuracy:.1%} ({result.total} videos, chance "
          f"{1 / len(CLASS_NAMES):.1%}); macro-F1 {result.macro_f1:.3f}")
    print(f"outputs in {out}/: training_curves.png, confusion_matrix.png, timeline_{first}.png, "
          "features.mat, val_predictions.txt, train.log")
    return result.accuracy


def run(out: Path, train_clips: tuple[int, int] = (60, 3), val_clips: tuple[int, int] = (4, 8),
        iterations: int = 400, batch: int = 32, seed: int = 2017, size: int = 64) -> float:
    """The whole demo; ``train_clips``/``val_clips`` are (clips per class, frames per clip). Returns the
    held-out video accuracy."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    data = make_data(out, train_clips, val_clips, seed, size)
    val_frames = len(CLASS_NAMES) * val_clips[0] * val_clips[1]
    paths = make_nets(out, data, iterations, batch, val_frames, size)
    model = train(out, paths["solver"], iterations)
    probs = extract(out, model, paths["test"], val_frames, batch)
    accuracy = report(out, data, probs)
    print(f"total {time.time() - start:.0f} s", file=sys.stderr)
    return accuracy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sse-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--train-clips", type=int, nargs=2, default=(60, 3), metavar=("CLIPS", "FRAMES"),
                   help="training clips per class and frames per clip (60 3)")
    p.add_argument("--val-clips", type=int, nargs=2, default=(4, 8), metavar=("CLIPS", "FRAMES"),
                   help="held-out clips per class and frames per clip (4 8)")
    p.add_argument("--iterations", type=int, default=400, help="training iterations (400)")
    p.add_argument("--batch", type=int, default=32, help="batch size (32)")
    p.add_argument("--seed", type=int, default=2017, help="seed of the drawn data (2017)")
    p.add_argument("--input-size", type=int, default=64,
                   help="net input size (64: the 128x128 clips are resized, so that the demo fits "
                        "in minutes on 2 CPU cores; 128 is the released size)")
    p.add_argument("--traceback", action="store_true", help="show the traceback of an error")
    args = p.parse_args(argv)
    os.environ.setdefault("CAFFE_DATA_WORKERS", "1")

    def body() -> None:
        run(Path(args.out), tuple(args.train_clips), tuple(args.val_clips), args.iterations,
            args.batch, args.seed, args.input_size)

    return guarded("sse-demo", body, args.traceback)


if __name__ == "__main__":
    sys.exit(main())
