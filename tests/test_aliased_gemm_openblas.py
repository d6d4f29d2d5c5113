"""caffe/aliased_gemm.py replays OpenBLAS 0.3.21's order of reads and writes for a GEMM whose output
overlaps an input (Caffe's in-place 1x1 Convolution and InnerProduct). Where that very library is
installed (Debian 12's libopenblas0-pthread, on a CPU where it picks its SkylakeX kernels), the
replay is compared with the library itself, called through ctypes exactly as Caffe's
``caffe_cpu_gemm`` calls it, over many shapes; elsewhere those tests skip. Without the library:
hand-checkable cases of the rules (tiles of the small kernels; the level-3 driver zeroing C first)."""
from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import numpy as np
import pytest
import torch

from caffe.aliased_gemm import caffe_cpu_gemm

CANDIDATES = ("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
              "/usr/lib/x86_64-linux-gnu/libopenblas.so.0")


def _openblas():
    for path in CANDIDATES:
        if not Path(path).exists():
            continue
        lib = ctypes.CDLL(path)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        config = lib.openblas_get_config().decode()
        core = lib.openblas_get_corename().decode().lower()
        if "0.3.21" in config and core in ("skylakex", "cooperlake", "sapphirerapids"):
            return lib
    return None


LIB = _openblas()
needs_lib = pytest.mark.skipif(LIB is None, reason="OpenBLAS 0.3.21 with SkylakeX kernels not here")


def real_gemm(ta, tb, M, N, K, a, a_is_c, b, b_is_c, c):
    fp = ctypes.POINTER(ctypes.c_float)
    ptr = lambda arr: ctypes.cast(arr.ctypes.data, fp)
    lda = M if ta else K
    ldb = K if tb else N
    LIB.cblas_sgemm(101, 112 if ta else 111, 112 if tb else 111, M, N, K, ctypes.c_float(1.0),
                    ptr(c if a_is_c else a), lda, ptr(c if b_is_c else b), ldb,
                    ctypes.c_float(0.0), ptr(c), N)


# Caffe's aliased calls: (name, TransA, TransB, M, N, K from (cin, cout, hw / batch), which operand
# shares C's memory)
def calls(rng):
    sizes = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16, 17, 24, 25, 31, 32, 33, 40, 49, 64, 65, 100]
    for _ in range(60):
        cin, cout, hw = (int(v) for v in rng.choice(sizes, 3))
        yield "conv 1x1 forward", False, False, cout, hw, cin, "B"
        yield "conv 1x1 backward", True, False, cin, hw, cout, "B"
        m = int(rng.choice([1, 2, 3, 5, 8, 13, 30]))
        yield "ip forward", False, True, m, cout, cin, "A"
        yield "ip forward transposed", False, False, m, cout, cin, "A"
        yield "ip backward", False, False, m, cin, cout, "A"
        yield "ip backward transposed", False, True, m, cin, cout, "A"


@needs_lib
def test_the_replay_matches_openblas_on_caffes_in_place_calls() -> None:
    rng = np.random.default_rng(5)
    for name, ta, tb, M, N, K, shared in calls(rng):
        other = M * K if shared == "B" else K * N
        size = max(M * N, K * N if shared == "B" else M * K) + 3
        buf = rng.standard_normal(size).astype(np.float32)
        w = rng.standard_normal(other).astype(np.float32)
        expected = buf.copy()
        if shared == "A":
            real_gemm(ta, tb, M, N, K, None, True, w, False, expected)
        else:
            real_gemm(ta, tb, M, N, K, w, False, None, True, expected)
        got, wt = torch.from_numpy(buf.copy()), torch.from_numpy(w)
        a, b = ((got, 0), (wt, 0)) if shared == "A" else ((wt, 0), (got, 0))
        caffe_cpu_gemm(ta, tb, M, N, K, a, b, (got, 0))
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(got.numpy() / scale, expected / scale, rtol=0, atol=1e-5,
                                   err_msg=f"{name} M={M} N={N} K={K}")


def test_a_1x1_conv_that_grows_reads_its_own_output_in_the_second_column_block() -> None:
    """Column-major m = HW = 4, n = C_out = 8, k = C_in = 2: the NN small kernel computes output
    channels 0-5 from the input, stores them over input channels 0-1, then channels 6-7 from
    what is there now."""
    cin, cout, hw = 2, 8, 4
    w = torch.arange(1, cout * cin + 1, dtype=torch.float32) / 10
    x = torch.tensor([1.0, -2.0, 3.0, 0.5, 2.0, 1.0, -1.0, 4.0])
    buf = torch.zeros(cout * hw)
    buf[:cin * hw] = x
    caffe_cpu_gemm(False, False, cout, hw, cin, (w, 0), (buf, 0), (buf, 0))
    W = w.view(cout, cin)
    first = W[:6] @ x.view(cin, hw)
    np.testing.assert_allclose(buf.view(cout, hw)[:6], first, rtol=1e-6)
    np.testing.assert_allclose(buf.view(cout, hw)[6:], W[6:] @ first[:cin], rtol=1e-6)


def test_an_inner_product_in_the_level3_path_zeroes_its_output_first() -> None:
    """TN with k < 32 is refused by the small kernels: C (M x N, row-major) is zero-filled before
    the input is read, so the first M*N inputs count as 0."""
    m, k, n = 3, 10, 4
    w = torch.linspace(-1, 1, n * k)
    x = torch.linspace(0.5, 2.0, m * k)
    buf = x.clone()
    caffe_cpu_gemm(False, True, m, n, k, (buf, 0), (w, 0), (buf, 0))
    zeroed = x.clone()
    zeroed[:m * n] = 0
    np.testing.assert_allclose(buf[:m * n].view(m, n), zeroed.view(m, k) @ w.view(n, k).t(),
                               rtol=1e-6)
