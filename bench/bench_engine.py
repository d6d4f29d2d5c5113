"""Engine benchmark, side by side in one run; writes bench/results/engine.md.

(a) forward+backward of the SSE-HoloNet and SSE-DenseNet-121 train nets built from their
    prototxts (data layer replaced by Input) versus the same architectures written directly in
    PyTorch (bench/plain_torch_models.py), batch 32, repetitions interleaved, medians;
(b) inference of the TEST nets, plain and optimised mode (caffe.inference), versus OpenCV dnn on
    the same prototxt and caffemodel, batch 1 and 32;
(c) the train nets' forward+backward in units of a numpy float32 2048^3 matmul timed in the same
    run: with numpy's BLAS as the environment configures it and, where OPENBLAS_CORETYPE /
    OPENBLAS_L2_SIZE pin OpenBLAS to an older kernel (as this workplace does on some processors),
    also with its native kernel, timed in a child process without those variables; and the nets'
    convolution FLOPs expressed in matmuls, the floor that no implementation running at the
    matmul's FLOP rate can go below.

No figure here comes from outside the run (the side-by-side comparison with a real Caffe build is
issue 19's bench/vs_bvlc.py). The measurements are also written as JSON (``--json``, default
next to ``--out``), and ``--from-json`` renders the report again from them without measuring.

Run: ``python bench/bench_engine.py`` (``--reps``, ``--quick``, ``--threads``)."""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_torch_models import SSEDenseNet121, SSEHoloNet, load_from_caffe_net, sse_loss  # noqa: E402
from machine_info import cpu_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from inference_helpers import MODELS, randomize_weights, sse_test_net_files, sse_train_net  # noqa: E402

from caffe.atomic import write_text  # noqa: E402
from caffe.inference import optimize  # noqa: E402

PLAIN_MODELS = {"holonet": SSEHoloNet, "densenet": SSEDenseNet121}


def interleaved(contenders: dict[str, Callable[[], object]], reps: int, warmup: int
                ) -> dict[str, float]:
    """Median seconds per call of each contender; the repetitions alternate between them so that
    drifts of the machine affect all alike."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(reps):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = cpu_model()
    import cv2
    return {"cpu": model, "cores": str(os.cpu_count()), "torch": torch.__version__,
            "torch threads": str(torch.get_num_threads()), "numpy": np.__version__,
            "opencv": cv2.__version__, "opencv threads": str(cv2.getNumThreads()),
            "python": platform.python_version(), "blas": blas_kernel(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
            "load average (start -> end)": load_average()}


def load_average() -> str:
    """The 1-minute load average: other processes on the 2 cores make every time longer."""
    return f"{os.getloadavg()[0]:.2f}"


def blas_kernel() -> str:
    """numpy's BLAS library, version and kernel (threadpoolctl), or what numpy says of itself."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (install threadpoolctl to see the kernel)"
    for info in threadpool_info():
        if info.get("user_api") == "blas" and "numpy" in info.get("filepath", ""):
            return (f"{info.get('internal_api')} {info.get('version')}, kernel "
                    f"{info.get('architecture')}, {info.get('num_threads')} threads")
    return "not found by threadpoolctl"


