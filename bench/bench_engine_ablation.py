"""What each CPU speed-up of the engine is worth, side by side in one run; writes
bench/results/engine_ablation.md.

The SSE-HoloNet and SSE-DenseNet-121 train nets (batch 32, data layer replaced by Input, as in
bench_engine.py (a)) take forward+backward steps, interleaved, in seven forms:
  * engine: as shipped;
  * NCHW convolutions: conv2d without its channels-last input (the full-map GEMM path kept);
  * NCHW max pooling: PyTorch's NCHW MAX pooling kernel instead of caffe.functional.max_pool2d
    (with the ReLU + MAX pooling fusion of the step turned off, so that every MAX pooling takes it);
  * both in NCHW;
  * plain ReLU: the in-place ReLUs computed as new tensors (the net's ``_relu_over`` and
    ``_relu_pool`` emptied, as ``CAFFE_INPLACE_RELU=0`` builds it; no ReLU then runs inside a
    BatchNorm node either);
  * PyTorch BatchNorm: ``F.batch_norm`` for every BatchNorm and per-channel Scale (and the
    in-place ReLU after a BatchNorm + Scale as a node of its own), instead of
    caffe.functional.batch_norm (caffe/csrc's kernels for large channels-last tensors, the ReLU
    inside them; channel sums where PyTorch's kernel would have its threads share cache lines;
    a DenseNet block's Concat prefix copied out dense for it);
  * plain Concats: every Concat a ``torch.cat`` (the net's ``_concat_chain`` emptied, as
    ``CAFFE_CONCAT_CHAIN=0`` builds it), instead of one buffer per DenseNet block (with the
    block's batch statistics shared between its BatchNorms and its gradients in one buffer).
Each net runs in two child processes, one with the memory policy (caffe.memory, the default) and
one with ``CAFFE_KEEP_FREED_MEMORY=0``, since glibc's settings cannot be undone inside a process.

Run: ``python bench/bench_engine_ablation.py`` (``--reps``, ``--nets``, ``--threads``)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

FORMS = ("engine", "NCHW convolutions", "NCHW max pooling", "both in NCHW", "plain ReLU",
         "PyTorch BatchNorm", "plain Concats")


def child(key: str, reps: int, warmup: int, threads: int | None) -> dict:
    """Median ms per step of each form, in this process (its memory setting is the parent's)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    import caffe.functional
    import caffe.layers.conv
    import caffe.layers.normalization
    from bench_engine import interleaved
    from caffe.memory import keep_freed_memory
    from inference_helpers import MODELS, randomize_weights, sse_train_net

    if threads:
        torch.set_num_threads(threads)

    shipped_conv, shipped_pool = caffe.layers.conv.conv2d, caffe.functional.max_pool2d
    shipped_bn = caffe.layers.normalization.batch_norm

    def nchw_conv(x, weight, bias, stride, pad, dilation, group):
        full_map = (group == 1 and pad == (0, 0) and dilation == (1, 1)
                    and tuple(x.shape[2:]) == tuple(weight.shape[2:]))
        if full_map:  # the matrix-product path, the same in both forms
            return shipped_conv(x, weight, bias, stride, pad, dilation, group)
        return F.conv2d(x.contiguous(), weight, bias, stride, pad, dilation, group)

    def pytorch_batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps,
                           relu=False, relu_grad_in_place=False):
        x = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
        y = F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
        return caffe.functional.relu_(y, relu_grad_in_place) if relu else y

    def nchw_pool(x, kernel, stride, pad):
        return F.max_pool2d(x, kernel, stride, pad, ceil_mode=True)

    model = MODELS[key]
    net = sse_train_net(model, 32)
    randomize_weights(net, 1)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.normal(0, 50, (32,) + model.input_chw).astype(np.float32)
    net.blobs["label"].data[...] = rng.integers(0, 7, 32)

    relus_over, relu_pools = dict(net._relu_over), dict(net._relu_pool)
    chains = dict(net._concat_chain)

    def form(conv, pool, relu_over: bool = True, bn=shipped_bn, chain: bool = True):
        def step() -> None:
            caffe.layers.conv.conv2d, caffe.functional.max_pool2d = conv, pool
            caffe.layers.normalization.batch_norm = bn
            net._relu_over = relus_over if relu_over else {}
            net._relu_pool = relu_pools if relu_over and pool is shipped_pool else {}
            net._concat_chain = chains if chain else {}
            for p in net.learnable_params:
                p.grad = None
            net.forward_backward()
        return step

    steps = {"engine": form(shipped_conv, shipped_pool),
             "NCHW convolutions": form(nchw_conv, shipped_pool),
             "NCHW max pooling": form(shipped_conv, nchw_pool),
             "both in NCHW": form(nchw_conv, nchw_pool),
             "plain ReLU": form(shipped_conv, shipped_pool, relu_over=False),
             "PyTorch BatchNorm": form(shipped_conv, shipped_pool, bn=pytorch_batch_norm),
             "plain Concats": form(shipped_conv, shipped_pool, chain=False)}
    seconds = interleaved(steps, reps, warmup)
    caffe.layers.conv.conv2d, caffe.functional.max_pool2d = shipped_conv, shipped_pool
    caffe.layers.normalization.batch_norm = shipped_bn
    net._relu_over, net._relu_pool, net._concat_chain = relus_over, relu_pools, chains
    return {"memory policy": keep_freed_memory(), "ms": {k: v * 1e3 for k, v in seconds.items()},
            "title": model.title, "threads": torch.get_num_threads()}


