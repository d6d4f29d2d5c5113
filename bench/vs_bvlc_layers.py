"""Layer by layer against real BVLC Caffe (issue 19); writes bench/results/vs_bvlc_layers.md.

Both engines' own ``caffe time`` (Caffe's ``tools/caffe.cpp time``: each layer's forward, and
backward where the net has one, averaged over ``-iterations``) on the nets of bench/vs_bvlc.py:
SSE-ResNet-50's TEST net at batch 1 (forward; this engine's inference mode, ``optimize(net)``, is
timed step by step as a third column, a folded chain's time standing on its first layer) and the
TRAIN nets of SSE-HoloNet and SSE-DenseNet-121 at batch 32 (forward + backward). Each round runs
every engine's command once, in its own process, the order rotating between rounds, so that the
machine's drift touches all of them; the figures are the medians over the rounds. The tables show
the layers with the largest times in Caffe and the sums per layer type.

Run: ``python bench/vs_bvlc_layers.py --bvlc-tools /work/bvlc/caffe/build/tools`` (build recipe in
bench/README.md), then ``python bench/merge_results.py``; ``--from-json`` renders again."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_info import cpu_model

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKS = {"resnet:infer1": ("resnet", "test1", "TEST"),
         "holonet:train": ("holonet", "train", "TRAIN"),
         "densenet:train": ("densenet", "train", "TRAIN")}
TITLES = {"resnet:infer1": "SSE-ResNet-50, inference, batch 1 (forward)",
          "holonet:train": "SSE-HoloNet, training, batch 32 (forward + backward)",
          "densenet:train": "SSE-DenseNet-121, training, batch 32 (forward + backward)"}
LINE = re.compile(r"\]\s+(\S+)\s+(forward|backward): ([0-9.eE+-]+) ms\.")
TOTAL = re.compile(r"Average (Forward|Backward) pass: ([0-9.eE+-]+) ms\.")


def parse_time_log(text: str) -> dict:
    """Per-layer forward/backward ms and the pass totals of a ``caffe time`` log (either engine)."""
    layers: dict[str, dict[str, float]] = {}
    for name, what, value in LINE.findall(text):
        layers.setdefault(name, {})[what] = float(value)
    totals = {what.lower(): float(value) for what, value in TOTAL.findall(text)}
    return {"layers": layers, "totals": totals}


def thread_env(threads: int) -> dict[str, str]:
    """The environment of every engine's command: ``threads`` OpenMP/OpenBLAS/MKL threads, glog
    at its default level (the per-layer lines are INFO), this repository's caffe first."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.pop("GLOG_minloglevel", None)
    env["PYTHONPATH"] = str(REPO)  # this engine's caffe for its own commands
    return env


def run_caffe_time(cmd: list[str], env: dict[str, str]) -> dict:
    """Run one engine's ``caffe time`` and parse its log; an error names the command."""
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    got = parse_time_log(r.stderr + r.stdout)
    if not got["layers"]:
        raise RuntimeError(f"{' '.join(cmd)} printed no layer times")
    return got


def inference_steps(prototxt: str, weights: str, iterations: int) -> dict:
    """This engine's inference mode of a TEST net, each step timed (ms per pass, by step name:
    the first layer of a folded chain), in this process."""
    sys.path.insert(0, str(REPO))
    import numpy as np
    import torch
    import caffe
    from caffe.inference import optimize
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    net = caffe.Net(prototxt, weights, caffe.TEST)
    fast = optimize(net)
    x = np.random.default_rng(0).standard_normal(net.blobs["data"].data.shape).astype(np.float32)
    spent: dict[str, float] = {}
    for step in fast._steps:
        def timed(*xs, _fn=step.fn, _name=step.name):
            t = time.perf_counter()
            out = _fn(*xs)
            spent[_name] = spent.get(_name, 0.0) + time.perf_counter() - t
            return out
        step.fn = timed
    fast.forward(data=x)  # warm-up (weights packed, buffers allocated)
    spent.clear()
    start = time.perf_counter()
    for _ in range(iterations):
        fast.forward(data=x)
    total = (time.perf_counter() - start) * 1e3 / iterations
    return {"layers": {k: {"forward": v * 1e3 / iterations} for k, v in spent.items()},
            "totals": {"forward": total}}


