"""What issue 19's speed goals ask of this machine's core (writes bench/results/vs_bvlc_bounds.md).

The goals are ratios to real BVLC Caffe measured on the same machine (bench/vs_bvlc.py): inference
batch 1 >= 3x, batch 32 >= 6x, training step >= 6x. A ratio turns into a time for this engine
(Caffe's measured time / the ratio), and a time into an arithmetic rate: every multiply-add of
the nets' convolutions and inner products has to be done at least once, so no engine can go faster
than ``2 * multiply-adds / peak``, where the peak is the best rate this machine reached in a large
single-precision matrix product (``torch.mm`` at the threads the goals were measured with,
``--threads``, one by default as bench/vs_bvlc.py is run on a shared machine). At
batch 1 every weight has to be read once per forward too, so the time is also at least
``weight bytes / read rate``, with the read rate this machine reached on a matrix-vector product over
a buffer of the same size (repeated, as a forward repeats; caches included). Both are lower bounds:
they leave out every other layer (BatchNorm, ReLU, pooling, concatenation) and assume perfect
efficiency. In bench/vs_bvlc.py's batch-1 runs the other engine runs between two forwards, so the
weights come from memory rather than the caches: a second table splits Caffe's time and the goal
time into that cold read (which both engines pay) and the rest, and gives the speed-up the goal
then asks of the rest.

Multiply-adds are counted from the nets themselves: a Convolution does (its weight count) x (output
positions) x (batch), an InnerProduct (its weight count) x (batch); a training step does the forward,
the weight gradient of each layer and the data gradient where Caffe's backward needs the bottom's
diff (not for the data input).

Times are CPU times at one thread (the process's CPU time is what a loaded machine inflates
least) and wall times at several (CPU time then adds up the threads, spinning ones included); the
peak and the read rate are measured the same way.

Run after ``bench/vs_bvlc.py`` (it reads Caffe's and this engine's times from
``bench/results/vs_bvlc.json``, or ``--vs-json``): ``python bench/vs_bvlc_bounds.py``, then
``python bench/merge_results.py``."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from machine_info import cpu_model  # noqa: E402

GOALS = {"infer1": 3.0, "infer32": 6.0, "train": 6.0}
OURS = {"infer1": "sse:fast1", "infer32": "sse:fast32", "train": "sse:train"}
WORK_TITLES = {"train": "training step, batch 32", "infer1": "inference, batch 1",
               "infer32": "inference, batch 32"}
TRAIN_BATCH = 32


def count_work(net) -> dict[str, float]:
    """Multiply-adds of ``net``'s Convolution and InnerProduct layers for one forward (``forward``)
    and one forward + backward (``train``: weight gradients, and data gradients where Caffe's
    backward needs the bottom's diff), and the bytes of those layers' weights and biases."""
    forward = train = weight_bytes = 0
    for i, (name, layer) in enumerate(zip(net._layer_names, net.layers)):
        if layer.type not in ("Convolution", "InnerProduct") or not len(layer.blobs):
            continue
        weights = int(layer.blobs[0].data.size)
        top = net.blobs[net.top_names[name][0]].data.shape
        if layer.type == "Convolution":
            macs = weights * int(top[0]) * int(top[2]) * int(top[3])
        else:
            bottom = net.blobs[net.bottom_names[name][0]].data.shape
            axis = getattr(layer, "axis", 1)
            outer = 1
            for d in bottom[:axis]:
                outer *= int(d)
            macs = weights * outer
        forward += macs
        train += macs
        if net._plan.layer_need[i]:
            train += macs
            if net._plan.bottom_need[i][0]:
                train += macs
        weight_bytes += sum(int(b.data.size) * 4 for b in layer.blobs)
    return {"forward": float(forward), "train": float(train), "weight_bytes": float(weight_bytes)}


CLOCK = time.process_time  # time.perf_counter at several threads (measure)


def _best_seconds(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
    return best


def gemm_peak(reps: int = 5) -> dict[str, float]:
    """The best single-precision ``torch.mm`` rate (FLOP/s) over square sizes 1024..4096."""
    import torch
    rates = {}
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        rates[n] = 2.0 * n ** 3 / _best_seconds(lambda: torch.mm(a, b), reps)
    return {"peak": max(rates.values()), "by_size": rates}


EVICT_BYTES = 1 << 30  # written before each cold read: twice the largest L3 these machines report


def read_rate(nbytes: float, reps: int = 7, cold: bool = False) -> float:
    """Bytes/s of ``torch.mv`` over a float32 matrix of ``nbytes`` (1024 rows), repeated; ``cold``:
    after writing EVICT_BYTES elsewhere before each call (untimed), so that the matrix comes from
    memory, as a forward's weights do in bench/vs_bvlc.py, where the other engine runs between
    two forwards."""
    import torch
    cols = max(1, int(nbytes) // 4 // 1024)
    w, x = torch.randn(1024, cols), torch.randn(cols)
    if not cold:
        return 1024 * cols * 4 / _best_seconds(lambda: torch.mv(w, x), reps)
    other = torch.empty(EVICT_BYTES // 4)
    best = float("inf")
    for _ in range(reps):
        other.fill_(1.0)
        t0 = CLOCK()
        torch.mv(w, x)
        best = min(best, CLOCK() - t0)
    return 1024 * cols * 4 / best


def batch1_split(caffe_s: float, goal: float, ours_s: float | None, weight_bytes: float,
                 cold_rate: float) -> dict[str, float]:
    """Batch 1 with every weight read from memory once (at ``cold_rate``) in both engines: the
    time left for everything else in real Caffe and at the goal, and the speed-up over Caffe
    that this rest then needs (and this engine's, where measured)."""
    read_s = weight_bytes / cold_rate
    goal_s = caffe_s / goal
    split = {"read_s": read_s, "caffe_rest_s": caffe_s - read_s, "goal_rest_s": goal_s - read_s}
    split["rest_needs"] = (split["caffe_rest_s"] / split["goal_rest_s"] if split["goal_rest_s"] > 0
                           else float("inf"))
    if ours_s is not None:
        split["ours_rest_s"] = ours_s - read_s
        split["ours_rest_speedup"] = (split["caffe_rest_s"] / split["ours_rest_s"]
                                      if split["ours_rest_s"] > 0 else float("inf"))
    return split


def build_nets(key: str) -> dict[str, object]:
    """The TEST net at batch 1 (Input data) and the TRAIN net (batch 32, Input data and label)
    of an SSE model, with in-place convolutions given their own tops so that each layer's
    bottom keeps its input's shape (the computation is unchanged)."""
    import caffe
    from inference_helpers import (MODELS, rename_inplace_tops, sse_test_net_param,
                                   sse_train_net_param)
    model = MODELS[key]
    params = {"test1": (sse_test_net_param(model, 1), caffe.TEST),
              "train": (sse_train_net_param(model, TRAIN_BATCH), caffe.TRAIN)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: caffe.Net(net_param=rename_inplace_tops(param), phase=phase)
                for name, (param, phase) in params.items()}


def bounds_for(work: dict[str, float], train_work: dict[str, float], peak: float,
               read: float) -> dict[str, dict[str, float]]:
    """Lower bounds (seconds) per benchmark work, with the arithmetic each needs."""
    flops1 = 2.0 * work["forward"]
    out = {"infer1": {"flops": flops1, "compute_s": flops1 / peak,
                      "read_s": work["weight_bytes"] / read},
           "infer32": {"flops": 32 * flops1, "compute_s": 32 * flops1 / peak, "read_s": 0.0},
           "train": {"flops": 2.0 * train_work["train"], "compute_s": 2.0 * train_work["train"] / peak,
                     "read_s": 0.0}}
    for b in out.values():
        b["bound_s"] = max(b["compute_s"], b["read_s"])
    return out


def measure(args) -> dict:
    import torch
    global CLOCK
    torch.set_num_threads(args.threads)
    CLOCK = time.process_time if args.threads == 1 else time.perf_counter
    median = "cpu_median" if args.threads == 1 else "median"
    vs = json.loads(Path(args.vs_json).read_text())
    peak = gemm_peak()
    run = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": "python bench/vs_bvlc_bounds.py " + " ".join(sys.argv[1:]),
           "cpu": cpu_model(), "cores": os.cpu_count(), "threads": args.threads,
           "clock": "CPU time" if args.threads == 1 else "wall time",
           "torch": torch.__version__, "peak": peak["peak"],
           "peak_by_size": {str(k): v for k, v in peak["by_size"].items()},
           "vs_bvlc": {"date": vs.get("date"), "command": vs.get("command")}, "nets": {}}
    for key in args.models:
        entry = vs["models"].get(key)
        if not entry:
            continue
        nets = build_nets(key)
        work, train_work = count_work(nets["test1"]), count_work(nets["train"])
        read = read_rate(work["weight_bytes"])
        net = {"title": entry["title"], "forward_macs": work["forward"],
               "train_macs": train_work["train"], "weight_bytes": work["weight_bytes"],
               "read_rate": read, "cold_read_rate": read_rate(work["weight_bytes"], cold=True),
               "works": {}}
        for name, b in bounds_for(work, train_work, peak["peak"], read).items():
            times = entry["times"].get(name, {})
            caffe_t = times.get(f"bvlc:{name}", {}).get(median)
            ours_t = times.get(OURS[name], {}).get(median)
            if caffe_t is None:
                continue
            net["works"][name] = dict(b, caffe_s=caffe_t, ours_s=ours_t, goal=GOALS[name])
        run["nets"][key] = net
    return run


def render(run: dict) -> str:
    peak = run["peak"]
    threads = run["threads"]
    per = f"{threads} thread{'s' if threads > 1 else ''}"
    lines = [f"## What the speed goals ask of this machine, {per} per engine "
             "(bench/vs_bvlc_bounds.py)", "",
             f"Measured {run['date']} with `{run['command']}` on {run['cpu']} ({run['cores']} cores), "
             f"torch {run['torch']}, {per}, the engines' times taken from "
             f"bench/vs_bvlc.py's run of {run['vs_bvlc']['date']} ({run.get('clock', 'CPU time')}, medians; the peak "
             "and read rate measured the same way).", "",
             f"Peak at {per}: " + ", ".join(f"`torch.mm` {n}x{n} {r / 1e9:.1f} GFLOP/s"
                                                for n, r in run["peak_by_size"].items())
             + f" (best of each); the peak used below is {peak / 1e9:.1f} GFLOP/s.", "",
             "Goal time = real Caffe's time / the goal ratio. Lower bound = the time the "
             "nets' multiply-adds take at that peak (and, at batch 1, the time to read their "
             "weights at the measured rate), whichever is longer; every other layer is left out. "
             "A goal time below its lower bound cannot be reached by any engine here at "
             f"{per}.", "",
             "| net | work | multiply-adds (G) | real Caffe (ms) | goal | goal time (ms) | "
             "needs (GFLOP/s) | needs / peak | lower bound (ms) | goal time / bound | "
             "this engine (ms) | this engine (GFLOP/s) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, net in run["nets"].items():
        for name, w in net["works"].items():
            goal_s = w["caffe_s"] / w["goal"]
            needs = w["flops"] / goal_s
            bound = f"{1000 * w['bound_s']:.1f}"
            if w["read_s"] > w["compute_s"]:
                bound += " (weights read)"
            ours = (f"{1000 * w['ours_s']:.1f}", f"{w['flops'] / w['ours_s'] / 1e9:.1f}") \
                if w.get("ours_s") else ("-", "-")
            lines.append(
                f"| {net['title']} | {WORK_TITLES[name]} | {w['flops'] / 2e9:.2f} | "
                f"{1000 * w['caffe_s']:.1f} | {w['goal']:.0f}x | {1000 * goal_s:.1f} | "
                f"{needs / 1e9:.1f} | {100 * needs / peak:.0f} % | {bound} | "
                f"{goal_s / w['bound_s']:.2f} | {ours[0]} | {ours[1]} |")
    lines += ["", "Weights per net (Convolution and InnerProduct, float32) and the rate this machine "
              "read a buffer of that size with `torch.mv`:", ""]
    for net in run["nets"].values():
        lines.append(f"- {net['title']}: {net['weight_bytes'] / 1e6:.1f} MB, "
                     f"{net['read_rate'] / 1e9:.1f} GB/s")
    cold = [net for net in run["nets"].values()
            if "cold_read_rate" in net and "infer1" in net["works"]]
    if cold:
        lines += ["", "Batch 1 as bench/vs_bvlc.py measures it, the other engine running between "
                  "two forwards: the weights then come from memory. Cold read = the weights at "
                  "the rate `torch.mv` read them after 1 GiB was written elsewhere; the rest = "
                  "the time less that read, which both engines spend at least. The rest of real "
                  "Caffe's time over the rest of the goal time is the speed-up the goal asks of "
                  "everything but the read:", "",
                  "| net | weights (MB) | cold read rate (GB/s) | cold read (ms) | real Caffe (ms) "
                  "| goal time (ms) | rest in real Caffe (ms) | rest at the goal (ms) "
                  "| rest speed-up needed | this engine (ms) | its rest speed-up |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for net in cold:
            w = net["works"]["infer1"]
            split = batch1_split(w["caffe_s"], w["goal"], w.get("ours_s"), net["weight_bytes"],
                                 net["cold_read_rate"])
            ours = ((f"{1000 * w['ours_s']:.1f}", f"{split['ours_rest_speedup']:.2f}x")
                    if "ours_rest_s" in split else ("-", "-"))
            lines.append(
                f"| {net['title']} | {net['weight_bytes'] / 1e6:.1f} | "
                f"{net['cold_read_rate'] / 1e9:.1f} | {1000 * split['read_s']:.1f} | "
                f"{1000 * w['caffe_s']:.1f} | {1000 * w['caffe_s'] / w['goal']:.1f} | "
                f"{1000 * split['caffe_rest_s']:.1f} | {1000 * split['goal_rest_s']:.1f} | "
                f"{split['rest_needs']:.2f}x | {ours[0]} | {ours[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vs-json", default=str(HERE / "results" / "vs_bvlc.json"))
    parser.add_argument("--models", nargs="+", default=["holonet", "densenet", "resnet"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(HERE / "results" / "vs_bvlc_bounds"))
    parser.add_argument("--from-json", help="render the report again from a run's JSON")
    args = parser.parse_args(argv)
    from caffe.atomic import write_text
    run = json.loads(Path(args.from_json).read_text()) if args.from_json else measure(args)
    if not args.from_json:
        write_text(args.out + ".json", json.dumps(run, indent=1) + "\n")
    text = render(run)
    write_text(args.out + ".md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
