"""A Scale with its own per-channel blob (axis 1, the BatchNorm + Scale pattern) runs on the CPU as
an inference batch_norm with mean 0, variance 1 and eps 0 (caffe.layers.normalization, issue 19):
its values must be the broadcast product's (addcmul), bit for bit, and its gradients the
product's; Scales with a second bottom or another axis, and a forward with no backward to follow,
keep the broadcast product."""
from __future__ import annotations

import pytest
import torch

import caffe
from caffe.layers.normalization import channel_affine
from caffe.model_io import parse_net_text


def scale_layer(shape: tuple[int, ...], extra: str = "", bias: bool = True):
    dims = " ".join(f"dim: {d}" for d in shape)
    text = (f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'
            f'layer {{ name: "sc" type: "Scale" bottom: "data" top: "y" scale_param {{ '
            f'bias_term: {str(bias).lower()} {extra} filler {{ type: "gaussian" std: 1 }} '
            f'bias_filler {{ type: "gaussian" std: 1 }} }} }}\n')
    caffe.set_random_seed(0)
    return caffe.Net(net_param=parse_net_text(text), phase=caffe.TRAIN).layer_dict["sc"]


def broadcast_product(layer, x: torch.Tensor) -> torch.Tensor:
    """The Scale's forward before this route: ``bias + x * scale`` (addcmul) or ``x * scale``."""
    scale = layer.expand(layer.blobs[0], x)
    if layer.lp.scale_param.bias_term:
        return torch.addcmul(layer.expand(layer.blobs[layer.bias_index], x), x, scale)
    return x * scale


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 6, 7), (2, 3, 4, 2, 3)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_per_channel_scale_equals_the_broadcast_product(shape, bias, channels_last) -> None:
    if channels_last and len(shape) != 4:
        pytest.skip("channels-last is a 4-D layout")
    layer = scale_layer(shape, bias=bias)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    params = list(layer.blobs)
    for p in params:
        p.grad = None
    (y,) = layer.forward(x)
    assert "BatchNorm" in type(y.grad_fn).__name__  # the fused route was taken
    expected = broadcast_product(layer, x)
    assert torch.equal(y, expected)
    g = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    got = torch.autograd.grad(y, [x] + params, g)
    want = torch.autograd.grad(expected, [x] + params, g)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


def test_scale_by_a_bottom_or_along_another_axis_keeps_the_product() -> None:
    layer = scale_layer((2, 3, 4), "axis: 2 num_axes: 1")
    x = torch.randn(2, 3, 4)
    (y,) = layer.forward(x)
    assert "BatchNorm" not in type(y.grad_fn).__name__
    torch.testing.assert_close(y, broadcast_product(layer, x))


def test_channel_affine_keeps_the_input_dtype() -> None:
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    w = torch.randn(3, dtype=torch.float64)
    assert torch.equal(channel_affine(x, w, None), x * w.view(1, 3, 1))


def test_a_lower_precision_input_keeps_the_product() -> None:
    """Under bf16 autocast a Scale sees a bf16 input and its float32 blob: the broadcast product
    promotes them as before (batch_norm refuses mixed dtypes)."""
    layer = scale_layer((2, 3, 4, 4))
    x = torch.randn(2, 3, 4, 4).bfloat16()
    (y,) = layer.forward(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, broadcast_product(layer, x))


def test_a_forward_without_backward_keeps_the_product() -> None:
    layer = scale_layer((1, 3, 4, 4))
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        (y,) = layer.forward(x)
    assert torch.equal(y, broadcast_product(layer, x))
    for p in layer.blobs:
        p.requires_grad_(False)
    (y,) = layer.forward(x)
    assert y.grad_fn is None
    for p in layer.blobs:
        p.requires_grad_(True)
    (y,) = layer.forward(x)
    assert "BatchNorm" in type(y.grad_fn).__name__
