"""Layers that the golden data does not cover, checked against hand-written numpy references
(forward, and backward where the layer is differentiable)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import caffe
from caffe.model_io import parse_net_text

RNG = np.random.default_rng(1701)


def _run(layer_text: str, inputs: dict[str, np.ndarray], phase=caffe.TEST):
    """Build a one-layer net over Input blobs, feed ``inputs`` and run forward."""
    decl = "".join(
        f'layer {{ name: "in_{n}" type: "Input" top: "{n}" input_param {{ shape {{ '
        + " ".join(f"dim: {d}" for d in v.shape) + " } } }\n" for n, v in inputs.items())
    net = caffe.Net(net_param=parse_net_text('name: "t" force_backward: true\n' + decl + layer_text),
                    phase=phase)
    for n, v in inputs.items():
        net.blobs[n].data[...] = v
    net.forward()
    return net


def test_deconvolution_equals_the_adjoint_of_convolution():
    x = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)
    net = _run('layer { name: "d" type: "Deconvolution" bottom: "x" top: "y" convolution_param { '
               'num_output: 2 kernel_size: 3 stride: 2 pad: 1 weight_filler { type: "gaussian" } } }',
               {"x": x})
    w = net.params["d"][0].data
    b = net.params["d"][1].data
    y = net.blobs["y"].data
    assert w.shape == (3, 2, 3, 3) and y.shape == (2, 2, 7, 9)
    ref = np.zeros((2, 2, 4 * 2 + 1, 5 * 2 + 1), np.float32)
    for n in range(2):
        for c in range(3):
            for i in range(4):
                for j in range(5):
                    ref[n, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] += x[n, c, i, j] * w[c]
    ref = ref[:, :, 1:-1, 1:-1] + b[None, :, None, None]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_prelu_uses_per_channel_slopes_starting_at_quarter():
    x = RNG.normal(size=(2, 3, 2, 2)).astype(np.float32)
    net = _run('layer { name: "p" type: "PReLU" bottom: "x" top: "y" }', {"x": x})
    np.testing.assert_allclose(net.params["p"][0].data, [0.25] * 3)
    np.testing.assert_allclose(net.blobs["y"].data, np.where(x > 0, x, 0.25 * x), rtol=1e-6)


@pytest.mark.parametrize("kind,fn", [
    ("Sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    ("TanH", np.tanh),
    ("AbsVal", np.abs),
    ("BNLL", lambda x: np.log1p(np.exp(x))),
])
def test_elementwise_neurons(kind, fn):
    x = RNG.normal(size=(3, 4)).astype(np.float32)
    net = _run(f'layer {{ name: "n" type: "{kind}" bottom: "x" top: "y" }}', {"x": x})
    np.testing.assert_allclose(net.blobs["y"].data, fn(x), rtol=1e-5, atol=1e-6)


def test_exp_and_log_with_base_scale_shift():
    x = RNG.uniform(0.5, 2, size=(5,)).astype(np.float32)
    net = _run('layer { name: "e" type: "Exp" bottom: "x" top: "e" exp_param { base: 2 scale: 0.5 shift: 1 } }'
               'layer { name: "l" type: "Log" bottom: "x" top: "l" log_param { base: 10 scale: 2 shift: 1 } }',
               {"x": x})
    np.testing.assert_allclose(net.blobs["e"].data, 2 ** (1 + 0.5 * x), rtol=1e-5)
    np.testing.assert_allclose(net.blobs["l"].data, np.log10(1 + 2 * x), rtol=1e-5)


def test_slice_split_and_concat_round_trip_with_gradients():
    x = RNG.normal(size=(2, 6, 3)).astype(np.float32)
    net = _run('layer { name: "s" type: "Slice" bottom: "x" top: "a" top: "b" top: "c" '
               'slice_param { axis: 1 slice_point: 1 slice_point: 4 } }'
               'layer { name: "sp" type: "Split" bottom: "b" top: "b1" top: "b2" }'
               'layer { name: "cat" type: "Concat" bottom: "a" bottom: "b1" bottom: "c" top: "y" }', {"x": x})
    assert net.blobs["a"].shape == (2, 1, 3) and net.blobs["b"].shape == (2, 3, 3)
    np.testing.assert_array_equal(net.blobs["y"].data, x)
    np.testing.assert_array_equal(net.blobs["b2"].data, x[:, 1:4])
    net.blobs["y"].diff[...] = 1
    net.blobs["b2"].diff[...] = 2
    net.backward()
    expected = np.ones_like(x)
    expected[:, 1:4] += 2
    np.testing.assert_array_equal(net.blobs["x"].diff, expected)


def test_reshape_copies_zero_dims_and_infers_minus_one():
    x = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)
    net = _run('layer { name: "r" type: "Reshape" bottom: "x" top: "y" '
               'reshape_param { shape { dim: 0 dim: -1 dim: 5 } } }'
               'layer { name: "f" type: "Flatten" bottom: "x" top: "f" flatten_param { axis: 2 } }', {"x": x})
    assert net.blobs["y"].shape == (2, 12, 5)
    assert net.blobs["f"].shape == (2, 3, 20)
    np.testing.assert_array_equal(net.blobs["y"].data, x.reshape(2, 12, 5))


def test_bias_layer_and_scale_with_second_bottom():
    x = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    s = RNG.normal(size=(2, 3)).astype(np.float32)
    net = _run('layer { name: "b" type: "Bias" bottom: "x" top: "y" bias_param { filler { type: "constant" value: 0.5 } } }'
               'layer { name: "sc" type: "Scale" bottom: "x" bottom: "s" top: "z" scale_param { axis: 0 } }',
               {"x": x, "s": s})
    np.testing.assert_allclose(net.blobs["y"].data, x + 0.5, rtol=1e-6)
    np.testing.assert_allclose(net.blobs["z"].data, x * s[:, :, None], rtol=1e-6)


def test_argmax_indices_and_values():
    x = RNG.normal(size=(3, 7)).astype(np.float32)
    net = _run('layer { name: "a" type: "ArgMax" bottom: "x" top: "i" argmax_param { top_k: 2 } }'
               'layer { name: "v" type: "ArgMax" bottom: "x" top: "v" argmax_param { out_max_val: true } }'
               'layer { name: "ax" type: "ArgMax" bottom: "x" top: "ax" argmax_param { axis: 1 } }', {"x": x})
    order = np.argsort(-x, axis=1)
    np.testing.assert_array_equal(net.blobs["i"].data[:, 0, :], order[:, :2])
    np.testing.assert_array_equal(net.blobs["v"].data[:, 1, 0], x.max(1))
    np.testing.assert_array_equal(net.blobs["ax"].data[:, 0], order[:, 0])


def test_silence_consumes_blobs_so_they_are_not_outputs():
    x = RNG.normal(size=(2,)).astype(np.float32)
    net = _run('layer { name: "r" type: "ReLU" bottom: "x" top: "y" }'
               'layer { name: "s" type: "Silence" bottom: "y" }', {"x": x})
    assert net.outputs == []


def test_eltwise_max_routes_gradient_to_the_larger_input():
    a = RNG.normal(size=(4,)).astype(np.float32)
    b = RNG.normal(size=(4,)).astype(np.float32)
    net = _run('layer { name: "m" type: "Eltwise" bottom: "a" bottom: "b" top: "y" eltwise_param { operation: MAX } }',
               {"a": a, "b": b})
    np.testing.assert_array_equal(net.blobs["y"].data, np.maximum(a, b))
    net.blobs["y"].diff[...] = 1
    net.backward()
    np.testing.assert_array_equal(net.blobs["a"].diff, (a >= b).astype(np.float32))


def test_euclidean_and_sigmoid_cross_entropy_losses():
    a = RNG.normal(size=(4, 3)).astype(np.float32)
    b = RNG.normal(size=(4, 3)).astype(np.float32)
    t = (RNG.uniform(size=(4, 3)) > 0.5).astype(np.float32)
    net = _run('layer { name: "e" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "e" }'
               'layer { name: "s" type: "SigmoidCrossEntropyLoss" bottom: "a" bottom: "t" top: "s" }',
               {"a": a, "b": b, "t": t}, phase=caffe.TRAIN)
    assert float(net.blobs["e"].data) == pytest.approx(((a - b) ** 2).sum() / 8, rel=1e-5)
    p = 1 / (1 + np.exp(-a))
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum() / t.shape[0]  # Caffe's default: BATCH_SIZE
    assert float(net.blobs["s"].data) == pytest.approx(bce, rel=1e-5)


def test_dropout_scales_kept_units_in_train_and_is_identity_in_test():
    x = np.ones((1000,), np.float32)
    layer = 'layer { name: "d" type: "Dropout" bottom: "x" top: "y" dropout_param { dropout_ratio: 0.25 } }'
    train = _run(layer, {"x": x}, phase=caffe.TRAIN).blobs["y"].data
    kept = train[train != 0]
    np.testing.assert_allclose(kept, np.full_like(kept, 1 / 0.75), rtol=1e-6)
    assert 0.15 < (train == 0).mean() < 0.35
    np.testing.assert_array_equal(_run(layer, {"x": x}).blobs["y"].data, x)


def test_lrn_across_channels():
    x = RNG.normal(size=(1, 5, 2, 2)).astype(np.float32)
    net = _run('layer { name: "l" type: "LRN" bottom: "x" top: "y" lrn_param { local_size: 3 alpha: 0.3 beta: 0.75 k: 2 } }',
               {"x": x})
    sq = np.pad(x ** 2, ((0, 0), (1, 1), (0, 0), (0, 0)))
    window = sq[:, :-2] + sq[:, 1:-1] + sq[:, 2:]
    np.testing.assert_allclose(net.blobs["y"].data, x / (2 + 0.3 / 3 * window) ** 0.75, rtol=1e-5)


def test_tile_and_softmax_axis():
    x = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    net = _run('layer { name: "t" type: "Tile" bottom: "x" top: "t" tile_param { axis: 1 tiles: 2 } }'
               'layer { name: "s" type: "Softmax" bottom: "x" top: "s" softmax_param { axis: 2 } }', {"x": x})
    np.testing.assert_array_equal(net.blobs["t"].data, np.concatenate([x, x], axis=1))
    e = np.exp(x - x.max(2, keepdims=True))
    np.testing.assert_allclose(net.blobs["s"].data, e / e.sum(2, keepdims=True), rtol=1e-5)


def test_max_pooling_mask_top_gives_flat_argmax_index():
    x = RNG.normal(size=(1, 1, 4, 4)).astype(np.float32)
    net = _run('layer { name: "p" type: "Pooling" bottom: "x" top: "y" top: "mask" '
               'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }', {"x": x})
    flat = x.reshape(4, 4)
    for i in range(2):
        for j in range(2):
            win = flat[2 * i:2 * i + 2, 2 * j:2 * j + 2]
            r, c = np.unravel_index(win.argmax(), (2, 2))
            assert net.blobs["mask"].data[0, 0, i, j] == (2 * i + r) * 4 + 2 * j + c


def test_max_pooling_mask_top_keeps_the_first_maximum_of_a_tie():
    """Caffe replaces a window's maximum only by a strictly greater value, so a tie keeps the first
    cell in row-major scan order (pooling_layer.cpp)."""
    x = np.array([[0, 1, 2, 2], [1, 0, 2, 2], [3, 3, 0, 0], [3, 3, 0, 0]], np.float32)
    net = _run('layer { name: "p" type: "Pooling" bottom: "x" top: "y" top: "mask" '
               'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }', {"x": x[None, None]})
    np.testing.assert_array_equal(net.blobs["mask"].data[0, 0], [[1, 2], [8, 10]])


def test_xavier_and_msra_fillers_have_caffe_scale():
    from caffe.fillers import fill
    from caffe.proto import caffe_pb2
    g = torch.Generator().manual_seed(0)
    xavier = fill((64, 32, 3, 3), caffe_pb2.FillerParameter(type="xavier"), g)
    bound = np.sqrt(3.0 / (32 * 9))
    assert float(xavier.abs().max()) <= bound and float(xavier.abs().max()) > 0.95 * bound
    msra = fill((64, 32, 3, 3), caffe_pb2.FillerParameter(type="msra"), g)
    assert float(msra.std()) == pytest.approx(np.sqrt(2.0 / (32 * 9)), rel=0.05)
    fan_out = fill((64, 32, 3, 3), caffe_pb2.FillerParameter(type="msra", variance_norm=1), g)
    assert float(fan_out.std()) == pytest.approx(np.sqrt(2.0 / (64 * 9)), rel=0.05)


def test_label_outside_the_classes_is_an_error_naming_the_layer():
    scores = RNG.normal(size=(2, 3)).astype(np.float32)
    with pytest.raises(caffe.NetError) as exc:
        _run('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "l" top: "loss" }',
             {"s": scores, "l": np.array([0, 3], np.float32)}, phase=caffe.TRAIN)
    assert "'loss'" in str(exc.value) and "label 3" in str(exc.value)


def test_train_batchnorm_runs_under_bfloat16_autocast_and_keeps_float32_statistics():
    x = RNG.normal(size=(4, 3, 5, 5)).astype(np.float32)
    layers = ('layer { name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param { '
              'num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }'
              'layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" }'
              'layer { name: "s" type: "Scale" bottom: "c" top: "c" scale_param { bias_term: true } }')
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net = _run(layers, {"x": x}, phase=caffe.TRAIN)
    assert net.params["bn"][0].data.dtype == np.float32
    assert float(net.params["bn"][2].data[0]) == pytest.approx(1.0)
    assert np.isfinite(net.blobs["c"].data).all()