def run_child(key: str, keep: bool, reps: int, warmup: int, threads: int | None) -> dict:
    env = dict(os.environ, CAFFE_KEEP_FREED_MEMORY="1" if keep else "0")
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", key,
                           "--reps", str(reps), "--warmup", str(warmup),
                           *(["--threads", str(threads)] if threads else [])],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {key} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def render(results: dict, args) -> str:
    from bench_engine import machine
    info = machine()
    lines = ["## What each engine speed-up is worth (bench/bench_engine_ablation.py)", "",
             f"Measured {time.strftime('%Y-%m-%d')} with `python bench/bench_engine_ablation.py "
             f"--reps {args.reps}{f' --threads {args.threads}' if args.threads else ''}`: forward+backward of the train nets at batch 32 (data layer "
             "replaced by Input, no per-blob diffs kept, as the solver runs them); the seven forms "
             "alternate within one child process per net and memory setting; medians in ms. "
             f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
             f"({info['torch threads']} threads); load average {os.getloadavg()[0]:.2f} at the end.",
             "", "| net | memory policy | " + " | ".join(FORMS) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in FORMS) + " |"]
    for key, by_keep in results.items():
        for keep, r in by_keep.items():
            lines.append(f"| {r['title']} | {'kept (default)' if keep else 'glibc defaults'} | " +
                         " | ".join(f"{r['ms'][f]:.0f}" for f in FORMS) + " |")
    lines += ["", "Share of each speed-up, the others in place (time without it / time with it):"]
    for key, by_keep in results.items():
        kept, default = by_keep[True]["ms"], by_keep[False]["ms"]
        lines.append(f"* {by_keep[True]['title']}: memory policy {default['engine'] / kept['engine']:.2f}x, "
                     f"channels-last convolutions {kept['NCHW convolutions'] / kept['engine']:.2f}x, "
                     f"channels-last max pooling {kept['NCHW max pooling'] / kept['engine']:.2f}x, "
                     f"in-place ReLU {kept['plain ReLU'] / kept['engine']:.2f}x, "
                     f"BatchNorm kernels {kept['PyTorch BatchNorm'] / kept['engine']:.2f}x, "
                     f"Concat buffers {kept['plain Concats'] / kept['engine']:.2f}x; "
                     f"all three {default['both in NCHW'] / kept['engine']:.2f}x.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--nets", default="holonet,densenet")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in each child (default: torch's own)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "engine_ablation.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.reps, args.warmup, args.threads)))
        return 0
    results = {}
    for key in args.nets.split(","):
        results[key] = {keep: run_child(key, keep, args.reps, args.warmup, args.threads) for keep in (True, False)}
        for keep, r in results[key].items():
            if r["memory policy"] != keep:
                raise RuntimeError(f"{key}: the child's memory policy is {r['memory policy']}, "
                                   f"expected {keep}")
            print(key, "memory kept" if keep else "glibc defaults",
                  {k: round(v) for k, v in r["ms"].items()}, flush=True)
    from caffe.atomic import write_text
    text = render(results, args)
    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
