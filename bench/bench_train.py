"""Training speed, side by side in one run; writes bench/results/train.md (train_gpu.md on CUDA).

An SSE net trained from its prototxt (script/SSE-*/..._train.prototxt and its solver:
caffe.get_solver, Caffe's SGD, the Data layers replaced by an HDF5Data layer over in-memory random
images) versus a plain PyTorch loop over the same architecture (bench/plain_torch_models.py, the
prototxt net's initial weights copied in, cross-entropy on the score tensors, torch.optim.SGD with
the solver's momentum and weight decay), reading the same images in the same order. Iterations
alternate between the two so drifts of a shared machine affect both alike; medians of the
per-iteration times. Before timing, both compute the loss of the same batch from the same weights
(the architecture check). SSE-ResNet-50 has no plain version: it is timed from the prototxt only.

Run: ``python bench/bench_train.py`` (``--net holonet|densenet|resnet50 --batch 32 --reps 8``;
on a GPU ``--device cuda [--autocast bf16]``; ``--quick`` for a smoke run)."""
from __future__ import annotations

import argparse
import contextlib
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
from plain_torch_models import SSEDenseNet121, SSEHoloNet, load_from_caffe_net, sse_loss  # noqa: E402

import caffe  # noqa: E402
from caffe import model_io  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402

