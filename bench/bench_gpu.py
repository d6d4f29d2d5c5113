"""GPU throughput of the SSE nets (images/s) on CUDA; writes bench/results/gpu.md.

For SSE-HoloNet, SSE-DenseNet-121 and SSE-ResNet-50 (the released forms' prototxts, data layer
replaced by Input, random weights): training forward+backward in float32, and inference in the
plain mode, the optimised mode (caffe.inference.optimize) in float32 and under bf16 and fp16
autocast, with the largest deviation of the autocast class scores (the final Softmax's input)
from float32, relative to their largest magnitude. Inputs already sit on
the GPU; times are medians over repetitions after warm-up, with torch.cuda.synchronize.

Run on a machine with a CUDA GPU: ``python bench/bench_gpu.py``. Without one it says so and
measures nothing. ``--device cpu --batch 2 --reps 1`` only checks that the script runs (it then
prints, and writes nothing)."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import caffe  # noqa: E402
from caffe.atomic import write_text  # noqa: E402
from caffe.inference import optimize  # noqa: E402
from inference_helpers import (MODELS, randomize_weights, sse_test_net_param,  # noqa: E402
                               sse_train_net)

BATCHES = {"holonet": 128, "densenet": 64, "resnet": 16}


def timed(fn: Callable[[], object], device: torch.device, reps: int, warmup: int) -> float:
    """Median seconds per call, synchronising the device around each call."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_seconds(key: str, batch: int, x: torch.Tensor, device: torch.device, reps: int,
                  warmup: int) -> float:
    """Training forward+backward (float32) of the train net, as the solver runs it."""
    net = sse_train_net(MODELS[key], batch)
    randomize_weights(net, 1)
    net.blobs["data"].data[...] = x.numpy()
    net.blobs["label"].data[...] = np.arange(batch) % 7

    def step() -> None:
        for p in net.learnable_params:
            p.grad = None
        net.forward_backward()
    return timed(step, device, reps, warmup)


def bench_model(key: str, batch: int, device: torch.device, reps: int, warmup: int) -> dict:
    model = MODELS[key]
    x = torch.randn((batch,) + model.input_chw, generator=torch.Generator().manual_seed(0)) * 50
    row: dict[str, float] = {"train fp32": train_seconds(key, batch, x, device, reps, warmup)}
    if device.type == "cuda":
        torch.cuda.empty_cache()
    caffe.set_random_seed(0)
    net = caffe.Net(net_param=sse_test_net_param(model, batch), phase=caffe.TEST)
    randomize_weights(net, 0)
    xd = x.to(device)
    net._feed({"data": xd})
    row["plain fp32"] = timed(net.run, device, reps, warmup)
    scores = net.bottom_names[net._layer_names[-1]][0]  # what the final Softmax reads
    reference = optimize(net).run({"data": xd}, blobs=[scores])[scores]
    for label, autocast in (("optimised fp32", None), ("optimised bf16", "bf16"),
                            ("optimised fp16", "fp16")):
        fast = optimize(net, autocast=autocast)
        row[label] = timed(lambda: fast.run({"data": xd}), device, reps, warmup)
        if autocast:
            got = fast.run({"data": xd}, blobs=[scores])[scores]
            # inf where the half-precision run overflowed (random weights can drive activations
            # of deep nets past fp16's 65504, which trained weights do not).
            row[f"{autocast} dev"] = (float((got - reference).abs().max() / reference.abs().max())
                                      if bool(torch.isfinite(got).all()) else float("inf"))
    return row


def deviation(value: float) -> str:
    return "overflow" if value == float("inf") else f"{value:.1e}"


def render(device_name: str, rows: dict, args) -> str:
    lines = ["## GPU throughput (bench/bench_gpu.py)", "",
             f"Card: {device_name}; torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
             f"{torch.backends.cudnn.version()}. Medians of {args.reps} repetitions after "
             f"{args.warmup} warm-up calls; inputs on the GPU. Images/s = batch / time.", "",
             "| net | batch | train fwd+bwd fp32 | plain fp32 | optimised fp32 | optimised bf16 | "
             "optimised fp16 | bf16 rel. dev. of scores | fp16 rel. dev. |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, (batch, r) in rows.items():
        speed = {k: batch / v for k, v in r.items() if k.endswith(("fp32", "bf16", "fp16")) and v}
        lines.append(f"| {MODELS[key].title} | {batch} | {speed['train fp32']:.0f} | "
                     f"{speed['plain fp32']:.0f} | {speed['optimised fp32']:.0f} | "
                     f"{speed['optimised bf16']:.0f} | {speed['optimised fp16']:.0f} | "
                     f"{deviation(r['bf16 dev'])} | {deviation(r['fp16 dev'])} |")
    lines += ["", "A deviation reads `overflow` where the half-precision scores were not finite: the "
              "random weights and BatchNorm statistics drive the activations of the deepest net to "
              "~1e6, past fp16's largest value (65504), as trained weights do not."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (smoke check)")
    parser.add_argument("--models", default="holonet,densenet,resnet")
    parser.add_argument("--batch", type=int, default=None, help="one batch size for all nets")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gpu.md")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("No CUDA device is visible to PyTorch: nothing measured, "
                  f"{args.out} left as it is.")
            return 0
        caffe.set_mode_gpu()
        caffe.set_device(0)
        device = torch.device("cuda", 0)
        device_name = torch.cuda.get_device_name(device)
        torch.backends.cudnn.benchmark = True
    else:
        caffe.set_mode_cpu()
        device, device_name = torch.device("cpu"), "CPU (smoke check only)"
    rows = {}
    for key in args.models.split(","):
        batch = args.batch or BATCHES[key]
        rows[key] = (batch, bench_model(key, batch, device, args.reps, args.warmup))
        print(key, batch, {k: round(v, 5) for k, v in rows[key][1].items()}, flush=True)
    text = render(device_name, rows, args)
    print(text)
    if device.type == "cuda":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
