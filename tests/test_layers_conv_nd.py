"""N-D Convolution and Deconvolution with Caffe's semantics, against a plain numpy reference
(a 1-D grouped, dilated, strided, padded case, forward and backward), with the channels at
another axis, and the geometry errors that name the layer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import caffe
from caffe.errors import NetError
from caffe.model_io import parse_net_text

STRIDE, PAD, DIL, GROUP, KERNEL = 2, 2, 2, 2, 3


def _net(shape: tuple[int, ...], layer_type: str, param: str) -> caffe.Net:
    dims = " ".join(f"dim: {d}" for d in shape)
    text = (f'layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ {dims} }} }} }}\n'
            f'layer {{ name: "c" type: "{layer_type}" bottom: "x" top: "y" convolution_param {{ '
            f'{param} weight_filler {{ type: "gaussian" std: 0.5 }} '
            f'bias_filler {{ type: "uniform" min: -0.5 max: 0.5 }} }} }}\n')
    return caffe.Net(net_param=parse_net_text(text + "force_backward: true\n"), phase=caffe.TRAIN)


def _taps(length: int, out: int, transposed: bool):
    """(input position, output position, kernel tap) triples of the padded 1-D geometry."""
    for t in range(length if transposed else out):
        for k in range(KERNEL):
            pos = t * STRIDE + k * DIL - PAD
            if transposed and 0 <= pos < out:
                yield t, pos, k
            elif not transposed and 0 <= pos < length:
                yield pos, t, k


def _reference(x, w, b, g, transposed: bool):
    """Forward y and gradients (dx, dw, db) for top gradient g, by explicit sums in float64."""
    n, c, length = x.shape
    out_c, out_len = g.shape[1], g.shape[2]
    cin, cout = c // GROUP, out_c // GROUP
    y = np.zeros(g.shape) + b[None, :, None]
    dx, dw = np.zeros(x.shape), np.zeros(w.shape)
    for grp in range(GROUP):
        for i in range(cin):
            ci = grp * cin + i
            for o in range(cout):
                co = grp * cout + o
                widx = (ci, o) if transposed else (co, i)
                for src, dst, k in _taps(length, out_len, transposed):
                    y[:, co, dst] += w[widx][k] * x[:, ci, src]
                    dx[:, ci, src] += w[widx][k] * g[:, co, dst]
                    dw[widx][k] += (x[:, ci, src] * g[:, co, dst]).sum()
    return y, dx, dw, g.sum(axis=(0, 2))


@pytest.mark.parametrize("layer_type", ["Convolution", "Deconvolution"])
def test_1d_grouped_dilated_convolution_matches_numpy_forward_and_backward(layer_type):
    param = (f"num_output: 6 group: {GROUP} kernel_size: {KERNEL} stride: {STRIDE} pad: {PAD} "
             f"dilation: {DIL}")
    net = _net((2, 4, 11), layer_type, param)
    transposed = layer_type == "Deconvolution"
    out_len = (11 - 1) * STRIDE + DIL * (KERNEL - 1) + 1 - 2 * PAD if transposed else \
        (11 + 2 * PAD - DIL * (KERNEL - 1) - 1) // STRIDE + 1
    assert net.blobs["y"].data.shape == (2, 6, out_len)
    assert net.params["c"][0].data.shape == ((4, 3, KERNEL) if transposed else (6, 2, KERNEL))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 11)).astype(np.float32)
    g = rng.standard_normal((2, 6, out_len)).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.forward()
    net.blobs["y"].diff[...] = g
    net.backward()
    w, b = (net.params["c"][i].data.astype(np.float64) for i in (0, 1))
    y, dx, dw, db = _reference(x.astype(np.float64), w, b, g.astype(np.float64), transposed)
    np.testing.assert_allclose(net.blobs["y"].data, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.blobs["x"].diff, dx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.params["c"][0].diff, dw, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.params["c"][1].diff, db, rtol=1e-4, atol=1e-5)


def test_axes_before_the_channel_axis_are_one_batch():
    """Caffe's ``axis``: (2, 3, C, L) with axis 2 convolves as a batch of 6 over L."""
    net = _net((2, 3, 4, 9), "Convolution", "axis: 2 num_output: 5 kernel_size: 3 stride: 2")
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 9)).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.forward()
    w, b = (torch.from_numpy(net.params["c"][i].data.copy()) for i in (0, 1))
    expected = torch.nn.functional.conv1d(torch.from_numpy(x).reshape(6, 4, 9), w, b, stride=2)
    assert net.blobs["y"].data.shape == (2, 3, 5, 4)
    np.testing.assert_allclose(net.blobs["y"].data, expected.reshape(2, 3, 5, 4).numpy(),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,param,message", [
    ((2, 3, 4, 4, 4), "num_output: 2 kernel_h: 3 kernel_w: 3",
     r"layer 'c' \(Convolution\): kernel_h/_w are only for 2-D convolution; this one has 3"),
    ((2, 3, 8), "num_output: 2 kernel_size: 3 kernel_size: 3",
     r"layer 'c' \(Convolution\): kernel_size has 2 values; give it once or once per spatial axis \(1\)"),
    ((2, 3, 4, 4, 4), "num_output: 2 kernel_size: 3 stride: 1 stride: 2",
     r"layer 'c' \(Convolution\): stride has 2 values; .* \(3\)"),
    ((2, 3, 2, 2, 2, 2), "num_output: 2 kernel_size: 1",
     r"layer 'c' \(Convolution\): supports 1 to 3 spatial axes .* has 4"),
    ((2, 3, 8), "num_output: 2 kernel_size: 3 stride: 0",
     r"layer 'c' \(Convolution\): stride \(0,\) must be positive"),
    ((2, 3, 4, 9, 9), "num_output: 2 kernel_size: 5",
     r"layer 'c' \(Convolution\): kernel 5 does not fit the input depth 4 with pad 0"),
])
def test_nd_geometry_errors_name_the_layer(shape, param, message):
    with pytest.raises(NetError, match=message):
        _net(shape, "Convolution", param)


def test_a_bottom_with_another_number_of_axes_is_an_error_naming_the_layer():
    net = _net((2, 3, 4, 6, 6), "Convolution", "num_output: 2 kernel_size: 3")
    with pytest.raises(NetError, match=r"layer 'c' \(Convolution\): expects bottoms of shape "
                                       r"\(N, 3, D, H, W\) as its weights \(2, 3, 3, 3, 3\), got "
                                       r"\(2, 3, 6, 6\)"):
        net.forward(x=np.ones((2, 3, 6, 6), np.float32))
