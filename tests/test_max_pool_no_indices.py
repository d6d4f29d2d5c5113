"""MAX pooling that records nothing for a backward (the inference mode, pycaffe's forward of a
TEST net) runs caffe/csrc's channels-last kernel without indices (caffe.functional
``max_pool2d``; issue 19). It must give PyTorch's ceil-mode values exactly: ties, NaN (which
propagates), -inf, windows clipped by the padding and by ceil rounding."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import caffe.functional as Fn
from caffe import native

GEOMETRIES = [((3, 3), (2, 2), (0, 0)), ((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)),
              ((3, 2), (1, 2), (1, 0))]


@pytest.fixture
def kernels():
    if native.library("max_pool_channels_last") is None:
        pytest.skip(f"caffe/csrc kernels not built: {native.problem('max_pool_channels_last')}")


def _input(shape: tuple[int, ...], kind: str, gen: torch.Generator) -> torch.Tensor:
    if kind == "ties":
        x = torch.randint(-2, 3, shape, generator=gen).float()
    else:
        x = torch.randn(shape, generator=gen)
    if kind == "nan":
        x[torch.rand(shape, generator=gen) < 0.05] = float("nan")
        x[torch.rand(shape, generator=gen) < 0.05] = float("-inf")
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("threads", [1, 2])
def test_values_equal_pytorchs_kernel(kernels, threads: int, monkeypatch) -> None:
    monkeypatch.setattr(Fn, "NATIVE_MAX_POOL_MIN", 0)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    try:
        for shape, (k, s, p), kind in itertools.product(
                [(2, 16, 13, 11), (3, 5, 8, 8), (1, 64, 17, 17), (2, 3, 3, 3)], GEOMETRIES,
                ["random", "ties", "nan"]):
            x = _input(shape, kind, gen)
            ref = F.max_pool2d(x, k, s, p, ceil_mode=True)
            with torch.no_grad():
                got = Fn.max_pool2d(x, k, s, p)
            assert got.stride() == ref.stride()
            assert torch.equal(got.isnan(), ref.isnan()), (shape, k, s, p, kind)
            assert torch.equal(got.nan_to_num(0.5), ref.nan_to_num(0.5)), (shape, k, s, p, kind)
    finally:
        torch.set_num_threads(old)


def test_only_unrecorded_channels_last_float_inputs_large_enough_take_it(kernels) -> None:
    x = torch.randn(1, 16, 64, 64).contiguous(memory_format=torch.channels_last)
    geometry = ((3, 3), (2, 2), (0, 0))
    assert Fn._max_pool_no_indices(x, *geometry) is not None
    assert Fn._max_pool_no_indices(x.contiguous(), *geometry) is None
    assert Fn._max_pool_no_indices(x.double(), *geometry) is None
    assert Fn._max_pool_no_indices(x[:, :, :8, :8], *geometry) is None  # under the minimum
    with torch.no_grad():
        assert Fn.max_pool2d(x, *geometry).grad_fn is None
    leaf = x.clone().requires_grad_()
    y = Fn.max_pool2d(leaf, *geometry)  # recorded: PyTorch's kernel with indices
    y.sum().backward()
    assert leaf.grad is not None and leaf.grad.sum() == y.numel()
