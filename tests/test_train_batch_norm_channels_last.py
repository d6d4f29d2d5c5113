"""BatchNorm of a channels-last CPU tensor whose channel row is not a whole number of cache lines
(8, 12 or 24 float channels, HoloNet's first blocks), with several threads, takes
``caffe.functional._ChannelsLastBatchNorm`` (channel sums as matrix-vector products; PyTorch's
kernel had its threads share cache lines, issue 19). Its outputs, running statistics and gradients
must be ``F.batch_norm``'s, in training and with fixed statistics, with and without the affine
blobs; everything else keeps PyTorch's kernel."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import caffe
from caffe.functional import _channel_sums, _shared_reduction_lines, batch_norm
from caffe.model_io import parse_net_text


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def channels_last_input(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 3 + torch.randn(shape[1], 1, 1, generator=g)
    return x.contiguous(memory_format=torch.channels_last)


def test_route_is_taken_only_where_threads_would_share_lines(two_threads) -> None:
    for channels, shared in ((3, True), (8, True), (12, True), (24, True), (16, False),
                             (32, False), (48, False), (100, False)):
        x = channels_last_input((2, channels, 4, 5), 0)
        assert _shared_reduction_lines(x) is shared, channels
        assert not _shared_reduction_lines(x.contiguous())
    # 8 doubles fill one cache line
    assert not _shared_reduction_lines(channels_last_input((2, 8, 4, 5), 0).double())
    torch.set_num_threads(1)
    assert not _shared_reduction_lines(channels_last_input((2, 12, 4, 5), 0))


@pytest.mark.parametrize("channels", [5, 8, 12, 24])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_values_statistics_and_gradients_are_pytorch_batch_norms(two_threads, channels, training,
                                                                 affine) -> None:
    shape = (3, channels, 9, 7)
    g = torch.Generator().manual_seed(channels)
    x0 = channels_last_input(shape, channels)
    weight = torch.rand(channels, generator=g) + 0.5 if affine else None
    bias = torch.randn(channels, generator=g) if affine else None
    stats = (torch.randn(channels, generator=g), torch.rand(channels, generator=g) + 0.5)
    grad = torch.randn(shape, generator=g).contiguous(memory_format=torch.channels_last)
    results = []
    for fn in (batch_norm, F.batch_norm):
        x = x0.clone().requires_grad_()
        params = [p.clone().requires_grad_() for p in (weight, bias) if p is not None]
        w, b = params if affine else (None, None)
        mean, var = stats[0].clone(), stats[1].clone()
        y = fn(x, mean, var, w, b, training, 0.7, 1e-5)
        grads = torch.autograd.grad(y, [x] + params, grad)
        results.append((y, mean, var, *grads))
    ours, theirs = results
    assert type(ours[0].grad_fn).__name__ == "_ChannelsLastBatchNormBackward"
    assert ours[3].is_contiguous(memory_format=torch.channels_last)
    for a, e in zip(ours, theirs):
        torch.testing.assert_close(a, e, rtol=2e-5, atol=2e-5)


def test_batch_norm_and_scale_layers_in_a_train_net_match_the_nchw_path(two_threads) -> None:
    text = """
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 12 dim: 10 dim: 10 } } }
    layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }
    layer { name: "sc" type: "Scale" bottom: "bn" top: "bn" scale_param { bias_term: true
            filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 } } }
    """
    caffe.set_random_seed(0)
    net = caffe.Net(net_param=parse_net_text(text), phase=caffe.TRAIN)
    bn, sc = net.layer_dict["bn"], net.layer_dict["sc"]
    x0 = channels_last_input((4, 12, 10, 10), 3)
    grad = torch.randn(4, 12, 10, 10, generator=torch.Generator().manual_seed(4))
    results = []
    for x in (x0, x0.contiguous()):
        x = x.clone().requires_grad_()
        for blob in bn.blobs:
            blob.data.zero_()
        weight, bias = sc.blobs[0], sc.blobs[1]
        y = bn.normalize(x, weight, bias)
        got = torch.autograd.grad(y, [x, weight, bias], grad)
        results.append((y, *got, *(blob.detach().clone() for blob in bn.blobs)))
    assert type(results[0][0].grad_fn).__name__ == "_ChannelsLastBatchNormBackward"
    for a, e in zip(*results):
        torch.testing.assert_close(a, e, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("rows, channels", [(4096, 8), (4099, 12), (6, 2000), (1, 5), (768, 24)])
def test_channel_sums_fold_rows_whatever_their_count(rows, channels) -> None:
    x = torch.randn(rows, channels, generator=torch.Generator().manual_seed(rows), dtype=torch.float64)
    torch.testing.assert_close(_channel_sums(x), x.sum(0), rtol=1e-12, atol=1e-12)
