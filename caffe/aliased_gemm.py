"""``cblas_sgemm`` whose output overlaps an input, computed in the order the golden build's BLAS does it.

Real Caffe calls ``caffe_cpu_gemm`` (``cblas_sgemm``, row-major, ``beta`` 0) with the output in the
same memory as an input when a layer declared in place changes its blob's shape: a 1x1 Convolution
(forward: input image -> output image; backward: top diff -> bottom diff) and an InnerProduct
(forward: bottom -> top; backward: top diff -> bottom diff). BLAS leaves such calls undefined, so
what Caffe computes is what its BLAS happens to read before it writes. The golden data
(``tests/golden``, ``tests/golden_made``) was made with Debian's OpenBLAS 0.3.21 (``DYNAMIC_ARCH``,
target GENERIC) on an AVX-512 CPU, where it runs its SkylakeX kernels. This module replays that
library's order of reads and writes, tile by tile, on flat buffers (the arithmetic inside a tile is
an ordinary product; only which values a tile reads matters):

* ``cblas_sgemm`` swaps a row-major call into a column-major one: ``m = N``, ``n = M``, ``A`` and
  ``B`` exchanged, ``transa = TransB``, ``transb = TransA`` (``interface/gemm.c``);
* when ``sgemm_small_kernel_permit_skylakex`` allows it (``m n k <= 1e6``; for TN also ``k >= 32``
  and ``m n <= 1200``; for TT ``k >= 4``), one of the small-matrix kernels
  ``sgemm_small_kernel_{nn,nt,tn}_skylakex.c`` runs: it walks C in tiles (blocks of rows ``i`` in
  the outer loop, blocks of columns ``j`` inside), reads the tile's rows of A and columns of B over
  all of ``k`` and only then stores the tile. A later tile therefore reads what earlier tiles
  stored where the memory overlaps. The NN kernel copies the last rows of A (fewer than 9, when
  ``k >= 32``) into a private buffer before it computes them;
* otherwise the level-3 driver (``driver/level3/level3.c``, one thread): C is zero-filled first
  (``beta`` 0), then A is packed in blocks of ``GEMM_P`` rows and ``GEMM_Q`` of ``k``, B in groups of
  ``3 * GEMM_UNROLL_N`` columns, each group multiplied and added into C before the next is packed.
  With more than one OpenBLAS thread (``m n k > 262144``) the real library splits the work across
  threads; this module computes the one-thread order.

``A``, ``B`` and ``C`` are given as (flat tensor, offset) pairs; any of them may be the same tensor.
"""
from __future__ import annotations

import torch

NO_TRANS, TRANS = False, True

# OpenBLAS 0.3.21 param.h, SKYLAKEX, single precision
GEMM_P, GEMM_Q, GEMM_UNROLL_M, GEMM_UNROLL_N = 448, 448, 16, 4
GEMM_R = 18256  # sgemm_r from the 32 MiB buffer (only matters past 18256 columns)


def caffe_cpu_gemm(trans_a: bool, trans_b: bool, M: int, N: int, K: int,
                   A: tuple[torch.Tensor, int], B: tuple[torch.Tensor, int],
                   C: tuple[torch.Tensor, int]) -> None:
    """Caffe's ``caffe_cpu_gemm<float>(TransA, TransB, M, N, K, 1, A, B, 0, C)`` (row-major, ``lda``
    = K or M, ``ldb`` = N or K, ``ldc`` = N), written into C's tensor in place."""
    lda = M if trans_a else K
    ldb = K if trans_b else N
    # cblas row-major -> column-major: C^T (N x M) = op(B)^T op(A)^T
    sgemm_colmajor(trans_b, trans_a, N, M, K, B, ldb, A, lda, C, N)


def sgemm_colmajor(transa: bool, transb: bool, m: int, n: int, k: int,
                   A: tuple[torch.Tensor, int], lda: int, B: tuple[torch.Tensor, int], ldb: int,
                   C: tuple[torch.Tensor, int], ldc: int) -> None:
    """Column-major ``C = op(A) op(B)`` (alpha 1, beta 0) as OpenBLAS 0.3.21 orders it."""
    if m == 0 or n == 0:
        return
    g = _Gemm(transa, transb, m, n, k, A, lda, B, ldb, C, ldc)
    if _small_permit(transa, transb, m, n, k):
        g.small()
    else:
        g.level3()


