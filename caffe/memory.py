"""Keep freed host memory in the process for reuse, as Caffe keeps its blobs from one iteration
to the next.

A training step allocates and frees the same large tensors every iteration. glibc serves
allocations above its mmap threshold (at most 32 MiB) with fresh mappings and unmaps them on
free, so each iteration page-faults every large activation and gradient in again; memory freed
at the top of the heap is also returned to the kernel beyond a small trim threshold. On the
2-core machines of bench/RESULTS.md that was about a third of an SSE-HoloNet training step.
``keep_freed_memory`` asks glibc to serve large blocks from the heap and not to trim it, so a
block freed in one iteration is reused, already mapped, in the next. The process's resident
memory then stays at its peak instead of shrinking between iterations.

Nets call it when they are built; set ``CAFFE_KEEP_FREED_MEMORY=0`` to leave the C library's
defaults alone. Other C libraries (macOS, musl) are left as they are."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2**31 - 1  # the largest value mallopt's int takes: 2 GiB

_applied: bool | None = None


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # present only in glibc
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory mapped for reuse (once per process); True when in effect.

    Allocations that cannot come from the heap (a thread's arena that cannot grow) still fall
    back to mmap inside glibc, so this never makes an allocation fail."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("CAFFE_KEEP_FREED_MEMORY", "1") == "0":
        return _applied
    libc = _glibc()
    if libc is None:
        return _applied
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _applied = (bool(libc.mallopt(M_MMAP_MAX, 0))
                and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)))
    return _applied
