"""pycaffe's process-level helpers: ``Timer``, ``init_log`` / ``log``, the solver count and rank of
a multi-process run (``solver_count``, ``solver_rank``, their setters, ``set_multiprocess``),
``has_nccl`` and ``NCCL`` (gradient averaging between the solvers of several processes, on
torch.distributed's NCCL backend)."""
from __future__ import annotations

import os
import secrets
import tempfile
import time

import torch
import torch.distributed as dist

from . import mode
from .solvers import glog


class Timer:
    """pycaffe's Timer: ``start()``, ``stop()``, ``ms`` (milliseconds between them, or up to now
    while running); on a GPU it synchronises the device so that the time covers queued work."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._elapsed = 0.0
        self.running = False

    def _sync(self) -> None:
        if mode.mode() == "GPU" and torch.cuda.is_available():
            torch.cuda.synchronize()

    def start(self) -> None:
        self._sync()
        self._start, self.running = time.perf_counter(), True

    def stop(self) -> None:
        if self.running:
            self._sync()
            self._elapsed = time.perf_counter() - self._start
            self.running = False

    @property
    def ms(self) -> float:
        if self.running:
            self._sync()
            return (time.perf_counter() - self._start) * 1e3
        return self._elapsed * 1e3


_GLOG_LEVELS = {0: "I", 1: "W", 2: "E", 3: "F"}
_log_state = {"min_level": 0}


def init_log(level: int = 0, stderr: bool = True) -> None:
    """Start Caffe's log: messages of ``level`` (0 INFO, 1 WARNING, 2 ERROR) and above are written,
    to stderr (``stderr=False``: silenced, as glog without a log directory)."""
    if level not in _GLOG_LEVELS:
        raise ValueError(f"log level must be 0..3 (INFO..FATAL), got {level!r}")
    _log_state["min_level"] = int(level)
    glog.set_enabled(bool(stderr))


def log(message: str) -> None:
    """One INFO line in Caffe's log format (pycaffe's ``caffe.log``)."""
    if _log_state["min_level"] <= 0:
        glog.log("_caffe.cpp:0", str(message))


def solver_count() -> int:
    """How many solvers train together (one per process or GPU)."""
    return mode.data_shard()[1]


def set_solver_count(count: int) -> None:
    if int(count) < 1:
        raise ValueError(f"solver count must be at least 1, got {count}")
    rank, _ = mode.data_shard()
    mode.set_data_shard(min(rank, int(count) - 1), int(count))


def solver_rank() -> int:
    """This process's solver rank (0 is the root that tests and snapshots)."""
    return mode.data_shard()[0]


def set_solver_rank(rank: int) -> None:
    _, count = mode.data_shard()
    if not 0 <= int(rank) < count:
        raise ValueError(f"solver rank must be in 0..{count - 1} (set_solver_count first), got {rank}")
    mode.set_data_shard(int(rank), count)


_multiprocess = {"on": False}


def set_multiprocess(on: bool) -> None:
    """Mark this process as one of several solvers (Caffe's multiprocess flag)."""
    _multiprocess["on"] = bool(on)


def multiprocess() -> bool:
    return _multiprocess["on"]


def has_nccl() -> bool:
    """True when torch.distributed's NCCL backend and a CUDA device are there."""
    return bool(torch.cuda.is_available() and dist.is_available() and dist.is_nccl_available())


class NCCL:
    """pycaffe's NCCL: the solvers of ``solver_count()`` processes (each ``set_solver_rank``-ed, on
    its own GPU) share one ``uid`` from ``NCCL.new_uid()``; ``bcast()`` gives all of them the root's
    parameters, and once added as a callback (``solver.add_callback(nccl)``) the gradients are
    averaged over the processes before every update."""

    def __init__(self, solver, uid: bytes) -> None:
        if not has_nccl():
            raise RuntimeError("NCCL needs CUDA and torch.distributed's NCCL backend")
        self.solver = solver
        if not dist.is_initialized():
            store = os.path.join(tempfile.gettempdir(), f"caffe_nccl_{uid.hex()}")
            dist.init_process_group("nccl", init_method=f"file://{store}", rank=solver_rank(),
                                    world_size=solver_count())
        from .distributed import GradientAllReduce
        self._reduce = GradientAllReduce(solver)

    @staticmethod
    def new_uid() -> bytes:
        """A fresh id shared by the processes of one run (bytes, as pycaffe on Python 3)."""
        return secrets.token_bytes(128)

    def bcast(self) -> None:
        from .distributed import broadcast_parameters
        broadcast_parameters(self.solver.net)

    def on_start(self) -> None:
        """Nothing to do when an iteration starts."""

    def on_gradients_ready(self) -> None:
        self._reduce()
