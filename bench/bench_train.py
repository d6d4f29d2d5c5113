"""Training speed, side by side in one run; writes bench/results/train.md.

SSE-HoloNet trained from its prototxt (script/SSE-HoloNet/SSE_holonet_train.prototxt and its
solver: caffe.get_solver, Caffe's SGD, the Data layers replaced by an HDF5Data layer over
in-memory random images) versus a plain PyTorch loop over the same architecture
(bench/plain_torch_models.py SSEHoloNet, the prototxt net's initial weights copied in,
cross-entropy on the four score tensors, torch.optim.SGD with the solver's momentum and weight
decay), reading the same images in the same order. Iterations alternate between the two so
drifts of a shared machine affect both alike; medians of the per-iteration times. Before timing,
both compute the loss of the same batch from the same weights (the architecture check).

Run: ``python bench/bench_train.py`` (``--batch 32 --reps 8 --warmup 2``; ``--quick``)."""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from plain_torch_models import SSEHoloNet, load_from_caffe_net, sse_loss  # noqa: E402

import caffe  # noqa: E402
from caffe import model_io  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402

NET = REPO / "script/SSE-HoloNet/SSE_holonet_train.prototxt"
SOLVER = REPO / "script/SSE-HoloNet/SSE_holonet_train_solver.prototxt"
RESULT = REPO / "bench/results/train.md"


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def make_data(workdir: Path, images: int, channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.uniform(-1, 1, size=(images, channels, 128, 128)).astype(np.float32)
    label = rng.integers(0, 7, size=images).astype(np.float32)
    with h5py.File(workdir / "train.h5", "w") as f:
        f["data"], f["label"] = data, label
    (workdir / "list.txt").write_text(str(workdir / "train.h5") + "\n")
    return data, label


def solver_param(workdir: Path, batch: int):
    """The released solver and train net, the Data layers swapped for HDF5Data (same tops)."""
    net = model_io.read_net(NET)
    layers = [l for l in net.layer if l.type != "Data"]
    del net.layer[:]
    data = net.layer.add(name="data", type="HDF5Data", top=["data", "label"])
    data.hdf5_data_param.source = str(workdir / "list.txt")
    data.hdf5_data_param.batch_size = batch
    net.layer.extend(layers)
    param = model_io.read_solver(SOLVER)
    param.ClearField("net")
    param.net_param.CopyFrom(net)
    for name in ("test_iter", "test_interval", "snapshot"):
        param.ClearField(name)
    param.display = 0
    param.max_iter = 10 ** 6
    param.snapshot_after_train = False
    param.solver_mode = caffe_pb2.SolverParameter.CPU
    param.random_seed = 1
    return param


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="batch 8, 3 reps (a smoke run)")
    p.add_argument("--output", default=str(RESULT))
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.reps, args.warmup = 8, 3, 1
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        images = args.batch * 4
        data, label = make_data(workdir, images, args.channels)
        caffe.solvers.glog.set_enabled(False)
        solver = caffe.get_solver(solver_param(workdir, args.batch), log=False)
        solver.show_progress = False
        model = SSEHoloNet(channels=args.channels)
        copied = load_from_caffe_net(model, solver.net)
        model.train()

        # Architecture check: same weights, same first batch -> same loss.
        with torch.no_grad():
            caffe_loss = float(solver.net.run())
            plain_loss = float(sse_loss(model(torch.from_numpy(data[:args.batch])),
                                        torch.from_numpy(label[:args.batch]).long()))
        solver = caffe.get_solver(solver_param(workdir, args.batch), log=False)
        solver.show_progress = False
        load_from_caffe_net(model, solver.net)
        sp = solver.param
        optimizer = torch.optim.SGD(model.parameters(), lr=sp.base_lr, momentum=sp.momentum,
                                    weight_decay=sp.weight_decay)
        position = [0]

        def plain_step() -> None:
            start = position[0]
            x = torch.from_numpy(data[start:start + args.batch])
            y = torch.from_numpy(label[start:start + args.batch]).long()
            position[0] = (start + args.batch) % images
            optimizer.zero_grad(set_to_none=True)
            loss = sse_loss(model(x), y)
            loss.backward()
            optimizer.step()

        def caffe_step() -> None:
            solver.step(1)

        steps = {"prototxt (caffe.get_solver, step)": caffe_step, "plain PyTorch loop": plain_step}
        for fn in steps.values():
            for _ in range(args.warmup):
                fn()
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(args.reps):
            for name, fn in steps.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    names = list(steps)
    ratio = med[names[0]] / med[names[1]]
    ratio_min = min(times[names[0]]) / min(times[names[1]])
    pairwise = statistics.median(a / b for a, b in zip(times[names[0]], times[names[1]]))
    load = os.getloadavg()
    lines = [
        "## Training speed (bench/bench_train.py)",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores (`lscpu` model name), torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}; "
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end (a shared machine: "
        "other jobs ran alongside, so single iterations vary; compare the ratios).",
        f"SSE-HoloNet (`{NET.relative_to(REPO)}` + its solver: SGD, momentum {sp.momentum:g}, "
        f"weight decay {sp.weight_decay:g}), {args.channels}x128x128 random images from memory, "
        f"batch {args.batch} (the prototxt's is 128), {args.warmup} warm-up and {args.reps} timed "
        "iterations each, alternating; medians. Architecture check on the same first batch and "
        f"weights ({copied} tensors copied): loss {caffe_loss:.6f} (prototxt) vs {plain_loss:.6f} "
        "(plain).",
        "",
        "| training | s / iteration (median) | min | max | images/s |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        ts = times[name]
        lines.append(f"| {name} | {med[name]:.3f} | {min(ts):.3f} | {max(ts):.3f} | "
                     f"{args.batch / med[name]:.1f} |")
    lines += ["", f"Ratio prototxt / plain, time per iteration (goal: <= 1.15): medians **{ratio:.3f}**, "
              f"fastest iterations **{ratio_min:.3f}**, median of the ratios of adjacent iterations "
              f"**{pairwise:.3f}**.", ""]
    text = "\n".join(lines)
    print(text)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(text)
    os.replace(tmp_out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
