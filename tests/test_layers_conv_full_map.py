"""A convolution whose kernel covers its whole input runs as a matrix product
(caffe.layers.conv.conv2d); it must give F.conv2d's values and gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from caffe.layers.conv import conv2d


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("stride", [(1, 1), (2, 3)])
def test_full_map_convolution_matches_conv2d(channels_last: bool, with_bias: bool,
                                             stride: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 6, 4, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(7, 5, 6, 4, generator=g)
    b = torch.randn(7, generator=g) if with_bias else None
    tensors = [t.requires_grad_() for t in (x, w, b) if t is not None]
    ours = conv2d(x, w, b, stride, (0, 0), (1, 1), 1)
    grads = torch.autograd.grad(ours.square().sum(), tensors)
    reference = F.conv2d(x, w, b, stride, (0, 0), (1, 1), 1)
    expected = torch.autograd.grad(reference.square().sum(), tensors)
    assert ours.shape == reference.shape == (3, 7, 1, 1)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    for a, e in zip(grads, expected):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)


def test_padded_or_grouped_convolutions_keep_the_convolution_path() -> None:
    x = torch.randn(2, 4, 3, 3)
    w = torch.randn(6, 2, 3, 3)
    torch.testing.assert_close(conv2d(x, w, None, (1, 1), (0, 0), (1, 1), 2),
                               F.conv2d(x, w, None, 1, 0, 1, 2))
    w1 = torch.randn(6, 4, 3, 3)
    torch.testing.assert_close(conv2d(x, w1, None, (1, 1), (1, 1), (1, 1), 1),
                               F.conv2d(x, w1, None, 1, 1, 1, 1))