def _small_permit(transa: bool, transb: bool, m: int, n: int, k: int) -> bool:
    if float(m) * n * k > 100.0 ** 3:
        return False
    if transa:
        if transb:
            return k >= 4
        return not (m * n > 1200 or k < 32)
    return True


def _blocks(start: int, plan: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(begin, end) blocks of consecutive loops ``for (; x < bound; x += step)``; ``step`` 0 means
    blocks of 16 up to ``bound`` (the masked last loop)."""
    out, x = [], start
    for bound, step in plan:
        while x < bound:
            size = 16 if step == 0 else step
            out.append((x, min(x + size, bound)))
            x += size
    return out


class _Gemm:
    def __init__(self, transa, transb, m, n, k, A, lda, B, ldb, C, ldc):
        self.transa, self.transb, self.m, self.n, self.k = transa, transb, m, n, k
        (self.a, self.a_off), (self.b, self.b_off), (self.c, self.c_off) = A, B, C
        self.lda, self.ldb, self.ldc = lda, ldb, ldc

    # ---- element access -------------------------------------------------------------------
    def read_a(self, i0: int, i1: int, k0: int, k1: int) -> torch.Tensor:
        """op(A)[i0:i1, k0:k1], copied out of the memory as it is now."""
        if self.transa:  # A stored k x m: op(A)[i, l] = A[l + i*lda]
            at = self.a_off + k0 + i0 * self.lda
            return self.a.as_strided((i1 - i0, k1 - k0), (self.lda, 1), at).clone()
        at = self.a_off + i0 + k0 * self.lda
        return self.a.as_strided((i1 - i0, k1 - k0), (1, self.lda), at).clone()

    def read_b(self, k0: int, k1: int, j0: int, j1: int) -> torch.Tensor:
        """op(B)[k0:k1, j0:j1], copied out of the memory as it is now."""
        if self.transb:  # B stored n x k: op(B)[l, j] = B[j + l*ldb]
            at = self.b_off + j0 + k0 * self.ldb
            return self.b.as_strided((k1 - k0, j1 - j0), (self.ldb, 1), at).clone()
        at = self.b_off + k0 + j0 * self.ldb
        return self.b.as_strided((k1 - k0, j1 - j0), (1, self.ldb), at).clone()

    def c_view(self, i0: int, i1: int, j0: int, j1: int) -> torch.Tensor:
        at = self.c_off + i0 + j0 * self.ldc
        return self.c.as_strided((i1 - i0, j1 - j0), (1, self.ldc), at)

    @staticmethod
    def product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a.double() @ b.double()).to(a.dtype)

    # ---- small-matrix kernels ---------------------------------------------------------------
    def tile(self, i0, i1, j0, j1, a_rows: torch.Tensor | None = None, a_base: int = 0) -> None:
        a = (self.read_a(i0, i1, 0, self.k) if a_rows is None
             else a_rows[i0 - a_base:i1 - a_base])
        b = self.read_b(0, self.k, j0, j1)
        self.c_view(i0, i1, j0, j1).copy_(self.product(a, b))

    def small(self) -> None:
        m, n, k = self.m, self.n, self.k
        n6, n8, n4, n2 = n - n % 6, n & ~7, n & ~3, n & ~1
        n64, n32 = n & ~63, n & ~31
        m64, m32, m16, m4, m2 = m & ~63, m & ~31, m & ~15, m & ~3, m & ~1
        j_646 = [(n4, 4), (n2, 2), (n, 1)]
        j_6 = [(n6, 6), (n2, 2), (n, 1)]
        j_8 = [(n8, 8), (n4, 4), (n2, 2), (n, 1)]
        j_wide = [(n64, 64), (n32, 32), (n, 0)]
        tiles: list[tuple[int, int, list]] = []  # (i0, i1, j blocks), in the kernel's order

        def rows(i: int, bound: int, step: int, jplan: list) -> int:
            """``for (; i < bound; i += step)`` over blocks of rows, each with its column blocks."""
            while i < bound:
                tiles.append((i, i + step, _blocks(0, jplan)))
                i += step
            return i

        if not self.transa and not self.transb:  # NN
            i = rows(0, m64, 64, j_646)
            i = rows(rows(i, m32, 32, j_6), m16, 16, j_6)
            mm = m - i
            self.run(tiles)
            if not mm:
                return
            if mm > 8 or k < 32:
                self.run([(i, m, _blocks(0, j_6))])
                return
            saved = self.read_a(i, m, 0, k)  # the kernel's mbuf
            rest: list = []
            for i0, i1 in _blocks(i, [(m4, 4), (m2, 2), (m, 1)]):
                rest.append((i0, i1, _blocks(0, j_646)))
            self.run(rest, saved, i)
        elif not self.transa and self.transb:  # NT
            i = rows(0, m64, 64, j_6)
            i = rows(rows(i, m32, 32, j_8), m16, 16, j_8)
            mm = m - i
            if mm >= 12:
                tiles.append((i, m, _blocks(0, j_8)))
            elif mm > 0:
                for i0, i1 in _blocks(i, [(m4, 4), (m2, 2), (m, 1)]):
                    tiles.append((i0, i1, _blocks(0, j_wide)))
            self.run(tiles)
        elif self.transa and not self.transb:  # TN
            for i0, i1 in _blocks(0, [(m4, 4), (m2, 2), (m, 1)]):
                tiles.append((i0, i1, _blocks(0, j_646)))
            self.run(tiles)
        else:
            raise NotImplementedError("the TT small kernel's order is not replayed (Caffe's "
                                      "in-place Convolution and InnerProduct never call it)")

    def run(self, tiles, a_rows: torch.Tensor | None = None, a_base: int = 0) -> None:
        for i0, i1, jblocks in tiles:
            for j0, j1 in jblocks:
                self.tile(i0, i1, j0, j1, a_rows, a_base)

    # ---- level-3 driver, one thread ---------------------------------------------------------
    def level3(self) -> None:
        m, n, k = self.m, self.n, self.k
        self.c_view(0, m, 0, n).zero_()  # beta 0: BETA_OPERATION zero-fills C first
        if k == 0:
            return
        for js in range(0, n, GEMM_R):
            min_j = min(n - js, GEMM_R)
            ls = 0
            while ls < k:
                min_l = k - ls
                if min_l >= GEMM_Q * 2:
                    min_l = GEMM_Q
                elif min_l > GEMM_Q:
                    min_l = ((min_l // 2 + GEMM_UNROLL_M - 1) // GEMM_UNROLL_M) * GEMM_UNROLL_M
                min_i = _split(m, GEMM_P)
                a_pack = self.read_a(0, min_i, ls, ls + min_l)
                packs = []
                jjs = js
                while jjs < js + min_j:
                    min_jj = js + min_j - jjs
                    if min_jj >= 3 * GEMM_UNROLL_N:
                        min_jj = 3 * GEMM_UNROLL_N
                    elif min_jj > GEMM_UNROLL_N:
                        min_jj = GEMM_UNROLL_N
                    b_pack = self.read_b(ls, ls + min_l, jjs, jjs + min_jj)
                    packs.append(b_pack)
                    view = self.c_view(0, min_i, jjs, jjs + min_jj)
                    view.copy_(view + self.product(a_pack, b_pack))
                    jjs += min_jj
                b_all = torch.cat(packs, 1)
                is_ = min_i
                while is_ < m:
                    min_i = _split(m - is_, GEMM_P)
                    a_pack = self.read_a(is_, is_ + min_i, ls, ls + min_l)
                    view = self.c_view(is_, is_ + min_i, js, js + min_j)
                    view.copy_(view + self.product(a_pack, b_all))
                    is_ += min_i
                ls += min_l


def _split(size: int, p: int) -> int:
    if size >= p * 2:
        return p
    if size > p:
        return ((size // 2 + GEMM_UNROLL_M - 1) // GEMM_UNROLL_M) * GEMM_UNROLL_M
    return size
