"""Peak memory of the training step with and without the DenseNet Concat buffers (issue 19);
writes bench/results/train_memory.md.

Each net's TRAIN net (batch 32, data layer replaced by Input, as bench_engine_ablation.py builds
it) takes two forward+backward steps in a child process of its own, as shipped and with
``CAFFE_CONCAT_CHAIN=0`` (every Concat a ``torch.cat``, each top a tensor of its own that the
BatchNorm after it keeps for its backward: memory quadratic in a dense block's length), each with
the engine's memory policy (freed memory kept mapped, caffe.memory) and with glibc's defaults
(``CAFFE_KEEP_FREED_MEMORY=0``). Reported: the process's peak resident memory (``ru_maxrss``) once
the net is built, and after the steps.

Run: ``python bench/bench_train_memory.py``, then ``python bench/merge_results.py``."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from machine_info import cpu_model  # noqa: E402

NETS = ("densenet", "holonet")
BATCH = 32


def child(key: str) -> dict:
    """Peak RSS (bytes) after building ``key``'s TRAIN net and after two steps, in this process."""
    import resource

    import numpy as np

    from inference_helpers import MODELS, randomize_weights, sse_train_net

    def peak() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    model = MODELS[key]
    net = sse_train_net(model, BATCH)
    randomize_weights(net, 1)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.normal(0, 50, (BATCH,) + model.input_chw).astype(np.float32)
    net.blobs["label"].data[...] = rng.integers(0, 7, BATCH)
    built = peak()
    for _ in range(2):
        for p in net.learnable_params:
            p.grad = None
        net.forward_backward()
    return {"title": model.title, "built": built, "steps": peak(),
            "chains": len(net._concat_chain)}


def run_child(key: str, chain: bool, keep: bool) -> dict:
    env = dict(os.environ, CAFFE_CONCAT_CHAIN="1" if chain else "0",
               CAFFE_KEEP_FREED_MEMORY="1" if keep else "0")
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", key],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {key} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def render(results: dict) -> str:
    lines = ["## Peak memory of the training step (bench/bench_train_memory.py)", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `python "
             f"bench/bench_train_memory.py` on {cpu_model()}, {os.cpu_count()} cores: the TRAIN "
             f"net at batch {BATCH} (Input data), two forward+backward steps in a child process "
             "per row; peak resident memory of the process (`ru_maxrss`) once the net is built "
             "and after the steps. `CAFFE_CONCAT_CHAIN=0`: every Concat a `torch.cat`, instead of "
             "one buffer per DenseNet block. HoloNet has no such Concats: its two rows per memory "
             "policy run the same code, and their difference is this measure's noise.", "",
             "| net | memory policy | Concats | Concats in buffers | peak, net built (MB) "
             "| peak, after two steps (MB) | added by the steps (MB) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for key, by_setting in results.items():
        for (keep, chain), r in by_setting.items():
            lines.append(f"| {r['title']} | {'kept (default)' if keep else 'glibc defaults'} | "
                         f"{'buffers (default)' if chain else 'torch.cat'} | "
                         f"{r['chains']} | {r['built'] / 2**20:.0f} | {r['steps'] / 2**20:.0f} | "
                         f"{(r['steps'] - r['built']) / 2**20:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "train_memory.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    results = {key: {(keep, chain): run_child(key, chain, keep)
                     for keep in (True, False) for chain in (True, False)}
               for key in args.nets.split(",")}
    from caffe.atomic import write_text
    text = render(results)
    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
