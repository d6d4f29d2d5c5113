"""Make the golden case ``tests/golden_made/inplace_sse_head`` with a real BVLC Caffe build (pycaffe):
SSE-ResNet's res2c cascade at its real size, TRAIN, batch 2 (see tests/golden_made/README.md).

Never run by the tests or CI: it needs real Caffe. Run, e.g.::

    PYTHONPATH=/path/to/caffe/python python tests/golden_tools/make_inplace_sse_head.py [OUT]

The net (``NET`` below, also written to OUT/net.prototxt): Input 2x256x56x56 -> res2c_conv_1
(7x7 stride 2 -> 512x28x28) -> BN (batch statistics) + Scale + ReLU in place -> res2c_conv_2 in
place (-> 1024x14x14) -> BN + Scale + ReLU -> res2c_conv_3 in place (-> 2048x7x7) -> BN + Scale +
ReLU -> AVE pool 7 -> fc 7. Every parameter comes from numpy (``params(seed)``, the same function
the test calls), so no caffemodel is stored. One forward, a random diff on ``fc``
(``rng(SEED + 1)``), one backward. The arrays are too large to keep whole; ``summary.npz`` keeps
what the test compares: ``fc``, the per-(image, channel) means of ``x``, the per-(image, channel)
sums and sums of squares of the data diff, the parameter diffs summed per output channel (weights)
or whole (biases, Scale), the fc weight diff summed per output."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "golden_made" / "inplace_sse_head"
SEED = 2017
NET = """name: "sse_res2c_head"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 256 dim: 56 dim: 56 } } }
layer { name: "res2c_conv_1" type: "Convolution" bottom: "data" top: "x" convolution_param { num_output: 512 kernel_size: 7 stride: 2 pad: 3 } }
layer { name: "bn_1" type: "BatchNorm" bottom: "x" top: "x" }
layer { name: "sc_1" type: "Scale" bottom: "x" top: "x" scale_param { bias_term: true } }
layer { name: "relu_1" type: "ReLU" bottom: "x" top: "x" }
layer { name: "res2c_conv_2" type: "Convolution" bottom: "x" top: "x" convolution_param { num_output: 1024 kernel_size: 7 stride: 2 pad: 3 } }
layer { name: "bn_2" type: "BatchNorm" bottom: "x" top: "x" }
layer { name: "sc_2" type: "Scale" bottom: "x" top: "x" scale_param { bias_term: true } }
layer { name: "relu_2" type: "ReLU" bottom: "x" top: "x" }
layer { name: "res2c_conv_3" type: "Convolution" bottom: "x" top: "x" convolution_param { num_output: 2048 kernel_size: 7 stride: 2 pad: 3 } }
layer { name: "bn_3" type: "BatchNorm" bottom: "x" top: "x" }
layer { name: "sc_3" type: "Scale" bottom: "x" top: "x" scale_param { bias_term: true } }
layer { name: "relu_3" type: "ReLU" bottom: "x" top: "x" }
layer { name: "pool" type: "Pooling" bottom: "x" top: "pool" pooling_param { pool: AVE kernel_size: 7 stride: 1 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: 7 } }
"""
CONVS = ("res2c_conv_1", "res2c_conv_2", "res2c_conv_3")
SCALES = ("sc_1", "sc_2", "sc_3")


def params(seed: int, shapes: dict[str, list[tuple[int, ...]]]) -> dict[str, list[np.ndarray]]:
    """Every learnable parameter from numpy: conv weights N(0, 2/fan_in), biases U(-0.05, 0.05),
    Scale U(0.5, 1.5) and U(-0.2, 0.2), fc N(0, 0.05). BatchNorm blobs start at 0."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, blob_shapes in shapes.items():
        if name.startswith("bn"):
            continue
        if name.startswith("sc"):
            out[name] = [rng.uniform(0.5, 1.5, blob_shapes[0]), rng.uniform(-0.2, 0.2, blob_shapes[1])]
        elif name == "fc":
            out[name] = [rng.normal(0.0, 0.05, blob_shapes[0]), rng.uniform(-0.05, 0.05, blob_shapes[1])]
        else:
            fan_in = int(np.prod(blob_shapes[0][1:]))
            out[name] = [rng.normal(0.0, np.sqrt(2.0 / fan_in), blob_shapes[0]),
                         rng.uniform(-0.05, 0.05, blob_shapes[1])]
    return {k: [v.astype(np.float32) for v in vs] for k, vs in out.items()}


def run(net, seed: int = SEED) -> dict[str, np.ndarray]:
    """Set the parameters and input, forward, backward; the summary (pycaffe's Net API, so the
    same function runs on real Caffe and on this engine)."""
    shapes = {name: [tuple(b.data.shape) for b in blobs] for name, blobs in net.params.items()}
    for name, values in params(seed, shapes).items():
        for blob, value in zip(net.params[name], values):
            blob.data[...] = value
    rng = np.random.default_rng(seed + 1)
    net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].data.shape).astype(np.float32)
    net.forward()
    out = {"fc": net.blobs["fc"].data.copy(),
           "x_mean": net.blobs["x"].data.mean(axis=(2, 3))}
    net.blobs["fc"].diff[...] = rng.standard_normal(out["fc"].shape).astype(np.float32)
    net.backward()
    d = net.blobs["data"].diff.astype(np.float64)
    out["data_diff_sum"] = d.sum(axis=(2, 3))
    out["data_diff_sq"] = (d * d).sum(axis=(2, 3))
    for name in CONVS:
        out[f"{name}:0_sum"] = net.params[name][0].diff.astype(np.float64).sum(axis=(1, 2, 3))
        out[f"{name}:1"] = net.params[name][1].diff.copy()
    for name in SCALES:
        out[f"{name}:0"] = net.params[name][0].diff.copy()
        out[f"{name}:1"] = net.params[name][1].diff.copy()
    out["fc:0_sum"] = net.params["fc"][0].diff.astype(np.float64).sum(axis=1)
    out["fc:1"] = net.params["fc"][1].diff.copy()
    return {k: v.astype(np.float32) for k, v in out.items()}


def main(argv: list[str]) -> int:
    import caffe  # real pycaffe, from PYTHONPATH
    caffe.set_mode_cpu()
    out = Path(argv[1]) if len(argv) > 1 else OUT
    out.mkdir(parents=True, exist_ok=True)
    (out / "net.prototxt").write_text(NET)
    net = caffe.Net(str(out / "net.prototxt"), caffe.TRAIN)
    np.savez(out / "summary.npz", **run(net))
    (out / "facts.json").write_text(json.dumps({"seed": SEED, "shape_x_final": list(
        net.blobs["x"].data.shape)}, indent=1) + "\n")
    print("made", out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
