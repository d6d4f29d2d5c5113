"""A weight-bound convolution (far more weights than output positions: a batch of one through
SSE-ResNet's 7x7 stride-2 heads) runs as im2col + one matrix product (caffe.layers.conv.conv2d,
issue 19), which must give F.conv2d's values and gradients; other convolutions keep oneDNN."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from caffe.layers import conv
from caffe.layers.conv import PLAIN_GEMM_RATIO, conv2d, im2col_conv2d, weight_bound


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("stride,pad,dilation", [((1, 1), (0, 0), (1, 1)), ((2, 1), (1, 2), (1, 1)),
                                                 ((2, 2), (3, 3), (1, 1)), ((1, 2), (2, 1), (2, 2))])
def test_im2col_gemm_gives_conv2d_values_and_gradients(batch, with_bias, stride, pad, dilation
                                                       ) -> None:
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 6, 11, 9, generator=g)
    w = torch.randn(5, 6, 3, 4, generator=g)
    b = torch.randn(5, generator=g) if with_bias else None
    tensors = [t.requires_grad_() for t in (x, w, b) if t is not None]
    ours = im2col_conv2d(x, w, b, stride, pad, dilation)
    reference = F.conv2d(x, w, b, stride, pad, dilation)
    assert ours.shape == reference.shape
    assert ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    got = torch.autograd.grad(ours.square().sum(), tensors)
    want = torch.autograd.grad(reference.square().sum(), tensors)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)


def test_a_weight_bound_convolution_takes_the_gemm_route(monkeypatch) -> None:
    """(1, 64, 6, 6) through 128 x 64 x 5 x 5, stride 2, pad 2: 204800 weights, 9 positions."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 6, 6, generator=g)
    w = torch.randn(128, 64, 5, 5, generator=g) * 0.05
    b = torch.randn(128, generator=g)
    assert weight_bound(x, w, (2, 2), (2, 2), (1, 1), 1, PLAIN_GEMM_RATIO)
    calls = []

    def spy(*args):
        calls.append(args[0].shape)
        return im2col_conv2d(*args)
    monkeypatch.setattr(conv, "im2col_conv2d", spy)
    y = conv2d(x, w, b, (2, 2), (2, 2), (1, 1), 1)
    assert calls == [x.shape]
    torch.testing.assert_close(y, F.conv2d(x, w, b, 2, 2), rtol=1e-5, atol=1e-5)


def test_small_1x1_grouped_or_batched_convolutions_keep_onednn() -> None:
    x = torch.randn(1, 64, 6, 6)
    assert not weight_bound(x, torch.randn(8, 64, 3, 3), (1, 1), (1, 1), (1, 1), 1,
                            PLAIN_GEMM_RATIO)  # 4608 weights, 36 positions
    assert not weight_bound(x, torch.randn(4096, 64, 1, 1), (2, 2), (0, 0), (1, 1), 1,
                            PLAIN_GEMM_RATIO)  # 1x1: no im2col to save
    assert not weight_bound(x, torch.randn(256, 32, 5, 5), (2, 2), (2, 2), (1, 1), 2,
                            PLAIN_GEMM_RATIO)  # groups
    assert not weight_bound(torch.randn(32, 64, 6, 6), torch.randn(128, 64, 5, 5), (2, 2),
                            (2, 2), (1, 1), 1, PLAIN_GEMM_RATIO)  # 288 positions
    assert not weight_bound(x.double(), torch.randn(128, 64, 5, 5).double(), (2, 2), (2, 2),
                            (1, 1), 1, PLAIN_GEMM_RATIO)  # float32 only


def test_a_channels_last_batch_runs_as_one_matrix_product() -> None:
    """Its im2col columns are not a view of one (N H_o W_o) x K matrix; left 3-D, they went to a
    batched product of one small GEMM per image (SSE-ResNet-50's inference mode at batch 32)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, 11, 9, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(5, 6, 3, 3, generator=g)
    with torch.profiler.profile() as prof:
        ours = im2col_conv2d(x, w, None, (1, 1), (1, 1), (1, 1))
    names = {e.name for e in prof.events()}
    assert "aten::bmm" not in names and names & {"aten::mm", "aten::addmm"}
    torch.testing.assert_close(ours, F.conv2d(x, w, None, 1, 1), rtol=1e-5, atol=1e-5)
