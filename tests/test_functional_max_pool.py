"""MAX pooling through the channels-last kernel (caffe.functional.max_pool2d) must give PyTorch's
NCHW values and route gradients to the first maximum of each window, as Caffe does."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from caffe.functional import max_pool2d


def _reference(x: torch.Tensor, kernel, stride, pad) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    y = F.max_pool2d(x, kernel, stride, pad, ceil_mode=True)
    g = torch.arange(y.numel(), dtype=torch.float32).reshape(y.shape)
    y.backward(g)
    return y.detach(), x.grad


@pytest.mark.parametrize("geometry", [((3, 3), (2, 2), (0, 0)), ((2, 2), (2, 2), (0, 0)),
                                      ((3, 3), (1, 1), (1, 1)), ((3, 2), (2, 1), (1, 0))])
def test_values_and_gradients_match_the_nchw_kernel(geometry) -> None:
    kernel, stride, pad = geometry
    x = torch.randn(3, 5, 11, 10, generator=torch.Generator().manual_seed(0))
    expected_y, expected_dx = _reference(x, kernel, stride, pad)
    xg = x.clone().requires_grad_()
    y = max_pool2d(xg, kernel, stride, pad)
    y.backward(torch.arange(y.numel(), dtype=torch.float32).reshape(y.shape))
    assert y.is_contiguous()
    assert torch.equal(y, expected_y)
    assert torch.equal(xg.grad, expected_dx)


def test_ties_route_the_gradient_to_the_first_maximum_only() -> None:
    """After a ReLU whole windows are 0: Caffe gives each window's gradient to its first cell."""
    x = torch.zeros(1, 2, 4, 4, requires_grad=True)
    y = max_pool2d(x, (2, 2), (2, 2), (0, 0))
    y.backward(torch.ones_like(y))
    first = torch.zeros(4, 4)
    first[::2, ::2] = 1.0
    assert torch.equal(x.grad, first.expand(1, 2, 4, 4))


def test_a_channels_last_input_gives_channels_last_output_and_gradient() -> None:
    x = torch.randn(2, 16, 9, 9).contiguous(memory_format=torch.channels_last)
    expected_y, expected_dx = _reference(x.contiguous(), (3, 3), (2, 2), (0, 0))
    xg = x.clone().requires_grad_()
    y = max_pool2d(xg, (3, 3), (2, 2), (0, 0))
    y.backward(torch.arange(y.numel(), dtype=torch.float32).reshape(y.shape))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert xg.grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, expected_y)
    assert torch.equal(xg.grad, expected_dx)
