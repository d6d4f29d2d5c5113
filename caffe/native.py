"""Native CPU kernels of this engine (caffe/csrc), compiled on first use and loaded with ctypes.

PyTorch's operators each read and write whole tensors; a few passes of the training step are
memory-bound chains of them (BatchNorm of a channels-last tensor: statistics, normalisation, the
backward's sums and input gradient), which one loop in C does in fewer passes. The C sources use
no PyTorch headers: the C compiler builds them in well under a second, with ``-march=native``
for the machine at hand and OpenMP, which binds to the ``libgomp.so.1`` that PyTorch has already
loaded, so the kernels run on PyTorch's own thread pool.

The library is cached under ``$CAFFE_NATIVE_CACHE`` (default ``~/.cache/sse-toolkit/native``; the
temporary folder where that cannot be made), named by a hash of the source, the compiler, its flags and the CPU's feature flags, and written
atomically, so processes that build it at the same time do not clash. Where there is no C
compiler, no Linux OpenMP runtime in the process, or ``CAFFE_NATIVE_KERNELS=0``, ``library``
returns None and callers take their PyTorch path (the same values, more passes)."""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from .atomic import atomic_path

CSRC = Path(__file__).resolve().parent / "csrc"
FLAGS = ["-O3", "-march=native", "-fopenmp", "-std=c11", "-ffp-contract=off", "-shared",
         "-fPIC"]
LIBS = ["-lm"]
ENV = "CAFFE_NATIVE_KERNELS"

_loaded: dict[str, ctypes.CDLL | None] = {}
_problems: dict[str, str] = {}

_ptr = ctypes.c_void_p  # float32 or float64 data, as ``ptr`` gives it
_i64, _int, _float = ctypes.c_int64, ctypes.c_int, ctypes.c_float
SIGNATURES = {
    "batch_norm_channels_last": {
        "bn_cl_stats": [_ptr, _i64, _i64, _i64, _int, _ptr, _ptr],
        "bn_cl_coefficients": [_ptr, _ptr, _ptr, _ptr, _float, _i64, _ptr],
        "bn_cl_grad_sums": [_ptr, _ptr, _i64, _i64, _i64, _ptr, _ptr, _ptr, _int, _ptr],
        "bn_cl_grad_coefficients": [_ptr, _ptr, _i64, _int, _i64, _ptr],
        "bn_cl_grad_input": [_ptr, _ptr, _i64, _i64, _i64, _ptr, _ptr, _ptr, _ptr, _ptr, _int,
                             _ptr, _i64, _int],
        "bn_cl_affine": [_ptr, _i64, _i64, _i64, _ptr, _ptr, _int, _int, _ptr],
    },
    "max_pool_channels_last": {
        "maxpool_cl_forward": [_ptr] + [_i64] * 12 + [_int, _ptr],
    },
}


def cache_dir() -> Path:
    """Where built kernels are kept: $CAFFE_NATIVE_CACHE, else the user's cache folder."""
    if os.environ.get("CAFFE_NATIVE_CACHE"):
        return Path(os.environ["CAFFE_NATIVE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sse-toolkit" / "native"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return ""


def _openmp_in_process() -> bool:
    """Whether PyTorch's GNU OpenMP runtime is loaded: the library then shares it."""
    try:
        return "libgomp" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _build(name: str) -> Path:
    source = CSRC / f"{name}.c"
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc or gcc, or $CC)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([source.read_text(), cc, version, " ".join(FLAGS + LIBS),
                                    _cpu_flags()]).encode()).hexdigest()[:16]
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: the machine's temporary folder, per user
        folder = Path(tempfile.gettempdir()) / f"sse-toolkit-native-{os.getuid()}"
        folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}-{key}.so"
    if target.exists():
        return target
    with atomic_path(target) as tmp:
        done = subprocess.run([cc, *FLAGS, str(source), "-o", tmp, *LIBS], capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed on {source}: {done.stderr.strip()[-2000:]}")
    return target


def library(name: str) -> ctypes.CDLL | None:
    """The kernels of caffe/csrc/<name>.c, built if needed; None where they cannot be used
    (``problem(name)`` says why)."""
    if name in _loaded:
        return _loaded[name]
    lib = None
    if os.environ.get(ENV, "1") == "0":
        _problems[name] = f"{ENV}=0"
    elif not sys.platform.startswith("linux") or not _openmp_in_process():
        _problems[name] = "PyTorch's GNU OpenMP runtime is not loaded in this process"
    else:
        try:
            lib = ctypes.CDLL(str(_build(name)))
            for fn, argtypes in SIGNATURES[name].items():
                getattr(lib, fn).argtypes = argtypes
                getattr(lib, fn).restype = None
        except (OSError, RuntimeError, AttributeError) as exc:
            _problems[name] = str(exc)
            lib = None
    _loaded[name] = lib
    return lib


def problem(name: str) -> str | None:
    """Why ``library(name)`` is None, after it was asked for."""
    return _problems.get(name)


def ptr(t: torch.Tensor | None, row: int = 0) -> int | None:
    """The address of a tensor's data (of its ``row``-th row along dim 0), as the kernels'
    pointer arguments take it; None (NULL) for None. Plain address arithmetic: cheaper than a
    ctypes cast or a slice, in calls made a hundred times per training step."""
    if t is None:
        return None
    return t.data_ptr() + (row * t.stride(0) * t.element_size() if row else 0)
