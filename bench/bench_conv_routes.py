"""The inference mode's two CPU routes for a convolution larger than 1x1 (issue 19), side by side on
every such convolution of the SSE nets at batch 1; writes bench/results/conv_routes.md.

``packed``: oneDNN with the weights packed once for the input shape and the ReLU fused
(``torch.ops.mkldnn._convolution_pointwise``); ``conv2d``: ``F.conv2d`` on the channels-last input
with channels-last weights, then the in-place ReLU. The plan packs a convolution when one call does
at least ``caffe.inference.PACKED_MIN_MACS`` multiply-adds on more than one input channel; this
shows what each route costs on each shape, at one and at two threads, the two routes alternating
call by call (medians), and what a whole forward's convolutions cost under each rule.

Run: ``python bench/bench_conv_routes.py``, then ``python bench/merge_results.py``."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from machine_info import cpu_model  # noqa: E402

NETS = ("holonet", "densenet")


def conv_shapes(key: str, folder: Path) -> Counter:
    """(input shape, weight shape, stride, pad, dilation) -> how many convolutions of the net's
    batch-1 TEST net have it, for every one-group 2-D convolution larger than 1x1 that does not
    cover its whole input (the ones the packed route may take)."""
    import caffe
    from caffe.layers.conv import Convolution
    from vs_bvlc import write_nets
    files = write_nets(key, folder)
    net = caffe.Net(files["test1"], caffe.TEST)
    found: Counter = Counter()
    for name, layer in zip(net._layer_names, net.modules):
        if type(layer) is not Convolution or layer.group != 1:
            continue
        weight = tuple(layer.blobs[0].shape)
        shape = tuple(net.blobs[net.bottom_names[name][0]].data.shape)
        if weight[2:] == (1, 1) or (shape[2:] == weight[2:] and layer.pad == (0, 0)):
            continue
        found[(shape, weight, layer.stride, layer.pad, layer.dilation)] += 1
    return found


def time_routes(case: tuple, reps: int) -> dict[str, float]:
    """Median seconds per call of each route on one shape, the routes alternating."""
    from caffe.inference import _pack_conv_weight, _packed_conv
    from caffe.layers.conv import channels_last
    shape, weight_shape, stride, pad, dilation = case
    gen = torch.Generator().manual_seed(0)
    x = channels_last(torch.randn(shape, generator=gen))
    weight = torch.randn(weight_shape, generator=gen)
    bias = torch.randn(weight_shape[0], generator=gen)
    packed = _pack_conv_weight(weight, stride, pad, dilation, 1, shape)
    weight_cl = weight.contiguous(memory_format=torch.channels_last)
    routes = {"packed": lambda: _packed_conv(x, packed, bias, stride, pad, dilation, 1, True),
              "conv2d": lambda: F.relu_(F.conv2d(x, weight_cl, bias, stride, pad, dilation))}
    times: dict[str, list[float]] = {k: [] for k in routes}
    with torch.inference_mode():
        for _ in range(10):
            for run in routes.values():
                run()
        for _ in range(reps):
            for k, run in routes.items():
                t = time.perf_counter()
                run()
                times[k].append(time.perf_counter() - t)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def macs(case: tuple) -> int:
    from caffe.layers.conv import conv2d_output_hw
    shape, weight_shape, stride, pad, dilation = case
    h_o, w_o = conv2d_output_hw(shape[2:], weight_shape[2:], stride, pad, dilation)
    n = 1
    for d in weight_shape:
        n *= d
    return shape[0] * h_o * w_o * n


def packs(case: tuple) -> bool:
    """Whether the plan packs this convolution (caffe/inference.py, ``_conv_route``)."""
    from caffe.inference import PACKED_MIN_MACS
    return macs(case) >= PACKED_MIN_MACS


def render(rows: list[dict], totals: dict, args) -> str:
    from caffe.inference import PACKED_MIN_MACS
    lines = ["## Convolution routes of the inference mode at batch 1 (bench/bench_conv_routes.py)", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `python "
             f"bench/bench_conv_routes.py --reps {args.reps}`; {cpu_model()}, {os.cpu_count()} "
             f"cores, torch {torch.__version__}; load average {os.getloadavg()[0]:.2f} at the end. "
             "Every one-group convolution larger than 1x1 of the batch-1 TEST nets (the ones that "
             "may be packed), each shape timed through both routes alternating call by call "
             "(medians, us per call, ReLU included): `packed` = oneDNN with weights packed once "
             "and the ReLU fused; `conv2d` = F.conv2d with channels-last weights. The plan packs "
             f"a convolution from {PACKED_MIN_MACS / 1e6:.2f}M multiply-adds per call (`rule`).", "",
             "| net | input | weights | stride | count | M multiply-adds | threads | packed (us) "
             "| conv2d (us) | packed / conv2d | rule |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        case = r["case"]
        lines.append(f"| {r['net']} | {'x'.join(map(str, case[0]))} | {'x'.join(map(str, case[1]))} "
                     f"| {case[2][0]} | {r['count']} | {macs(case) / 1e6:.2f} | {r['threads']} "
                     f"| {r['packed'] * 1e6:.1f} | {r['conv2d'] * 1e6:.1f} "
                     f"| {r['packed'] / r['conv2d']:.2f} | {'packed' if packs(case) else 'conv2d'} |")
    lines += ["", "Sum over a forward's convolutions of these shapes (each shape's median times its "
              "count), ms:", "", "| net | threads | all packed | all conv2d | rule |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for (net, threads), t in totals.items():
        lines.append(f"| {net} | {threads} | {t['packed'] * 1e3:.2f} | {t['conv2d'] * 1e3:.2f} "
                     f"| {t['rule'] * 1e3:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=201)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "conv_routes.md")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    totals: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        shapes = {key: conv_shapes(key, Path(tmp)) for key in NETS}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for key in NETS:
            total = {"packed": 0.0, "conv2d": 0.0, "rule": 0.0}
            for case, count in shapes[key].items():
                t = time_routes(case, args.reps)
                rows.append({"net": key, "case": case, "count": count, "threads": threads, **t})
                total["packed"] += count * t["packed"]
                total["conv2d"] += count * t["conv2d"]
                total["rule"] += count * t["packed" if packs(case) else "conv2d"]
                print(key, threads, case, count, {k: round(v * 1e6, 1) for k, v in t.items()},
                      flush=True)
            totals[(key, threads)] = total
    from caffe.atomic import write_text
    text = render(rows, totals, args)
    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
