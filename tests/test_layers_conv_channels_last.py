"""On the CPU convolutions run channels-last (caffe.layers.conv.conv2d); pycaffe must still see
N x C x H x W blobs with Caffe's values, and writing into a blob view must still feed the net."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import caffe
from caffe.layers.conv import conv2d

NET = """
name: "cl"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 5 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.5 }
                            bias_filler { type: "constant" value: 0.25 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "relu" }
layer { name: "pool" type: "Pooling" bottom: "relu" top: "pool" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
"""


def test_cpu_convolution_gives_channels_last_output_with_conv2d_values() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 7, 7, generator=g)
    w = torch.randn(4, 6, 3, 3, generator=g)
    y = conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 1)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, F.conv2d(x, w, None, 1, 1), rtol=1e-5, atol=1e-5)


def test_one_channel_input_gives_channels_last_output_and_conv2d_gradients() -> None:
    """A gray image (one channel) is laid out channels-last already; the convolution must still
    answer channels-last (so the layers after it run that way), with conv2d's values and input
    gradient."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 12, 10, generator=g).requires_grad_()
    w = torch.randn(8, 1, 7, 7, generator=g).requires_grad_()
    y = conv2d(x, w, None, (2, 2), (3, 3), (1, 1), 1)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    reference = F.conv2d(x, w, None, 2, 3)
    torch.testing.assert_close(y, reference, rtol=1e-5, atol=1e-5)
    got = torch.autograd.grad(y.square().sum(), (x, w))
    want = torch.autograd.grad(reference.square().sum(), (x, w))
    assert got[0].shape == x.shape
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-3)


def test_blob_views_are_nchw_arrays_with_caffe_values(tmp_path) -> None:
    prototxt = tmp_path / "cl.prototxt"
    prototxt.write_text(NET)
    caffe.set_random_seed(3)
    net = caffe.Net(str(prototxt), caffe.TEST)
    x = np.random.default_rng(0).normal(size=(2, 3, 9, 8)).astype(np.float32)
    out = net.forward(data=x)
    w, b = (torch.from_numpy(net.params["conv"][i].data.copy()) for i in range(2))
    conv = F.conv2d(torch.from_numpy(x), w, b, 1, 1)
    assert net.blobs["conv"].data.shape == (2, 5, 9, 8)
    np.testing.assert_allclose(net.blobs["conv"].data, conv.numpy(), rtol=1e-5, atol=1e-5)
    pooled = F.max_pool2d(conv.clamp(min=0), 3, 2, ceil_mode=True).numpy()
    np.testing.assert_allclose(out["pool"], pooled, rtol=1e-5, atol=1e-5)


def test_writing_into_an_inner_blob_view_feeds_the_layers_after_it(tmp_path) -> None:
    prototxt = tmp_path / "cl.prototxt"
    prototxt.write_text(NET)
    net = caffe.Net(str(prototxt), caffe.TEST)
    net.forward(data=np.ones((2, 3, 9, 8), np.float32))
    relu = net.blobs["relu"].data
    relu[...] = 0.0
    relu[1, 4, 6, 5] = 7.0
    out = net.forward(start="pool")["pool"]
    expected = np.zeros((2, 5, 4, 4), np.float32)
    expected[1, 4, 2:4, 2] = 7.0
    np.testing.assert_array_equal(out, expected)