def limit_blas_threads(n: int) -> None:
    """Limit numpy's BLAS to ``n`` threads (threadpoolctl), for the whole run."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n, user_api="blas")


MATMUL_FLOP = 2 * 2048 ** 3
PINNING_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def matmul_seconds(reps: int) -> float:
    rng = np.random.default_rng(0)
    a = rng.random((2048, 2048), dtype=np.float32)
    b = rng.random((2048, 2048), dtype=np.float32)
    return interleaved({"matmul": lambda: a @ b}, max(reps, 5), 2)["matmul"]


def native_matmul(reps: int, threads: int | None) -> tuple[float, str] | None:
    """(seconds, kernel) of the matmul with OpenBLAS's native kernel, timed in a child process
    without the pinning variables; None when none is set (the in-process matmul is native)."""
    if not any(v in os.environ for v in PINNING_VARIABLES):
        return None
    env = {k: v for k, v in os.environ.items() if k not in PINNING_VARIABLES}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--matmul-only", "--reps", str(reps)]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["seconds"], result["blas"]


def conv_flop(net) -> float:
    """FLOPs of the Convolution and InnerProduct layers in one forward+backward: 2 per
    multiply-add, three products each (forward, input gradient, weight gradient)."""
    macs = 0
    for layer in net.modules:
        if layer.lp.type in ("Convolution", "InnerProduct"):
            weight = layer.blobs[0]
            outputs = math.prod(net.blob_shape(net.top_names[layer.name][0]))
            macs += outputs * (weight.numel() // weight.shape[0])
    return 2.0 * 3 * float(macs)


def bench_train(key: str, batch: int, reps: int, warmup: int) -> dict[str, float]:
    """(a): engine forward+backward vs the plain PyTorch module, after checking both compute the
    same loss from the same weights."""
    model = MODELS[key]
    net = sse_train_net(model, batch)
    randomize_weights(net, 1)
    plains = {name: PLAIN_MODELS[key](model.input_chw[0], full_map_as_linear=linear)
              for name, linear in (("plain", False), ("plain_gemm", True))}
    rng = np.random.default_rng(0)
    x = rng.normal(0, 50, (batch,) + model.input_chw).astype(np.float32)
    y = rng.integers(0, 7, batch)
    net.blobs["data"].data[...] = x
    net.blobs["label"].data[...] = y
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    engine_loss = net.forward_backward()
    for name, plain in plains.items():
        load_from_caffe_net(plain, net)
        plain.train()
        plain_loss = float(sse_loss(plain(xt), yt).detach())
        if abs(engine_loss - plain_loss) > 1e-4 * max(1.0, abs(plain_loss)):
            raise RuntimeError(f"{key}: engine loss {engine_loss} != {name} PyTorch loss "
                               f"{plain_loss}: the architectures differ")

    def engine_step() -> None:
        for p in net.learnable_params:  # as the solver clears diffs
            p.grad = None
        net.forward_backward()

    def plain_step(plain: torch.nn.Module) -> Callable[[], None]:
        def step() -> None:
            plain.zero_grad(set_to_none=True)
            sse_loss(plain(xt), yt).backward()
        return step

    result = interleaved({"engine": engine_step, "plain": plain_step(plains["plain"]),
                          "plain_gemm": plain_step(plains["plain_gemm"])}, reps, warmup)
    result["loss"] = float(engine_loss)
    result["flop"] = conv_flop(net)
    return result


def bench_inference(key: str, batch: int, reps: int, warmup: int, folder: Path) -> dict[str, float]:
    """(b): plain mode, optimised mode and OpenCV dnn on the same files; checks agreement first."""
    import cv2
    model = MODELS[key]
    net, _, opencv_prototxt, weights = sse_test_net_files(model, batch, folder / f"{key}_{batch}")
    fast = optimize(net)
    cv_net = cv2.dnn.readNetFromCaffe(str(opencv_prototxt), str(weights))
    out = net.outputs[0]
    x = np.random.default_rng(2).normal(0, 50, (batch,) + model.input_chw).astype(np.float32)

    def run_opencv() -> np.ndarray:
        cv_net.setInput(x)
        return cv_net.forward(out)

    expected = net.forward(data=x)[out].copy()
    for name, got in (("optimised", fast.forward(data=x)[out]), ("opencv", run_opencv())):
        err = np.abs(got.reshape(expected.shape) - expected).max() / np.abs(expected).max()
        if err > 1e-4:
            raise RuntimeError(f"{key} batch {batch}: {name} differs from the plain mode by {err:.2e}")
    return interleaved({"plain": lambda: net.forward(data=x), "optimised": lambda: fast.forward(data=x),
                        "opencv": run_opencv}, reps, warmup)


def render(run: dict) -> str:
    """The report of one run's measurements (as main stores them in the JSON file)."""
    info, matmul = run["info"], run["matmul"]
    train = run["train"]
    infer = {(r["net"], r["batch"]): r for r in run["infer"]}
    native = tuple(run["native"]) if run["native"] else None
    threads = run["threads"]
    lines = ["## Engine benchmark (bench/bench_engine.py)", "",
             f"Measured {run['date']} with `python bench/bench_engine.py "
             f"--reps {run['reps']}" + (f" --threads {threads}" if threads else "") +
             "`; medians of interleaved repetitions.", "",
             "| machine | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    cores = int(info["cores"])
    start_load = float(info["load average (start -> end)"].split()[0])
    if start_load > 0.5 * cores:
        lines += ["", f"The machine was shared with other jobs (load average {start_load:.1f} on "
                  f"{cores} cores): every time is longer than on an idle machine; the "
                  "ratios of interleaved repetitions are less affected. Under such load PyTorch's "
                  "multi-threaded (OpenMP) operators stall at their barriers, so `--threads 1` "
                  "gives steadier numbers than the default."]
    lines += ["", "### (a) forward+backward, prototxt-built net vs the same net written in PyTorch",
              "", "Train nets, batch 32, data layer replaced by Input; the engine runs as the solver "
              "does (no per-blob diffs kept), the PyTorch modules use nn.BatchNorm2d (BatchNorm+Scale "
              "in one), F.cross_entropy; both checked to give the same loss from the same weights.",
              "The engine computes convolutions whose kernel covers the whole input (the SSE "
              "branches' 16x16, 8x8, 9x9, 5x5 full-map convolutions) as one matrix product, as "
              "Caffe's im2col+GEMM does; `plain` uses nn.Conv2d for them as one would write it, "
              "`plain, GEMM` the same matrix product, which isolates the engine's own overhead.",
              "Both run in one process, after the engine has set its memory policy "
              "(`caffe.memory.keep_freed_memory`, applied when a net is built: freed blocks stay "
              "mapped for the next iteration), so the plain modules run with it too. The engine "
              "runs CPU convolutions channels-last (`caffe.layers.conv.conv2d`); the plain "
              "modules stay NCHW, as written.",
              "", "| net | engine (ms) | plain PyTorch (ms) | plain, GEMM (ms) | engine/plain | "
              "engine/plain GEMM (goal <= 1.10) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for key, r in train.items():
        lines.append(f"| {MODELS[key].title} | {r['engine'] * 1e3:.0f} | {r['plain'] * 1e3:.0f} | "
                     f"{r['plain_gemm'] * 1e3:.0f} | {r['engine'] / r['plain']:.3f} | "
                     f"{r['engine'] / r['plain_gemm']:.3f} |")
    lines += ["", "### (b) inference: plain mode, optimised mode (caffe.inference.optimize) and "
              "OpenCV dnn", "", "Same prototxt (TEST net, Input instead of data, losses removed) and "
              "caffemodel (random weights, random BatchNorm statistics); numpy in, numpy out; "
              "outputs checked to agree within 1e-4 before timing.", "",
              "| net | batch | plain (ms) | optimised (ms) | OpenCV (ms) | OpenCV/optimised | "
              "OpenCV/plain |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (key, batch), r in infer.items():
        lines.append(f"| {MODELS[key].title} | {batch} | {r['plain'] * 1e3:.1f} | "
                     f"{r['optimised'] * 1e3:.1f} | {r['opencv'] * 1e3:.1f} | "
                     f"{r['opencv'] / r['optimised']:.2f} | {r['opencv'] / r['plain']:.2f} |")
    lines += ["", "### (c) the train nets' forward+backward in units of a numpy float32 2048^3 matmul",
              "", f"The matmul took {matmul * 1e3:.1f} ms with numpy's BLAS as this environment "
              f"configures it ({info['blas']}; OPENBLAS_CORETYPE {info['OPENBLAS_CORETYPE']})"]
    yardsticks = [("configured kernel", matmul)]
    if native is not None:
        lines[-1] += (f", and {native[0] * 1e3:.1f} ms with OpenBLAS's native kernel "
                      f"({native[1]}; the pinning variables unset in a child process)")
        yardsticks.append(("native kernel", native[0]))
    lines[-1] += ". A matmul unit is one such matmul on the same machine."
    lines += ["", "| net | engine (ms) | " +
              " | ".join(f"engine (matmuls, {name})" for name, _ in yardsticks) +
              " | conv FLOP floor (matmuls) |",
              "| --- | ---: | " + " | ".join("---:" for _ in yardsticks) + " | ---: |"]
    for key, r in train.items():
        cells = [f"{r['engine'] / seconds:.2f}" for _, seconds in yardsticks]
        lines.append(f"| {MODELS[key].title} | {r['engine'] * 1e3:.0f} | " + " | ".join(cells) +
                     f" | {r['flop'] / MATMUL_FLOP:.2f} |")
    lines += ["", "The conv FLOP floor counts the multiply-adds of the Convolution and "
              "InnerProduct layers (forward, input and weight gradients) in units of the matmul's "
              "17.2 GFLOP: even an implementation running every product at the matmul's own FLOP "
              "rate, with BatchNorm, ReLU, Concat and pooling for free, needs that many matmul "
              "units. The matmul units depend on the kernel measured: a GEMM kernel pinned to an "
              "older instruction set makes the matmul slower, while the engine's convolutions run "
              "in oneDNN's kernels for the processor either way."]
    return "\n".join(lines) + "\n"


def write_report(run: dict, out: Path) -> None:
    text = render(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, text)
    print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per contender")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per contender first")
    parser.add_argument("--quick", action="store_true", help="3 reps, 1 warm-up (smoke run)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch, OpenCV and numpy's BLAS alike (default: torch's)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "engine.md")
    parser.add_argument("--json", type=Path, default=None,
                        help="where the measurements go (default: --out with .json)")
    parser.add_argument("--from-json", type=Path, default=None, metavar="JSON",
                        help="measure nothing: write --out from the measurements of an earlier run")
    parser.add_argument("--matmul-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.from_json:
        write_report(json.loads(args.from_json.read_text()), args.out)
        return 0
    if args.quick:
        args.reps, args.warmup = 3, 1
    import cv2
    if args.threads:
        torch.set_num_threads(args.threads)
        limit_blas_threads(args.threads)
    cv2.setNumThreads(torch.get_num_threads())
    if args.matmul_only:  # the child process of native_matmul
        print(json.dumps({"seconds": matmul_seconds(args.reps), "blas": blas_kernel()}))
        return 0
    info = machine()
    print("\n".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    train, infer = {}, {}
    matmul = matmul_seconds(args.reps)
    native = native_matmul(args.reps, args.threads)
    print(f"matmul: {matmul * 1e3:.1f} ms" +
          (f", native kernel {native[0] * 1e3:.1f} ms ({native[1]})" if native else ""), flush=True)
    for key in ("holonet", "densenet"):
        train[key] = bench_train(key, 32, args.reps, args.warmup)
        r = train[key]
        print(f"(a) {key}: engine {r['engine'] * 1e3:.0f} ms, plain {r['plain'] * 1e3:.0f} ms, "
              f"plain GEMM {r['plain_gemm'] * 1e3:.0f} ms", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for key in ("holonet", "densenet"):
            for batch in (1, 32):
                infer[(key, batch)] = r = bench_inference(key, batch, args.reps, args.warmup, Path(tmp))
                print(f"(b) {key} batch {batch}: plain {r['plain'] * 1e3:.1f} ms, optimised "
                      f"{r['optimised'] * 1e3:.1f} ms, opencv {r['opencv'] * 1e3:.1f} ms", flush=True)
    matmul = statistics.median([matmul, matmul_seconds(args.reps)])
    if native is not None:
        native = (statistics.median([native[0], native_matmul(args.reps, args.threads)[0]]), native[1])
    info["load average (start -> end)"] += f" -> {load_average()}"
    run = {"date": time.strftime("%Y-%m-%d"), "reps": args.reps, "threads": args.threads,
           "info": info, "matmul": matmul, "native": list(native) if native else None,
           "train": train, "infer": [dict(r, net=key, batch=batch) for (key, batch), r in infer.items()]}
    json_path = args.json or args.out.with_suffix(".json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(json_path, json.dumps(run, indent=1) + "\n")
    write_report(run, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
