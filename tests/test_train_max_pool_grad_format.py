"""MAX pooling of a channels-last input (caffe.functional.max_pool2d and relu_max_pool2d) takes
its gradient into the input's memory format before PyTorch's backward kernel, which otherwise
follows the gradient's format and converts the whole input gradient: an NCHW gradient (the
reshape in front of a full-map convolution gives one) must give the same input gradient, in
channels-last, as a channels-last one and as the NCHW reference."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from caffe.functional import max_pool2d, relu_max_pool2d


def _reference(x: torch.Tensor, g: torch.Tensor, kernel, stride, pad, relu: bool) -> torch.Tensor:
    leaf = x.contiguous().requires_grad_()
    y = F.max_pool2d(torch.relu(leaf) if relu else leaf, kernel, stride, pad, ceil_mode=True)
    y.backward(g.contiguous())
    return leaf.grad


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("geometry", [((3, 3), (2, 2), (0, 0)), ((2, 2), (2, 2), (0, 0))])
def test_an_nchw_gradient_gives_the_reference_gradient_channels_last(relu: bool, geometry) -> None:
    kernel, stride, pad = geometry
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 11, 10, generator=gen).contiguous(memory_format=torch.channels_last)
    a = x.clone().requires_grad_()
    y = relu_max_pool2d(a * 1.0, kernel, stride, pad)[1] if relu else max_pool2d(a, kernel,
                                                                                 stride, pad)
    g = torch.randn(y.shape, generator=gen)
    assert g.is_contiguous() and not g.is_contiguous(memory_format=torch.channels_last)
    y.backward(g)
    assert a.grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a.grad, _reference(x, g, kernel, stride, pad, relu))