# name -> (train prototxt, solver, plain PyTorch class or None, input size)
NETS = {
    "holonet": ("script/SSE-HoloNet/SSE_holonet_train.prototxt",
                "script/SSE-HoloNet/SSE_holonet_train_solver.prototxt", SSEHoloNet, 128),
    "densenet": ("script/SSE-DenseNet/SSE-densenet-121_train.prototxt",
                 "script/SSE-DenseNet/SSE-densenet-121_train_solver.prototxt", SSEDenseNet121, 128),
    "resnet50": ("script/SSE-ResNet/SSE-resnet-50_train.prototxt",
                 "script/SSE-ResNet/SSE-resnet-50_train_solver.prototxt", None, 224),
}
RESULTS = REPO / "bench/results"


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def make_data(workdir: Path, images: int, channels: int, size: int, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.uniform(-1, 1, size=(images, channels, size, size)).astype(np.float32)
    label = rng.integers(0, 7, size=images).astype(np.float32)
    with h5py.File(workdir / "train.h5", "w") as f:
        f["data"], f["label"] = data, label
    (workdir / "list.txt").write_text(str(workdir / "train.h5") + "\n")
    return data, label


def solver_param(workdir: Path, batch: int, net_path: Path, solver_path: Path):
    """The released solver and train net, the Data layers swapped for HDF5Data (same tops)."""
    net = model_io.read_net(net_path)
    layers = [l for l in net.layer if l.type != "Data"]
    del net.layer[:]
    data = net.layer.add(name="data", type="HDF5Data", top=["data", "label"])
    data.hdf5_data_param.source = str(workdir / "list.txt")
    data.hdf5_data_param.batch_size = batch
    net.layer.extend(layers)
    param = model_io.read_solver(solver_path)
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


def device_name(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return f"{cpu_name()}, {os.cpu_count()} cores (`lscpu` model name)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", choices=sorted(NETS), default="holonet")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--autocast", choices=("none", "bf16"), default="none",
                   help="run both under torch.autocast (bfloat16)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="batch 8, 3 reps (a smoke run)")
    p.add_argument("--output", help="result file (default bench/results/train.md, or "
                                    "train_gpu.md on CUDA)")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.reps, args.warmup = 8, 3, 1
    net_file, solver_file, plain_class, size = NETS[args.net]
    net_path, solver_path = REPO / net_file, REPO / solver_file
    if args.device == "cuda":
        caffe.set_mode_gpu()
    device = torch.device(args.device)
    autocast = (torch.autocast(args.device, dtype=torch.bfloat16) if args.autocast == "bf16"
                else contextlib.nullcontext())
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        images = args.batch * 4
        data, label = make_data(workdir, images, args.channels, size)
        caffe.solvers.glog.set_enabled(False)

        def new_solver():
            solver = caffe.get_solver(solver_param(workdir, args.batch, net_path, solver_path),
                                      log=False)
            solver.show_progress = False
            return solver

        solver = new_solver()
        check = "no plain PyTorch version to check against"
        steps = {"prototxt (caffe.get_solver, step)": lambda: solver.step(1)}
        if plain_class is not None:
            model = plain_class(channels=args.channels).to(device)
            copied = load_from_caffe_net(model, solver.net)
            model.train()
            x0 = torch.from_numpy(data[:args.batch]).to(device)
            y0 = torch.from_numpy(label[:args.batch]).long().to(device)
            with torch.no_grad():
                caffe_loss = float(solver.net.run())
                plain_loss = float(sse_loss(model(x0), y0))
            check = (f"architecture check on the same first batch and weights ({copied} tensors "
                     f"copied): loss {caffe_loss:.6f} (prototxt) vs {plain_loss:.6f} (plain)")
            solver = new_solver()
            load_from_caffe_net(model, solver.net)
            sp = solver.param
            optimizer = torch.optim.SGD(model.parameters(), lr=sp.base_lr, momentum=sp.momentum,
                                        weight_decay=sp.weight_decay)
            position = [0]

            def plain_step() -> None:
                start = position[0]
                x = torch.from_numpy(data[start:start + args.batch]).to(device)
                y = torch.from_numpy(label[start:start + args.batch]).long().to(device)
                position[0] = (start + args.batch) % images
                optimizer.zero_grad(set_to_none=True)
                loss = sse_loss(model(x), y)
                loss.backward()
                optimizer.step()

            steps["plain PyTorch loop"] = plain_step
        steps = {k: _timed_step(fn, autocast, device) for k, fn in steps.items()}
        for fn in steps.values():
            for _ in range(args.warmup):
                fn()
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(args.reps):
            for name, fn in steps.items():
                times[name].append(fn())
    text = report(args, times, check, net_file, solver.param, device)
    print(text)
    out = Path(args.output) if args.output else RESULTS / (
        "train_gpu.md" if args.device == "cuda" else "train.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(text)
    os.replace(tmp_out, out)
    return 0


def _timed_step(fn, autocast, device: torch.device):
    """A function running ``fn`` once under ``autocast`` and returning its seconds."""
    def run() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with autocast:
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t
    return run


def report(args, times: dict[str, list[float]], check: str, net_file: str, sp,
           device: torch.device) -> str:
    med = {k: statistics.median(v) for k, v in times.items()}
    names = list(times)
    load = os.getloadavg()
    lines = [
        f"## Training speed (bench/bench_train.py), {args.net}, {args.device}"
        + (", autocast bf16" if args.autocast == "bf16" else ""),
        "",
        f"Machine: {device_name(args.device)}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}; load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end (a shared machine: other jobs "
        "may run alongside, so single iterations vary; compare the ratios).",
        f"`{net_file}` + its solver (SGD, momentum {sp.momentum:g}, weight decay "
        f"{sp.weight_decay:g}), {args.channels}-channel random images from memory, batch "
        f"{args.batch}, {args.warmup} warm-up and {args.reps} timed iterations each, alternating; "
        f"medians. {check[0].upper() + check[1:]}.",
        "",
        "| training | s / iteration (median) | min | max | images/s |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        ts = times[name]
        lines.append(f"| {name} | {med[name]:.3f} | {min(ts):.3f} | {max(ts):.3f} | "
                     f"{args.batch / med[name]:.1f} |")
    if len(names) == 2:
        a, b = times[names[0]], times[names[1]]
        pairwise = statistics.median(x / y for x, y in zip(a, b))
        lines += ["", f"Ratio prototxt / plain, time per iteration (goal: <= 1.15): medians "
                      f"**{med[names[0]] / med[names[1]]:.3f}**, fastest iterations "
                      f"**{min(a) / min(b):.3f}**, median of the ratios of adjacent iterations "
                      f"**{pairwise:.3f}**."]
    return "\n".join(lines + [""])


if __name__ == "__main__":
    sys.exit(main())
