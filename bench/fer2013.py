"""Does SSE help on real faces? SSE-HoloNet, Original vs 3conv-s + Concat, on FER2013.

Protocol (the same for both forms, nothing tuned on PrivateTest):
* data: ``../shared/data/fer2013`` (48x48 gray faces, official splits), labels mapped by name to
  the toolkit's class order; Training -> LMDB (train), PublicTest -> LMDB (validation and model
  selection), PrivateTest -> LMDB (reported once, for the selected snapshot only);
* nets: ``sse-gen-nets --backbone holonet --input-size 48 --channels 1 --mean-file <train mean>
  --mirror true`` in each form; the released solver (SGD, momentum 0.9, weight decay 2e-4,
  base_lr 0.01, step policy, gamma 0.3) with the step size and max_iter scaled to the CPU budget;
* training: ``caffe train`` (log kept, curves drawn with caffe-plot-log), a snapshot every
  ``--test-every`` iterations;
* selection: each snapshot is scored on all 3,589 PublicTest faces with BatchNorm global
  statistics (the deploy behaviour); the best one is scored once on PrivateTest.

    python bench/fer2013.py --work /tmp/fer --iterations 3000 --forms original 3conv-s+concat

Results (accuracy, per-class recall, curves) go to ``bench/results/fer2013.md`` and PNGs under
``bench/results/``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
# Plots of the runs (made here, from the training logs and predictions; no FER2013 data in them).
PLOTS = REPO / "bench" / "results" / "plots"
sys.path.insert(0, str(REPO))

import caffe  # noqa: E402
from caffe import model_io  # noqa: E402
from caffe.data.db import Writer  # noqa: E402
from caffe.io import array_to_datum  # noqa: E402
from caffe.tools import compute_image_mean  # noqa: E402
from sse.classes import CLASS_NAMES, label_mapping  # noqa: E402
from sse.fusion import evaluate, save_confusion_png  # noqa: E402
from sse.nets.common import DataConfig  # noqa: E402
from sse.nets.generate import write_variant  # noqa: E402

FER = REPO.parent / "shared" / "data" / "fer2013"
SPLITS = ("Training", "PublicTest", "PrivateTest")
EVAL_BATCH = 97  # 3589 = 37 * 97: every test face exactly once


def load_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(faces uint8 N x 48 x 48, labels in the toolkit's order)."""
    d = np.load(FER / f"{name}.npz")
    buf, off = d["jpeg_data"], d["jpeg_offsets"]
    faces = np.stack([cv2.imdecode(buf[off[i]:off[i + 1]], cv2.IMREAD_GRAYSCALE)
                      for i in range(len(off) - 1)])
    return faces, label_mapping("fer2013")[d["labels"]]


def prepare(work: Path) -> dict[str, int]:
    """LMDBs of the three splits (Training shuffled with a fixed seed) and the training mean."""
    counts = {}
    for split in SPLITS:
        db = work / f"{split.lower()}_lmdb"
        faces, labels = load_split(split)
        counts[split] = len(labels)
        if db.exists():
            continue
        order = np.random.default_rng(2013).permutation(len(labels)) if split == "Training" \
            else np.arange(len(labels))
        with Writer(db, "lmdb") as writer:
            for k, i in enumerate(order):
                datum = array_to_datum(faces[i][None], int(labels[i]))
                writer.put(f"{k:08d}", datum.SerializeToString())
    mean = work / "mean.binaryproto"
    if not mean.exists():
        compute_image_mean.main([str(work / "training_lmdb"), str(mean)])
    return counts


def make_nets(work: Path, form: str, iterations: int, batch: int, test_every: int) -> dict[str, Path]:
    cfg = DataConfig(input_size=48, channels=1, mean_file=str(work / "mean.binaryproto"), mirror=True,
                     train_source=str(work / "training_lmdb"), val_source=str(work / "publictest_lmdb"),
                     train_batch=batch, val_batch=EVAL_BATCH, test_batch=EVAL_BATCH)
    paths = write_variant("holonet", form, work / form, cfg, max_iter=iterations, solver_mode="CPU")
    solver = model_io.read_solver(paths["solver"])
    solver.stepsize = max(int(iterations * 0.4), 1)
    solver.display = 50
    solver.average_loss = 50
    solver.test_interval = iterations + 1
    solver.test_initialization = False
    del solver.test_iter[:]
    solver.test_iter.append(1)
    solver.snapshot = test_every
    solver.snapshot_prefix = str(work / form / "snap")
    solver.random_seed = 1701
    model_io.write_text(solver, paths["solver"])
    return paths


