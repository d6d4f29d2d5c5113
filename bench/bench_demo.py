"""The main job timed: runs ``sse-demo`` (the README's first command) in a fresh folder and writes
bench/results/demo.md.

It measures the whole job's wall time and CPU time (user, system: the demo and every process it
starts), the time of each step (from the moment sse-demo announces it on stderr to the moment it
reports it done), ``caffe train``'s own time from the time stamps of train.log, and it reads the
held-out results from what sse-demo printed and wrote: the validation accuracies of the train
net's TEST phase (train.log), per-frame and per-video accuracy and macro-F1 (its last lines).

    python bench/bench_demo.py                   # sse-demo with its defaults
    python bench/bench_demo.py -- --iterations 100   # options after -- go to sse-demo
    python bench/bench_demo.py --from-json bench/results/demo.json   # the report again, no run

The measurements are also written as JSON (``--json``, default next to ``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from caffe.atomic import write_text  # noqa: E402
from machine_info import cpu_model  # noqa: E402

GLOG_TIME = re.compile(r"^[IWEF](\d{4}) (\d\d):(\d\d):(\d\d\.\d+)")
RESULT_LINE = re.compile(r"frame accuracy ([\d.]+)% \((\d+) frames\); video accuracy ([\d.]+)% "
                         r"\((\d+) videos, chance ([\d.]+)%\); macro-F1 ([\d.]+)")


def sse_demo_command() -> list[str]:
    """The installed ``sse-demo`` when it is on PATH, else the same entry point through Python."""
    exe = shutil.which("sse-demo")
    return [exe] if exe else [sys.executable, "-m", "sse.demo"]


def machine() -> dict[str, str]:
    cpu = cpu_model()
    import torch
    return {"cpu": cpu, "cores": str(os.cpu_count()), "torch": torch.__version__,
            "python": platform.python_version(),
            "load average (start -> end)": f"{os.getloadavg()[0]:.2f}"}


def glog_seconds(line: str) -> float | None:
    """Seconds since the start of the month of a glog line's time stamp (differences only)."""
    m = GLOG_TIME.match(line)
    if not m:
        return None
    day = int(m.group(1)[2:])
    return ((day * 24 + int(m.group(2))) * 60 + int(m.group(3))) * 60 + float(m.group(4))


def read_train_log(path: Path) -> dict:
    """caffe train's time from its log (first to last iteration line) and the TEST-phase accuracies."""
    first = last = None
    first_iter = last_iter = None
    tests: list[dict] = []
    testing_at = None
    for line in path.read_text().splitlines():
        m = re.search(r"\] Iteration (\d+)[ ,]", line)
        if m and "Testing net" not in line:
            t = glog_seconds(line)
            if t is not None:
                if first is None:
                    first, first_iter = t, int(m.group(1))
                last, last_iter = t, int(m.group(1))
        m = re.search(r"\] Iteration (\d+), Testing net", line)
        if m:
            testing_at = int(m.group(1))
        m = re.search(r"Test net output #\d+: (\S*accuracy\S*) = ([\d.eE+-]+)", line)
        if m and testing_at is not None:
            tests.append({"iteration": testing_at, "output": m.group(1), "value": float(m.group(2))})
    if first is not None and last < first:  # across a month's end
        first = last = None
    return {"seconds": None if first is None else last - first, "first_iteration": first_iter,
            "last_iteration": last_iter, "tests": tests}


