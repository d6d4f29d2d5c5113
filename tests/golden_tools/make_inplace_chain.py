"""Make the golden case ``tests/golden_made/inplace_chain`` with a real BVLC Caffe build (pycaffe).

Never run by the tests or CI: it needs real Caffe. The data it writes is committed, and
``tests/test_inplace_chain_golden.py`` compares the engine with it. Run it again after changing a
net here, with the Caffe build's Python path, e.g. (the build described in tests/golden/README.md:
BVLC 9b89154, CPU_ONLY, Debian 12, OpenBLAS 0.3.21 pthread)::

    PYTHONPATH=/path/to/caffe/python LD_LIBRARY_PATH=/path/to/caffe/build/lib \\
        OPENBLAS_NUM_THREADS=1 python tests/golden_tools/make_inplace_chain.py [OUT]

OUT defaults to tests/golden_made/inplace_chain. What Caffe computes for these nets depends on the
order in which its BLAS reads and writes memory that a GEMM both reads and writes (an in-place 1x1
Convolution, an in-place InnerProduct): the script records ``openblas_get_corename`` and
``openblas_get_config`` in each ``facts.json``; the engine replays OpenBLAS 0.3.21's SkylakeX kernels
(caffe/aliased_gemm.py).

Each net: Input ``data`` -> an out-of-place producer ``pre`` writing blob ``x`` -> layers in place on
``x`` (BatchNorm, Scale with bias, ReLU, Convolutions that change the shape, ...). The call
sequence is the one of tests/golden/inplace_reshape (README case 10): ``set_random_seed(1701)``;
a fresh ``caffe.Net(net.prototxt, TRAIN)``; every parameter set from numpy (seed per case); ``save``;
set ``data``; forward one layer at a time (``expected_per_layer.npz``: ``"NNN:layer:top"`` is the top
right after that layer ran); ``expected_forward.npz``; a random diff on ``x`` (``output_diffs.npz``);
backward one layer at a time (``expected_per_layer_backward.npz``: ``"NNN:layer:bottom"`` and
``"NNN:layer:param:j"``); ``expected_blob_diff.npz``, ``expected_param_diff.npz``; set ``data`` again
and ``forward()`` (``expected_forward2.npz``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "golden_made" / "inplace_chain"


def conv(name: str, n: int, k: int = 1, s: int = 1, p: int = 0, bias: bool = True) -> str:
    extra = "" if bias else " bias_term: false"
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "x" top: "x"\n'
            f'  convolution_param {{ num_output: {n} kernel_size: {k} stride: {s} pad: {p}{extra} }} }}')


def bn_scale_relu(tag: str, global_stats: bool) -> str:
    bn = "batch_norm_param { use_global_stats: true }" if global_stats else ""
    return (f'layer {{ name: "bn{tag}" type: "BatchNorm" bottom: "x" top: "x" {bn} }}\n'
            f'layer {{ name: "sc{tag}" type: "Scale" bottom: "x" top: "x" scale_param {{ bias_term: true }} }}\n'
            f'layer {{ name: "relu{tag}" type: "ReLU" bottom: "x" top: "x" }}')


def ip(name: str, n: int) -> str:
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "x" top: "x"\n'
            f'  inner_product_param {{ num_output: {n} }} }}')


def relu() -> str:
    return 'layer { name: "relu" type: "ReLU" bottom: "x" top: "x" }'


def net_text(name: str, shape: tuple[int, ...], c_pre: int, body: list[str]) -> str:
    """``c_pre`` > 0: ``pre`` is a 3x3 pad-1 Convolution to c_pre channels; < 0: an InnerProduct to
    -c_pre outputs."""
    dims = " ".join(f"dim: {d}" for d in shape)
    if c_pre > 0:
        pre = (f'layer {{ name: "pre" type: "Convolution" bottom: "data" top: "x"\n'
               f'  convolution_param {{ num_output: {c_pre} kernel_size: 3 pad: 1 }} }}')
    else:
        pre = (f'layer {{ name: "pre" type: "InnerProduct" bottom: "data" top: "x"\n'
               f'  inner_product_param {{ num_output: {-c_pre} }} }}')
    head = (f'name: "{name}"\nforce_backward: true\n'
            f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'
            + pre)
    return "\n".join([head, *body]) + "\n"


# name -> (input shape, channels of pre, layers in place on x, what it covers)
CASES = {
    "grow_shrink_1x1": ((2, 3, 5, 5), 4,
                        [bn_scale_relu("1", True), conv("conv_grow", 8), conv("conv_shrink", 4)],
                        "BN (global stats) + Scale + ReLU in place, then 1x1 conv 4->8 in place, "
                        "then 1x1 conv 8->4 in place"),
    "grow_shrink_s2": ((2, 3, 6, 6), 4,
                       [bn_scale_relu("1", True), conv("conv_grow", 8),
                        conv("conv_shrink", 4, k=3, s=2, p=1)],
                       "BN (global stats) + Scale + ReLU in place, then 1x1 conv 4->8, then 3x3 "
                       "stride-2 conv 8->4 (6x6 -> 3x3), all in place"),
    "batch3_mid_bn": ((3, 3, 5, 5), 4,
                      [bn_scale_relu("1", True), conv("conv_grow", 12), bn_scale_relu("2", True),
                       conv("conv_shrink", 6), conv("conv_s2", 4, k=3, s=2, p=1)],
                      "batch 3: BN+Scale+ReLU, 1x1 conv 4->12, BN+Scale+ReLU on the grown blob, "
                      "1x1 conv 12->6, 3x3 stride-2 conv 6->4 (5x5 -> 3x3), all in place"),
    # The final count of x never exceeds the count at an in-place Scale: Scale's backward multiplies
    # top[0]->count() cells into its saved input temp_, which then overflows (real Caffe aborts
    # with a corrupted heap, as a first version of wide_1x1 ending 24->70 did).
    "batch_stats": ((2, 3, 6, 6), 4,
                    [bn_scale_relu("1", False), conv("conv_grow", 8), bn_scale_relu("2", False),
                     conv("conv_shrink", 4, k=3, s=2, p=1)],
                    "BatchNorm with batch statistics (TRAIN) before and after a 1x1 conv 4->8, "
                    "then a 3x3 stride-2 conv 8->4, all in place"),
    "wide_1x1": ((2, 3, 8, 8), 8,
                 [bn_scale_relu("1", True), conv("conv_grow", 20), conv("conv_shrink", 12),
                  conv("conv_shrink2", 6, bias=False)],
                 "1x1 convs in place on 8x8 (8->20->12->6, the last without bias): OpenBLAS's "
                 "small kernels over a 64-position block and several column blocks"),
    "sse_resnet_head": ((2, 3, 8, 8), 4,
                        [bn_scale_relu("1", False), conv("conv_2", 6, k=3, s=2, p=1),
                         bn_scale_relu("2", False), conv("conv_3", 8, k=3, s=2, p=1),
                         bn_scale_relu("3", False)],
                        "SSE-ResNet's cascaded head in small (res2c_conv_1..3): BN (batch "
                        "statistics) + Scale + ReLU after each conv, the 2nd and 3rd convs in place, "
                        "3x3 stride 2 growing the channels (4->6->8, 8x8 -> 4x4 -> 2x2)"),
    "same_shape_1x1": ((2, 3, 5, 5), 8, [relu(), conv("conv_same", 8)],
                       "ReLU in place, then a 1x1 conv 8->8 in place: the shape does not change, "
                       "but the GEMM writes over the channels it still reads"),
    "same_shape_ip": ((13, 3, 2, 2), -10, [relu(), ip("ip_same", 10)],
                      "batch 13: InnerProduct 12->10, ReLU in place, InnerProduct 10->10 in "
                      "place (k < 32: OpenBLAS's level-3 driver zeroes the output first)"),
}


def blas_facts() -> dict:
    facts = {}
    for name in ("openblas", "openblasp-r0.3.21"):
        path = ctypes.util.find_library(name)
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            facts = {"library": path, "corename": lib.openblas_get_corename().decode(),
                     "config": lib.openblas_get_config().decode(),
                     "threads": int(lib.openblas_get_num_threads())}
            break
        except (OSError, AttributeError):
            continue
    return facts


def make_case(caffe, out: Path, name: str, seed: int) -> None:
    shape, c_pre, body, what = CASES[name]
    case = out / name
    case.mkdir(parents=True, exist_ok=True)
    (case / "net.prototxt").write_text(net_text(f"inplace_chain_{name}", shape, c_pre, body))
    caffe.set_random_seed(1701)
    net = caffe.Net(str(case / "net.prototxt"), caffe.TRAIN)
    rng = np.random.default_rng(seed)
    for layer, blobs in net.params.items():
        kind = net.layers[list(net._layer_names).index(layer)].type
        if kind == "BatchNorm":
            c = blobs[0].data.shape[0]
            sf = 1.7
            blobs[0].data[...] = rng.uniform(-0.3, 0.3, c) * sf
            blobs[1].data[...] = rng.uniform(0.5, 1.5, c) * sf
            blobs[2].data[...] = sf
        elif kind == "Scale":
            blobs[0].data[...] = rng.uniform(0.5, 1.5, blobs[0].data.shape)
            blobs[1].data[...] = rng.uniform(-0.3, 0.3, blobs[1].data.shape)
        else:  # Convolution, InnerProduct
            w = blobs[0].data
            fan_in = int(np.prod(w.shape[1:]))
            w[...] = rng.standard_normal(w.shape) * (1.5 / np.sqrt(fan_in))
            if len(blobs) > 1:
                blobs[1].data[...] = rng.uniform(-0.3, 0.3, blobs[1].data.shape)
    net.save(str(case / "weights.caffemodel"))
    np.savez(case / "params.npz", **{f"{l}:{i}": b.data.copy()
                                     for l, bs in net.params.items() for i, b in enumerate(bs)})
    setup_shapes = {b: list(v.data.shape) for b, v in net.blobs.items()}
    x = rng.standard_normal(shape).astype(np.float32)
    np.save(case / "input_data.npy", x)
    names = list(net._layer_names)
    net.blobs["data"].data[...] = x
    per_layer = {}
    for i, layer in enumerate(names):
        net.forward(start=layer, end=layer)
        for top in net.top_names[layer]:
            per_layer[f"{i:03d}:{layer}:{top}"] = net.blobs[top].data.copy()
    np.savez(case / "expected_per_layer.npz", **per_layer)
    np.savez(case / "expected_forward.npz", **{b: v.data.copy() for b, v in net.blobs.items()})
    forward_shapes = {b: list(v.data.shape) for b, v in net.blobs.items()}
    diff = rng.standard_normal(net.blobs["x"].data.shape).astype(np.float32)
    np.savez(case / "output_diffs.npz", x=diff)
    net.blobs["x"].diff[...] = diff
    per_back = {}
    for i in reversed(range(len(names))):
        layer = names[i]
        net.backward(start=layer, end=layer)
        for bottom in net.bottom_names[layer]:
            per_back[f"{i:03d}:{layer}:{bottom}"] = net.blobs[bottom].diff.copy()
        for j, p in enumerate(net.params.get(layer, [])):
            per_back[f"{i:03d}:{layer}:param:{j}"] = p.diff.copy()
    np.savez(case / "expected_per_layer_backward.npz", **per_back)
    np.savez(case / "expected_blob_diff.npz", **{b: v.diff.copy() for b, v in net.blobs.items()})
    np.savez(case / "expected_param_diff.npz", **{f"{l}:{i}": b.diff.copy()
                                                  for l, bs in net.params.items()
                                                  for i, b in enumerate(bs)})
    net.blobs["data"].data[...] = x
    first = {b: v.data.copy() for b, v in net.blobs.items()}
    net.forward()
    np.savez(case / "expected_forward2.npz", **{b: v.data.copy() for b, v in net.blobs.items()})
    facts = {
        "what": what, "seed": seed, "layers": names,
        "blob_shapes_after_setup": setup_shapes, "blob_shapes_after_forward": forward_shapes,
        "second_forward_equals_first": {b: bool(np.array_equal(first[b], v.data))
                                        for b, v in net.blobs.items()},
        "blas": blas_facts(),
    }
    (case / "facts.json").write_text(json.dumps(facts, indent=1) + "\n")


def main(argv: list[str]) -> int:
    import caffe  # real pycaffe, from PYTHONPATH
    caffe.set_mode_cpu()
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    for seed, name in enumerate(CASES, start=20):
        make_case(caffe, out, name, seed)
        print("made", out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
