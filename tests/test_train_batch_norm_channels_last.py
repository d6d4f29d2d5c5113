"""BatchNorm of a channels-last CPU tensor that will be differentiated takes
``caffe.functional._ChannelsLastBatchNorm`` where PyTorch's kernels would have their threads share
cache lines (8, 12 or 24 float channels, HoloNet's first blocks, with several threads; issue 19)
and, where caffe/csrc's kernels are built, for every tensor of at least NATIVE_BATCH_NORM_MIN
values. Its outputs, running statistics and gradients must be ``F.batch_norm``'s, in training and
with fixed statistics, with and without the affine blobs, by the C kernels and by the PyTorch
path that stands in for them; everything else keeps PyTorch's kernel."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import caffe
from caffe import native
from caffe.functional import (NATIVE_BATCH_NORM_MIN, NATIVE_BATCH_NORM_RELU_MIN, _channel_sums,
                              _shared_reduction_lines, batch_norm)
from caffe.model_io import parse_net_text

KERNELS = "batch_norm_channels_last"


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
def test_values_statistics_and_gradients_are_pytorch_batch_norms(two_threads, kernels, channels,
                                                                 training, affine) -> None:
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


@pytest.mark.parametrize("relu", [False, True])
def test_the_first_channels_of_a_wider_buffer_normalise_as_their_dense_copy(two_threads, kernels,
                                                                            relu) -> None:
    """A DenseNet block's Concat hands BatchNorm the first C channels of a wider channels-last
    buffer (positions further apart than C values, ``caffe.functional.concat_chain``): read in
    place by the C kernels (copied out dense for PyTorch's), it gives the dense copy's outputs,
    running statistics and gradients, bit for bit."""
    shape, wider = (4, 20, 9, 9), 52
    buffer = channels_last_input((shape[0], wider) + shape[2:], 3)
    g = torch.Generator().manual_seed(4)
    weight, bias = torch.rand(20, generator=g) + 0.5, torch.randn(20, generator=g)
    grad = torch.randn(shape, generator=g).contiguous(memory_format=torch.channels_last)
    results = []
    for x0 in (buffer[:, :20], buffer[:, :20].contiguous(memory_format=torch.channels_last)):
        x = x0.detach().requires_grad_()
        w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
        mean, var = torch.zeros(20), torch.ones(20)
        y = batch_norm(x, mean, var, w, b, True, 1.0, 1e-5, relu)
        assert type(y.grad_fn).__name__ in ("_ChannelsLastBatchNormBackward",
                                            "_ReLUInPlaceBackward")
        results.append((y, mean, var, *torch.autograd.grad(y, [x, w, b], grad)))
    assert results[0][0].data_ptr() != buffer.data_ptr()  # its own output, the buffer untouched
    for a, e in zip(*results):
        assert torch.equal(a, e)


def test_batch_norm_and_scale_layers_in_a_train_net_match_the_nchw_path(two_threads, kernels
                                                                        ) -> None:
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


def test_large_tensors_take_the_c_kernels_on_any_thread_count(one_thread, kernels) -> None:
    x = channels_last_input((2, 64, 128, 128), 5).requires_grad_()
    assert x.numel() >= NATIVE_BATCH_NORM_MIN
    y = batch_norm(x, None, None, None, None, True, 0.1, 1e-5)
    routed = type(y.grad_fn).__name__ == "_ChannelsLastBatchNormBackward"
    assert routed is (kernels == "C kernels")
    small = channels_last_input((2, 64, 8, 8), 5).requires_grad_()
    y = batch_norm(small, None, None, None, None, True, 0.1, 1e-5)
    assert type(y.grad_fn).__name__ != "_ChannelsLastBatchNormBackward"


def test_statistics_far_from_zero_keep_their_precision(two_threads, kernels) -> None:
    """A mean a thousand times the spread: the variance must not cancel away."""
    x0 = channels_last_input((4, 12, 16, 16), 6) * 0.01 + 1000.0
    x = x0.clone().requires_grad_()
    mean, var = torch.zeros(12), torch.ones(12)
    y = batch_norm(x, mean, var, None, None, True, 1.0, 1e-5)
    exact = x0.double()
    want_mean = exact.mean((0, 2, 3))
    want_var = exact.var((0, 2, 3), unbiased=True)
    torch.testing.assert_close(mean.double(), want_mean, rtol=1e-6, atol=0)
    torch.testing.assert_close(var.double(), want_var, rtol=2e-3, atol=0)
    want_y = (exact - want_mean.view(1, -1, 1, 1)) / (exact.var((0, 2, 3), unbiased=False)
                                                       .view(1, -1, 1, 1) + 1e-5).sqrt()
    torch.testing.assert_close(y.double(), want_y, rtol=0, atol=0.05)


def _c_kernels():
    lib = native.library(KERNELS)
    if lib is None:
        pytest.skip(f"caffe/csrc kernels not built: {native.problem(KERNELS)}")
    return lib


@pytest.mark.parametrize("affine", [True, False])
def test_coefficients_are_float_arithmetic_with_a_correctly_rounded_square_root(affine) -> None:
    """bn_cl_coefficients: invstd = 1 / sqrt(var + eps), a = w invstd, b = bias - mean a, each
    step rounded to float once (numpy's float32 arithmetic; its sqrt is correctly rounded, as
    PyTorch's own BatchNorm kernel and Caffe take it), bit for bit; with no weight and bias, 1
    and 0."""
    lib = _c_kernels()
    g = torch.Generator().manual_seed(3)
    c = 37
    mean, var = torch.randn(c, generator=g) * 4, torch.rand(c, generator=g) * 9
    weight, bias = (torch.randn(c, generator=g), torch.randn(c, generator=g)) if affine else (
        None, None)
    coef = torch.empty(5, c)
    eps = 1e-5
    lib.bn_cl_coefficients(native.ptr(mean), native.ptr(var), native.ptr(weight),
                           native.ptr(bias), eps, c, native.ptr(coef))
    m, v = mean.numpy(), var.numpy()
    invstd = np.float32(1) / np.sqrt(v + np.float32(eps))
    a = invstd * weight.numpy() if affine else invstd
    b = bias.numpy() - m * a if affine else -m * a
    for got, want in zip(coef.numpy(), (m, v, invstd, a, b)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("training", [True, False])
def test_backward_coefficients_follow_pytorchs_formula_in_float(training) -> None:
    """bn_cl_grad_coefficients from the sums (sum_dy, dot): k = w invstd; training p = -(invstd^2
    dot / count) k and q = -(sum_dy / count) k - p mean, fixed statistics p = q = 0; dw = dot
    invstd; rounded as the same float operations in that order, bit for bit."""
    lib = _c_kernels()
    g = torch.Generator().manual_seed(4)
    c, count = 21, 4096
    coef = torch.randn(5, c, generator=g)
    coef[2] = torch.rand(c, generator=g) + 0.1  # invstd
    weight = torch.randn(c, generator=g)
    grads = torch.empty(6, c)
    grads[:2] = torch.randn(2, c, generator=g) * 50
    lib.bn_cl_grad_coefficients(native.ptr(coef), native.ptr(weight), count, int(training), c,
                                native.ptr(grads))
    mean, invstd = coef[0].numpy(), coef[2].numpy()
    sum_dy, dot = grads[0].numpy(), grads[1].numpy()
    n = np.float32(count)
    k = invstd * weight.numpy()
    if training:
        p = -(invstd * invstd * dot / n) * k
        q = -(sum_dy / n) * k - p * mean
    else:
        p = q = np.zeros(c, np.float32)
    for got, want in zip(grads[2:].numpy(), (k, p, q, dot * invstd)):
        np.testing.assert_array_equal(got, want)


def _kernel_outputs(lib, x: torch.Tensor, dy: torch.Tensor, v: torch.Tensor, threads: int
                    ) -> list[torch.Tensor]:
    """Every kernel of caffe/csrc/batch_norm_channels_last.c on the (M x C) rows ``x`` and ``dy``
    with per-channel vectors ``v`` (a, b, k, p, q): statistics, normalisation with and without
    the ReLU, backward sums and input gradient with and without its mask (the latter also
    added into a buffer)."""
    ptr = native.ptr
    m, c = x.shape
    out = [torch.empty(2, c)]
    lib.bn_cl_stats(ptr(x), m, c, x.stride(0), threads, ptr(out[0]), ptr(out[0], 1))
    for relu in (0, 1):
        y = torch.empty(m, c)
        lib.bn_cl_affine(ptr(x), m, c, x.stride(0), ptr(v, 0), ptr(v, 1), relu, threads, ptr(y))
        out.append(y)
    for mask in ((None, None), (ptr(v, 0), ptr(v, 1))):
        sums = torch.empty(2, c)
        lib.bn_cl_grad_sums(ptr(dy), ptr(x), m, c, x.stride(0), ptr(v, 2), *mask, threads,
                            ptr(sums))
        out.append(sums)
        for accumulate in (0, 1):
            dx = torch.full((m, c), 0.25)
            lib.bn_cl_grad_input(ptr(dy), ptr(x), m, c, x.stride(0), ptr(v, 2), ptr(v, 3),
                                 ptr(v, 4), *mask, threads, ptr(dx), c, accumulate)
            out.append(dx)
    return out


@pytest.mark.parametrize("channels", [1, 8, 12, 16, 24])
def test_few_channels_give_the_bits_of_the_same_channels_in_a_wider_tensor(two_threads,
                                                                            channels) -> None:
    """Tensors of up to 16 channels take other loops (one vector per row where the CPU has
    AVX-512); every kernel must still give, channel by channel, the bits it gives those
    channels inside a 40-channel tensor, in training's sums as in the elementwise passes."""
    lib = _c_kernels()
    g = torch.Generator().manual_seed(channels)
    m, wide = 3000, 40
    x = torch.randn(m, wide, generator=g) * 3 + 1
    x[5, 0] = float("nan")
    dy = torch.randn(m, wide, generator=g)
    v = torch.randn(5, wide, generator=g)
    whole = _kernel_outputs(lib, x, dy, v, 2)
    few = _kernel_outputs(lib, x[:, :channels], dy[:, :channels].contiguous(),
                          v[:, :channels].contiguous(), 2)
    for a, b in zip(few, whole):
        torch.testing.assert_close(a, b[..., :channels], rtol=0, atol=0, equal_nan=True)


def test_c_kernels_build_where_a_compiler_and_openmp_are_present() -> None:
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here")
    assert native.library(KERNELS) is not None, native.problem(KERNELS)


def test_c_kernels_are_built_once_then_taken_from_the_cache(tmp_path, monkeypatch) -> None:
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here")
    monkeypatch.setenv("CAFFE_NATIVE_CACHE", str(tmp_path))
    first = native._build(KERNELS)
    assert first.parent == tmp_path and first.suffix == ".so"
    stamp = first.stat().st_mtime_ns
    assert native._build(KERNELS) == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary file left


def test_without_a_compiler_or_when_turned_off_callers_are_told_why(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CAFFE_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native, "_problems", {})
    monkeypatch.setenv("CC", "false")
    assert native.library(KERNELS) is None
    assert "false failed on" in native.problem(KERNELS)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("CAFFE_NATIVE_KERNELS", "0")
    assert native.library(KERNELS) is None
    assert native.problem(KERNELS) == "CAFFE_NATIVE_KERNELS=0"


def test_a_cache_folder_that_cannot_be_made_falls_back_to_the_temporary_folder(tmp_path,
                                                                                monkeypatch) -> None:
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CAFFE_NATIVE_CACHE", str(blocker / "native"))
    monkeypatch.setattr(native.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    built = native._build(KERNELS)
    assert built.parent.parent == tmp_path / "tmp" and built.exists()


def test_strided_per_channel_vectors_give_what_their_dense_copies_give(two_threads,
                                                                        kernels) -> None:
    """Weight, bias and running statistics that are strided views (every second value of a
    longer vector) are read as their values, not as the memory after their first one; the
    running buffers are updated in place, in the caller's tensors."""
    x = channels_last_input((4, 16, 64, 64), 8)
    assert x.numel() >= NATIVE_BATCH_NORM_RELU_MIN
    g = torch.Generator().manual_seed(9)
    long = torch.randn(4, 32, generator=g)
    strided = [long[i, ::2] for i in range(4)]
    dense = [t.clone() for t in strided]
    results = []
    for weight, bias, mean, var in (strided, dense):
        var.abs_().add_(0.5)
        weight.requires_grad_()
        for training in (True, False):
            y = batch_norm(x, mean, var, weight, bias, training, 0.1, 1e-5, relu=True)
            results.append(y.detach())
        results += [mean.clone(), var.clone()]
    half = len(results) // 2
    for a, b in zip(results[:half], results[half:]):  # PyTorch's own kernel rounds them apart
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_fixed_statistics_without_running_buffers_are_refused_as_pytorch_refuses_them(
        two_threads, kernels) -> None:
    x = channels_last_input((4, 16, 32, 32), 10).requires_grad_()
    with pytest.raises((RuntimeError, ValueError)):
        batch_norm(x, None, None, None, None, False, 0.1, 1e-5, relu=True)