def run_demo(out: Path, extra: list[str]) -> dict:
    command = sse_demo_command() + ["--out", str(out)] + extra
    print("running:", " ".join(command), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    steps: list[dict] = []
    stdout_lines: list[str] = []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def read_stdout() -> None:
        for line in proc.stdout:
            stdout_lines.append(line.rstrip("\n"))
            sys.stdout.write(line)

    reader = threading.Thread(target=read_stdout)
    reader.start()
    for line in proc.stderr:
        sys.stderr.write(line)
        now = time.perf_counter() - start
        if line.startswith("== "):
            steps.append({"step": line[3:].strip().replace(str(out), "DIR"), "start": now,
                          "end": None})
        elif re.match(r"^\s+\(\d+ s\)$", line) and steps and steps[-1]["end"] is None:
            steps[-1]["end"] = now
    code = proc.wait()
    reader.join()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code:
        raise SystemExit(f"bench_demo: {' '.join(command)} failed with exit code {code}")
    result = next((RESULT_LINE.search(l) for l in stdout_lines if RESULT_LINE.search(l)), None)
    if result is None:
        raise SystemExit("bench_demo: sse-demo printed no result line")
    return {"command": " ".join(["sse-demo", "--out", "DIR"] + extra),
            "wall": wall, "user": after.ru_utime - before.ru_utime,
            "system": after.ru_stime - before.ru_stime, "steps": steps,
            "train": read_train_log(out / "train.log"),
            "frame_accuracy": float(result.group(1)) / 100, "frames": int(result.group(2)),
            "video_accuracy": float(result.group(3)) / 100, "videos": int(result.group(4)),
            "chance": float(result.group(5)) / 100, "macro_f1": float(result.group(6))}


def render(run: dict) -> str:
    info = run["info"]
    lines = ["## The main job: `sse-demo` (the README's first command; bench/bench_demo.py)", "",
             f"Measured {run['date']} with `python bench/bench_demo.py" +
             (" -- " + " ".join(run["extra"]) if run["extra"] else "") +
             f"`: `{run['command']}` in a fresh folder, timed from start to exit.", "",
             "| machine | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    cores = int(info["cores"])
    start_load = float(info["load average (start -> end)"].split()[0])
    if start_load > 0.5 * cores:
        lines += ["", f"The machine was shared with other jobs (load average {start_load:.1f} on "
                  f"{cores} cores): every time is longer than on an idle machine. The held-out "
                  "results do not depend on the load (the data and the training are seeded)."]
    lines += ["", "| step (as sse-demo announces it) | wall time |", "| --- | ---: |"]
    for s in run["steps"]:
        took = "unfinished" if s["end"] is None else f"{s['end'] - s['start']:.1f} s"
        lines.append(f"| {s['step']} | {took} |")
    announced = sum(s["end"] - s["start"] for s in run["steps"] if s["end"] is not None)
    lines.append(f"| the rest (Python start-up, compute_image_mean, the nets and solver, plots, "
                 f"fusion and report) | {run['wall'] - announced:.1f} s |")
    lines.append(f"| **whole job** | **{run['wall']:.1f} s** (CPU: user {run['user']:.1f} s, "
                 f"system {run['system']:.1f} s) |")
    train = run["train"]
    if train["seconds"] is not None and train["last_iteration"] > train["first_iteration"]:
        lines += ["", f"`caffe train` from iteration {train['first_iteration']} to "
                  f"{train['last_iteration']} (validations included): {train['seconds']:.1f} s "
                  "by the time stamps of train.log; the rest of its step is start-up and building "
                  "the nets."]
    tests = "; ".join(f"{t['output']} {t['value']:.1%} at iteration {t['iteration']}"
                      for t in train["tests"])
    lines += ["", "Held-out results: " + (f"validation accuracy of the train net's TEST phase: "
                                          f"{tests}; " if tests else "") +
              f"per-frame accuracy of the extracted `prob` {run['frame_accuracy']:.1%} "
              f"({run['frames']} frames); **video accuracy {run['video_accuracy']:.1%}** "
              f"({run['videos']} clips, mean of the frame probabilities; chance "
              f"{run['chance']:.1%}), macro-F1 {run['macro_f1']:.3f}.",
              "", f"With {run['videos']} held-out clips, one clip is {1 / run['videos']:.1%} of "
              "the video accuracy."]
    return "\n".join(lines) + "\n"


def write_report(run: dict, out: Path) -> None:
    text = render(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, text)
    print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "demo.md")
    parser.add_argument("--json", type=Path, default=None,
                        help="where the measurements go (default: --out with .json)")
    parser.add_argument("--from-json", type=Path, default=None, metavar="JSON",
                        help="run nothing: write --out from the measurements of an earlier run")
    parser.add_argument("--work", type=Path, default=None,
                        help="sse-demo's --out (must not exist; default: a temporary folder)")
    parser.add_argument("extra", nargs="*", help="options for sse-demo (after --)")
    args = parser.parse_args(argv)
    if args.from_json:
        write_report(json.loads(args.from_json.read_text()), args.out)
        return 0
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp) / "demo_out"
        if work.exists():
            raise SystemExit(f"bench_demo: {work} exists; sse-demo would not redo its steps")
        run = run_demo(work, args.extra)
    info["load average (start -> end)"] += f" -> {os.getloadavg()[0]:.2f}"
    run.update(date=datetime.now().strftime("%Y-%m-%d"), extra=args.extra, info=info)
    json_path = args.json or args.out.with_suffix(".json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(json_path, json.dumps(run, indent=1) + "\n")
    write_report(run, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
