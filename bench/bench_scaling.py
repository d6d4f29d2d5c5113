"""The arithmetic of training on several machines, for each released SSE net; writes
bench/results/scaling.md.

Measured here: the seconds of one training iteration of one rank (caffe.get_solver, Caffe's SGD,
the released prototxt with its Data layers swapped for HDF5Data over in-memory random images, as
bench_train.py does) at the released per-rank batch size, hence images/s per rank. Counted from the
built net: the float32 bytes each rank all-reduces per iteration (``caffe.distributed`` averages
the gradients of ``reduced_parameters`` in one flat buffer after the backward pass). Computed from
those: a ring all-reduce moves 2 (N-1)/N times the buffer through each rank's link, so one
iteration on N ranks takes t_compute + 2 (N-1)/N * bytes * 8 / bandwidth (the reduction does not
overlap the backward pass; link latency and the all-reduce's own arithmetic are left out, so the
figures are an upper bound on the speed-up), and the speed-up over one rank with the same per-rank
batch is N * t_compute / that.

Run: ``python bench/bench_scaling.py`` (``--reps 3``, ``--quick`` for a smoke run at batch 2)."""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from bench_train import NETS, cpu_name, make_data, solver_param  # noqa: E402

import torch  # noqa: E402

import caffe  # noqa: E402
from caffe import model_io  # noqa: E402
from caffe.distributed import reduced_parameters  # noqa: E402

CHANNELS = {"holonet": 1, "densenet": 3, "resnet50": 3}  # the released nets' inputs
RANKS = (2, 4, 8, 16, 32)
LINKS_GBIT = (10, 25, 100)
RESULTS = REPO / "bench/results"


def released_batch(net_path: Path) -> int:
    """The TRAIN-phase batch_size of the released train prototxt (each rank takes it)."""
    for layer in model_io.read_net(net_path).layer:
        if layer.type == "Data" and any(r.phase == 0 for r in layer.include):
            return int(layer.data_param.batch_size)
    raise SystemExit(f"{net_path}: no TRAIN Data layer")


def allreduce_seconds(nbytes: int, ranks: int, gbit: float) -> float:
    """A ring all-reduce of ``nbytes`` over ``ranks`` links of ``gbit`` Gbit/s (bandwidth term)."""
    return 2 * (ranks - 1) / ranks * nbytes * 8 / (gbit * 1e9)


def measure(name: str, reps: int, batch: int | None) -> dict:
    net_file, solver_file, _, size = NETS[name]
    net_path, solver_path = REPO / net_file, REPO / solver_file
    batch = batch or released_batch(net_path)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        make_data(workdir, batch * 2, CHANNELS[name], size)
        solver = caffe.get_solver(solver_param(workdir, batch, net_path, solver_path), log=False)
        solver.show_progress = False
        params = reduced_parameters(solver.net)
        solver.step(1)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            solver.step(1)
            times.append(time.perf_counter() - t)
    return {"net": name, "file": net_file, "size": size, "channels": CHANNELS[name], "batch": batch,
            "params": sum(p.numel() for p in params),
            "bytes": sum(p.numel() * p.element_size() for p in params),
            "seconds": statistics.median(times), "times": times}


def report(rows: list[dict], reps: int) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "## Scaling arithmetic (bench/bench_scaling.py): images/s per rank, all-reduce volume, "
        "expected speed-up", "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}; load average "
        f"{load} at the end (a shared machine: other jobs ran alongside, so the seconds are an "
        "upper bound of what an idle machine takes).", "",
        "**Measured**: s / iteration = median of "
        f"{reps} training iterations of one process (after one warm-up), the released train "
        "prototxt with its Data layers swapped for HDF5Data over random images in memory, at the "
        "released per-rank batch. **Counted**: the parameters whose gradients are all-reduced "
        "(lr_mult != 0) and their float32 bytes, sent once per iteration.", "",
        "| net | input | batch / rank | s / iteration (measured) | images/s per rank (measured) "
        "| parameters all-reduced | all-reduce MB / iteration |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['file']} | {r['channels']}x{r['size']}x{r['size']} | {r['batch']} "
                     f"| {r['seconds']:.2f} | {r['batch'] / r['seconds']:.3g} | {r['params']:,} "
                     f"| {r['bytes'] / 1e6:.1f} |")
    lines += [
        "", "**Computed** (not measured): the time a ring all-reduce of that buffer takes per "
        "iteration, 2 (N-1)/N x bytes x 8 / link speed (bandwidth only; no latency, no overlap "
        "with the backward pass), and the speed-up of N ranks over one rank with the same "
        "per-rank batch, N x t / (t + all-reduce), with t the CPU iteration time measured above.",
        "",
        "| net | link | all-reduce s at N=2 | N=32 | speed-up N=" + " | N=".join(map(str, RANKS))
        + " |", "|---|---|---|---|" + "---|" * len(RANKS),
    ]
    for r in rows:
        for gbit in LINKS_GBIT:
            ups = [n * r["seconds"] / (r["seconds"] + allreduce_seconds(r["bytes"], n, gbit))
                   for n in RANKS]
            lines.append(f"| {r['net']} | {gbit} Gbit/s | {allreduce_seconds(r['bytes'], 2, gbit):.3f} "
                         f"| {allreduce_seconds(r['bytes'], 32, gbit):.3f} | "
                         + " | ".join(f"{u:.1f}" for u in ups) + " |")
    lines += [
        "", "For GPU ranks, put their own iteration time t (``bench/bench_train.py --device cuda``, "
        "or ``caffe time --gpu 0``) into the same formula. The all-reduce costs at most 2 x bytes x "
        "8 / link speed per iteration whatever N is, so N ranks keep at least 90 % of linear "
        "speed-up while t >= 9 x that (the floor in the last columns):", "",
        "| net | " + " | ".join(f"t for 90 % at {g} Gbit/s" for g in LINKS_GBIT) + " |",
        "|---|" + "---|" * len(LINKS_GBIT),
    ]
    for r in rows:
        lines.append(f"| {r['net']} | " + " | ".join(
            f"{9 * 2 * r['bytes'] * 8 / (g * 1e9) * 1e3:.0f} ms" for g in LINKS_GBIT) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", choices=sorted(NETS), default=["holonet", "densenet", "resnet50"])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="batch 2, 1 rep, nothing written (smoke run)")
    p.add_argument("--output", default=str(RESULTS / "scaling.md"))
    args = p.parse_args(argv)
    torch.manual_seed(0)
    caffe.solvers.glog.set_enabled(False)
    rows = [measure(n, 1 if args.quick else args.reps, 2 if args.quick else None) for n in args.nets]
    text = report(rows, 1 if args.quick else args.reps)
    print(text)
    if not args.quick:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_name(f".{out.name}.tmp")
        tmp_out.write_text(text)
        os.replace(tmp_out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