def layer_types(prototxt: str) -> dict[str, str]:
    """Layer name -> type, as the prototxt declares them."""
    sys.path.insert(0, str(REPO))
    from caffe.model_io import read_net
    return {lp.name: lp.type for lp in read_net(prototxt).layer}


def layer_type(types: dict[str, str], name: str) -> str:
    """A logged layer's type; the Split layers Caffe inserts (``*_split``) are not in the file."""
    if name in types:
        return types[name]
    return "Split" if name.endswith("_split") else "?"


def measure(args) -> dict:
    """Every work's rounds, each engine's command once per round in rotating order."""
    sys.path.insert(0, str(HERE))
    from vs_bvlc import write_nets
    run = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": "python bench/vs_bvlc_layers.py " + " ".join(args.argv),
           "machine": {"cpu": cpu_model(), "cores": str(os.cpu_count())},
           "load_start": loadavg(), "threads": args.threads, "works": {}}
    env = thread_env(args.threads)
    bvlc = str(Path(args.bvlc_tools) / "caffe")
    with tempfile.TemporaryDirectory() as tmp:
        for work in args.works:
            key, net, phase = WORKS[work]
            files = write_nets(key, Path(tmp))
            model = files[net] if net != "train" else str(Path(files["solver"]).parent / "train.prototxt")
            its = str(args.iterations if phase == "TEST" else args.train_iterations)
            calls = {"bvlc": [bvlc, "time", "-model", model, "-phase", phase, "-iterations", its],
                     "sse": [sys.executable, "-m", "caffe.tools.caffe_cli", "time", "--model", model,
                             "--phase", phase, "--iterations", its]}
            if phase == "TEST":
                calls["fast"] = [sys.executable, str(Path(__file__).resolve()), "--worker-fast",
                                 model, files["weights"], its]
            rounds: dict[str, list[dict]] = {e: [] for e in calls}
            order = list(calls)
            for r in range(args.rounds):
                for e in order[r % len(order):] + order[:r % len(order)]:
                    if e == "fast":
                        out = subprocess.run(calls[e], capture_output=True, text=True, env=env,
                                             check=True, cwd=tempfile.gettempdir()).stdout
                        rounds[e].append(json.loads(out.strip().splitlines()[-1]))
                    else:
                        rounds[e].append(run_caffe_time(calls[e], env))
                    print(work, e, f"round {r + 1}", rounds[e][-1]["totals"], file=sys.stderr)
            run["works"][work] = {"types": layer_types(model),
                                  "engines": {e: median_log(v) for e, v in rounds.items()},
                                  "rounds": args.rounds, "iterations": int(its)}
    run["load_end"] = loadavg()
    return run


def median_log(logs: list[dict]) -> dict:
    """Per-layer and total medians over the rounds."""
    layers: dict[str, dict[str, float]] = {}
    for name in logs[0]["layers"]:
        for what in logs[0]["layers"][name]:
            values = [g["layers"][name][what] for g in logs if what in g["layers"].get(name, {})]
            layers.setdefault(name, {})[what] = statistics.median(values)
    totals = {k: statistics.median(g["totals"][k] for g in logs) for k in logs[0]["totals"]}
    return {"layers": layers, "totals": totals}


def loadavg() -> str:
    """The 1/5/15-minute load averages, for the report."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def cell(ms: float | None) -> str:
    """A table cell in ms, ``-`` when not measured."""
    return "-" if ms is None else f"{ms:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` as a table cell, ``-`` when either is missing or zero."""
    return "-" if not a or not b else f"{a / b:.2f}x"


