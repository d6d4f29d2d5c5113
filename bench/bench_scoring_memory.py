"""Benchmark of scoring memory: the resident memory of a process that feeds a model chunk after chunk
of faces, as sse-predict streams a long video (issue 21).

Each checkout (``--repo``, one or more; a ``git archive`` of an earlier commit, say) runs in its own
child process: it loads the model (``--model``, default the shipped ensemble) as sse-predict does
(``sse.predict.models.load_scorers``, batch 128), then scores ``--chunks`` chunks of random uint8
crops of each of the model's crop sizes, the number of faces of chunk k drawn from ``--faces LO HI``
(seeded, the same sequence for every checkout), and reads its RSS (``VmRSS``) after each chunk. A long
video's chunks hold up to 512 faces, whole frames, so their sizes vary with the faces per frame; the
engine and oneDNN keep state per input shape, which such a stream can grow. The table shows RSS after
loading, after the first chunk and every ``--every`` chunks, the last and the peak (``ru_maxrss``).

    python bench/bench_scoring_memory.py --repo /tmp/sse_before --label before --repo . --label after \\
        [--chunks 40] [--faces 300 513] [--model ENSEMBLE.json]

Results: bench/results/scoring_memory.md (the runs of the last invocation).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from caffe.atomic import write_text  # noqa: E402

DEFAULT_MODEL = REPO / "models" / "fer2013_ensemble.json"
RESULTS_MD = REPO / "bench" / "results" / "scoring_memory.md"

CHILD = r"""
import json, resource, sys
import numpy as np
from sse.predict.models import load_scorers
from sse.shipped import FaceCrops

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS"))

model, chunks, lo, hi, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
scorers = load_scorers([[model]], 128)
specs = list(dict.fromkeys(spec for s in scorers for spec in s.crop_specs()))
rng = np.random.default_rng(seed)
sizes = rng.integers(lo, hi + 1, chunks)
after = []
loaded = rss_mb()
for n in sizes.tolist():
    crops = FaceCrops({s: rng.integers(0, 256, (n, *((s.size, s.size) if s else (128, 128, 3))), dtype=np.uint8)
                       for s in specs})
    for s in scorers:
        s.score(crops, "none")
    del crops
    after.append(round(rss_mb(), 1))
print(json.dumps({"loaded": round(loaded, 1), "after": after, "sizes": sizes.tolist(),
                  "peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def run_child(repo: Path, model: Path, chunks: int, lo: int, hi: int, seed: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(repo))
    out = subprocess.run([sys.executable, "-c", CHILD, str(model), str(chunks), str(lo), str(hi), str(seed)],
                         cwd=repo, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{repo}: the scoring child failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def render(runs: list[dict], args: argparse.Namespace, command: str) -> str:
    from bench_faces import cpu_model
    every = max(1, args.every)
    marks = sorted({0, *range(every - 1, args.chunks, every), args.chunks - 1})
    lines = ["## Scoring memory: chunks of varying size through the shipped ensemble (bench/bench_scoring_memory.py)", "",
             f"Each checkout in its own process loads `{args.model.name}` as sse-predict does (batch 128) and scores "
             f"{args.chunks} chunks of random crops, chunk sizes drawn from {args.faces[0]}-{args.faces[1]} faces (seed "
             f"{args.seed}, the same sequence for each); RSS (VmRSS, MB) after loading and after the chunks named; "
             "peak: the process's ru_maxrss.", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; measured "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
             f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}. Command: `{command}`.", "",
             "| code | loaded | " + " | ".join(f"after chunk {k + 1}" for k in marks) + " | peak | growth from chunk 1 to the last |",
             "|---|---:|" + "---:|" * len(marks) + "---:|---:|"]
    for run in runs:
        after = run["after"]
        lines.append(f"| {run['label']} | {run['loaded']:.0f} | " + " | ".join(f"{after[k]:.0f}" for k in marks)
                     + f" | {run['peak']:.0f} | {after[-1] - after[0]:+.0f} MB |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, action="append", help="a checkout to measure (repeat for several)")
    p.add_argument("--label", action="append", help="its name in the table (one per --repo)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="an ensemble .json or model folder")
    p.add_argument("--chunks", type=int, default=40)
    p.add_argument("--faces", type=int, nargs=2, default=[300, 513], metavar=("LO", "HI"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=10, help="a column every this many chunks")
    args = p.parse_args()
    repos = args.repo or [REPO]
    labels = args.label or [str(r) for r in repos]
    if len(labels) != len(repos):
        p.error(f"{len(repos)} --repo but {len(labels)} --label")
    if args.chunks < 1 or not 1 <= args.faces[0] <= args.faces[1]:
        p.error("--chunks must be >= 1 and --faces LO HI with 1 <= LO <= HI")
    runs = []
    for repo, label in zip(repos, labels):
        run = run_child(repo.resolve(), args.model.resolve(), args.chunks, *args.faces, args.seed)
        runs.append({"label": label, **run})
        print(label, json.dumps({k: run[k] for k in ("loaded", "peak")}), run["after"][::args.every], flush=True)
    command = "python bench/bench_scoring_memory.py " + " ".join(
        f"--repo {r} --label '{l}'" for r, l in zip(repos, labels)) + f" --chunks {args.chunks} --faces {args.faces[0]} {args.faces[1]}"
    if args.model.resolve() != DEFAULT_MODEL.resolve():
        command += f" --model {args.model}"
    write_text(RESULTS_MD, render(runs, args, command))
    print(f"-> {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