def train_all(work: Path, paths: dict[str, dict[str, Path]], threads: int) -> dict[str, float]:
    """``caffe train`` of every form, side by side; returns each run's wall time in seconds."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), CAFFE_DATA_WORKERS="1")
    running, start, seconds = {}, time.time(), {}
    for form, p in paths.items():
        done = work / form / "seconds.txt"
        if done.exists():
            seconds[form] = float(done.read_text())
            continue
        log = open(work / form / "train.log", "w")
        running[form] = (subprocess.Popen([sys.executable, "-m", "caffe.tools.caffe_cli", "train",
                                           f"--solver={p['solver']}", "--no_progress"],
                                          stderr=log, stdout=log, env=env), log)
    while running:
        for form, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[form]
            if proc.returncode:
                raise SystemExit(f"caffe train failed for {form}; see {work / form / 'train.log'}")
            seconds[form] = time.time() - start
            (work / form / "seconds.txt").write_text(f"{seconds[form]:.1f}\n")
        time.sleep(5)
    return seconds


def scores(work: Path, train_net: Path, weights: Path, split: str, count: int) -> np.ndarray:
    """Fused class scores (the Accuracy layer's input) of every face of ``split`` (TEST phase, BatchNorm global stats)."""
    param = model_io.read_net(train_net)
    for layer in param.layer:
        if layer.type == "BatchNorm":
            layer.batch_norm_param.use_global_stats = True
        if layer.type == "Data":
            layer.data_param.source = str(work / f"{split.lower()}_lmdb")
    net = caffe.Net(net_param=param, phase=caffe.TEST, weights=str(weights))
    score = next(l.bottom[0] for l in net.net_param.layer if l.type == "Accuracy")
    out = []
    for _ in range(math.ceil(count / EVAL_BATCH)):
        net.forward()
        out.append(net.blobs[score].data.copy())
    return np.concatenate(out)[:count]


def select_and_test(work: Path, form: str, paths: dict[str, Path], counts: dict[str, int],
                    public_labels: np.ndarray, private_labels: np.ndarray) -> dict:
    snaps = sorted((work / form).glob("snap_iter_*.caffemodel"),
                   key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    curve = []
    for snap in snaps:
        probs = scores(work, paths["train"], snap, "PublicTest", counts["PublicTest"])
        curve.append((int(snap.stem.rsplit("_", 1)[1]), float((probs.argmax(1) == public_labels).mean())))
        print(f"{form} {snap.name}: PublicTest {curve[-1][1]:.4f}", file=sys.stderr, flush=True)
    best_iter, best_acc = max(curve, key=lambda c: (c[1], c[0]))
    best = work / form / f"snap_iter_{best_iter}.caffemodel"
    private = scores(work, paths["train"], best, "PrivateTest", counts["PrivateTest"])
    result = evaluate(private, private_labels)
    save_confusion_png(result, PLOTS / f"holonet48_{form}_confusion.png",
                       title=f"SSE-HoloNet {form}, FER2013 PrivateTest: {result.accuracy:.1%}")
    subprocess.call([sys.executable, "-m", "caffe.tools.plot_log", str(work / form / "train.log"),
                     "-o", str(PLOTS / f"holonet48_{form}_curves.png"),
                     "--title", f"SSE-HoloNet {form} on FER2013 Training"])
    return {"form": form, "public_curve": curve, "best_iter": best_iter, "public_best": best_acc,
            "private": result.accuracy, "private_macro_f1": result.macro_f1,
            "private_recall": [float(r) for r in result.recall],
            "params": int(sum(p.numel() for p in caffe.Net(str(paths["deploy"]), caffe.TEST).learnable_params))}


def report(results: list[dict], args: argparse.Namespace, seconds: dict[str, float]) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    lines = ["## FER2013: SSE-HoloNet Original vs 3conv-s + Concat (bench/fer2013.py)", "",
             f"Machine: {cpu}, {os.cpu_count()} cores, CPU only, torch {torch.__version__}; "
             f"both forms trained side by side, {args.threads} thread(s) each.", "",
             f"What was run: `python bench/fer2013.py --iterations {args.iterations} --batch {args.batch} "
             f"--test-every {args.test_every}`: HoloNet at 48x48x1 (FER2013's own size), mean file of the "
             f"Training split, random mirror, batch {args.batch}, {args.iterations} iterations "
             f"({args.iterations * args.batch / 28709:.1f} epochs of the 28,709 Training faces), SGD "
             f"lr 0.01 x 0.3 every {max(int(args.iterations * 0.4), 1)} iterations, momentum 0.9, weight decay 2e-4. "
             f"Snapshots every {args.test_every} iterations, each scored on all 3,589 PublicTest faces; "
             "the best one scored once on PrivateTest. This is a CPU budget run, far shorter than the "
             "released 70k-iteration schedule at 128x128: the numbers compare the two forms under "
             "the same short budget, they are not the paper's.", "",
             "| form | parameters | best PublicTest (iteration) | **PrivateTest accuracy** | PrivateTest macro-F1 | training time |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['form']} | {r['params'] / 1e6:.2f} M | {r['public_best']:.2%} ({r['best_iter']}) | "
                     f"**{r['private']:.2%}** | {r['private_macro_f1']:.3f} | {seconds[r['form']] / 60:.0f} min |")
    lines += ["", "PrivateTest recall per class (" + ", ".join(CLASS_NAMES) + "):", ""]
    for r in results:
        lines.append(f"- {r['form']}: " + ", ".join(f"{x:.2f}" for x in r["private_recall"]))
    lines += ["", "PublicTest accuracy of each snapshot (iteration: accuracy):", ""]
    for r in results:
        lines.append(f"- {r['form']}: " + ", ".join(f"{i}: {a:.3f}" for i, a in r["public_curve"]))
    lines += ["", "Curves: " + ", ".join(f"`bench/results/plots/holonet48_{r['form']}_curves.png`" for r in results)
              + "; confusion matrices: " + ", ".join(f"`bench/results/plots/holonet48_{r['form']}_confusion.png`"
                                                      for r in results) + ".", ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/fer2013_work")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--test-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument("--forms", nargs="+", default=["original", "3conv-s+concat"])
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    PLOTS.mkdir(parents=True, exist_ok=True)
    counts = prepare(work)
    paths = {f: make_nets(work, f, args.iterations, args.batch, args.test_every) for f in args.forms}
    seconds = train_all(work, paths, args.threads)
    _, public_labels = load_split("PublicTest")
    _, private_labels = load_split("PrivateTest")
    results = [select_and_test(work, f, paths[f], counts, public_labels, private_labels) for f in args.forms]
    (work / "results.json").write_text(json.dumps({"results": results, "seconds": seconds}, indent=1))
    text = report(results, args, seconds)
    (REPO / "bench" / "results" / "fer2013.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