def render(run: dict, top: int = 12) -> str:
    """The report: per work, the ``top`` layers by Caffe's time and the sums per layer type."""
    lines = ["## Layer by layer against real BVLC Caffe (bench/vs_bvlc_layers.py)", "",
             f"Measured {run['date']} with `{run['command']}` (load average {run['load_start']} -> "
             f"{run['load_end']}; {run['machine']['cpu']}, {run['machine']['cores']} cores, "
             f"{run['threads']} thread(s) per engine). Each engine's own `caffe time` on the nets "
             "of bench/vs_bvlc.py (its per-layer averages), every engine once per round in turn; "
             "medians over the rounds, in ms per pass. `inference mode`: `optimize(net)`'s steps, "
             "each timed within whole passes (a folded BatchNorm/Scale/ReLU costs nothing of its "
             "own: its time is in the convolution's row). Ratio: Caffe / this engine (above 1: this "
             "engine faster).", ""]
    for work, w in run["works"].items():
        eng = w["engines"]
        b, s, f = eng["bvlc"], eng["sse"], eng.get("fast")
        both = ("forward", "backward") if work.endswith("train") else ("forward",)

        def t(log: dict | None, name: str) -> float | None:
            if log is None or name not in log["layers"]:
                return None
            return sum(log["layers"][name].get(k, 0.0) for k in both)
        lines += [f"### {TITLES[work]}", "",
                  f"{w['rounds']} rounds of {w['iterations']} iteration(s). Totals (the tool's "
                  "`Average Forward pass` / `Backward pass`): " + "; ".join(
                      f"{name} " + " + ".join(f"{k} {log['totals'][k]:.1f}" for k in both
                                              if k in log["totals"])
                      for name, log in (("Caffe", b), ("this engine", s), ("inference mode", f))
                      if log is not None) + ".", ""]
        head = "| layer | type | Caffe | this engine | Caffe / this engine |"
        rule = "| --- | --- | ---: | ---: | ---: |"
        if work.endswith("train"):
            head = ("| layer | type | Caffe fwd | Caffe bwd | this engine fwd | this engine bwd | "
                    "Caffe / this engine (fwd + bwd) |")
            rule = "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
        if f is not None:
            head += " inference mode | Caffe / inference mode |"
            rule += " ---: | ---: |"
        lines += [head, rule]
        biggest = sorted(b["layers"], key=lambda n: -(t(b, n) or 0.0))[:top]
        for name in biggest:
            kind = layer_type(w["types"], name)
            if work.endswith("train"):
                row = (f"| {name} | {kind} | {cell(b['layers'][name].get('forward'))} | "
                       f"{cell(b['layers'][name].get('backward'))} | "
                       f"{cell(s['layers'].get(name, {}).get('forward'))} | "
                       f"{cell(s['layers'].get(name, {}).get('backward'))} | "
                       f"{ratio(t(b, name), t(s, name))} |")
            else:
                row = f"| {name} | {kind} | {cell(t(b, name))} | {cell(t(s, name))} | {ratio(t(b, name), t(s, name))} |"
            if f is not None:
                row += f" {cell(t(f, name))} | {ratio(t(b, name), t(f, name))} |"
            lines.append(row)
        head = "| type | layers | Caffe | this engine | Caffe / this engine |"
        rule = "| --- | ---: | ---: | ---: | ---: |"
        if f is not None:
            head += " inference mode | Caffe / inference mode |"
            rule += " ---: | ---: |"
        lines += ["", "Per layer type (sums over the net's layers):", "", head, rule]
        sums: dict[str, list[float]] = {}
        for name in b["layers"]:
            acc = sums.setdefault(layer_type(w["types"], name), [0, 0.0, 0.0, 0.0])
            acc[0] += 1
            acc[1] += t(b, name) or 0.0
            acc[2] += t(s, name) or 0.0
            acc[3] += t(f, name) or 0.0
        for kind, (n, cb, cs, cf) in sorted(sums.items(), key=lambda kv: -kv[1][1]):
            row = f"| {kind} | {n} | {cb:.1f} | {cs:.1f} | {ratio(cb, cs)} |"
            if f is not None:
                row += f" {cf:.1f} | {ratio(cb, cf)} |"
            lines.append(row)
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker-fast":
        print(json.dumps(inference_steps(argv[1], argv[2], int(argv[3]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bvlc-tools", default="/work/bvlc/caffe/build/tools",
                   help="the BVLC build's tools folder (its `caffe` binary)")
    p.add_argument("--works", nargs="+", choices=list(WORKS), default=list(WORKS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iterations", type=int, default=5, help="caffe time -iterations, TEST nets")
    p.add_argument("--train-iterations", type=int, default=1, help="the same, TRAIN nets")
    p.add_argument("--out", type=Path, default=HERE / "results" / "vs_bvlc_layers.md")
    p.add_argument("--from-json", type=Path, default=None)
    args = p.parse_args(argv)
    args.argv = argv
    sys.path.insert(0, str(REPO))
    from caffe.atomic import write_text
    if args.from_json:
        run = json.loads(args.from_json.read_text())
    else:
        run = measure(args)
        write_text(args.out.with_suffix(".json"), json.dumps(run, indent=1) + "\n")
    write_text(args.out, render(run))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
