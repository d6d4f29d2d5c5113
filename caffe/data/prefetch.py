"""Prefetching: batches made ahead in worker processes, delivered in order.

Caffe prefetches with a thread; here the batches are made in worker processes (PyTorch's
DataLoader machinery over ``torch.multiprocessing``) so that decoding and transforming never hold
the interpreter the net runs in. Workers write batches into a ring of shared-memory slots
allocated once; the net's process copies each batch out (to the device) as it takes it. Batch k goes to worker
``k mod n`` and comes back in order k = 0, 1, 2, ...; since a batch depends only on k (see
``caffe.data.sources``), the stream is the same with 0, 1 or n workers. With 0 workers batches
are made on demand in the calling process (tests, debugging).

The number of workers is a process-wide setting (``set_num_workers``, or the environment
variable ``CAFFE_DATA_WORKERS``); how many batches are kept ready is ``data_param.prefetch``."""
from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import weakref
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DataError
from .sources import BatchSource

_settings: dict[str, int | None] = {"workers": None}


def set_num_workers(n: int | None) -> None:
    """Worker processes per data layer, read when a layer starts prefetching (its first forward);
    0: make batches in the net's process; None: back to the default."""
    if n is not None and n < 0:
        raise ValueError(f"number of data workers must be >= 0, got {n}")
    _settings["workers"] = n


def num_workers() -> int:
    """The current setting: ``set_num_workers``, else ``CAFFE_DATA_WORKERS``, else 1 worker per
    two CPU cores (at least 1, at most 4)."""
    if _settings["workers"] is not None:
        return int(_settings["workers"])
    env = os.environ.get("CAFFE_DATA_WORKERS")
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            raise DataError(f"CAFFE_DATA_WORKERS must be an integer, got {env!r}") from None
    return min(4, max(1, (os.cpu_count() or 2) // 2))


class _Batches(Dataset):
    """Batch k of a source. Without workers it returns fresh tensors. With workers it writes batch
    k into shared-memory slot ``k mod len(slots)`` (allocated once: shared memory is slow to
    create and fault in) and returns k; errors travel back as messages and surface as DataError."""

    def __init__(self, source: BatchSource, slots: int = 0) -> None:
        self.source = source
        self.slots = [(torch.empty(source.batch_shape, dtype=torch.float32).share_memory_(),
                       torch.empty(source.batch_size, dtype=torch.float32).share_memory_())
                      for _ in range(slots)]

    def __getitem__(self, k: int):
        if self.slots:
            data, labels = self.slots[k % len(self.slots)]
        else:
            data = torch.empty(self.source.batch_shape, dtype=torch.float32)
            labels = torch.empty(self.source.batch_size, dtype=torch.float32)
        try:
            self.source.load(k, data.numpy(), labels.numpy())
        except DataError as exc:
            return str(exc)
        return k if self.slots else (data, labels)


class _From(Sampler):
    """k, k+1, k+2, ... forever."""

    def __init__(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start)


class Prefetcher:
    """Batches 0, 1, 2, ... of a source, made ahead by ``workers`` processes; ``next()`` returns
    (data, labels) tensors on ``device``. ``close()`` (or garbage collection) stops the workers."""

    def __init__(self, source: BatchSource, workers: int | None = None, prefetch: int = 4,
                 device: torch.device | str = "cpu", start: int = 0) -> None:
        self.source = source
        self.workers = num_workers() if workers is None else int(workers)
        if source.max_workers is not None:
            self.workers = min(self.workers, source.max_workers)
        self.device = torch.device(device)
        self.index = start
        kwargs = {}
        slots = 0
        if self.workers > 0:
            factor = max(1, math.ceil(max(1, prefetch) / self.workers))
            # batches in flight: factor per worker, plus the one being copied out, plus margin
            slots = factor * self.workers + 2
            # No cv2.setNumThreads in the workers: in a forked child whose parent has already
            # used OpenCV's thread pool, reconfiguring that pool waits forever for its threads.
            kwargs = dict(prefetch_factor=factor, multiprocessing_context=_context())
        self._batches = _Batches(source, slots)
        self._loader = DataLoader(self._batches, batch_size=None, sampler=_From(start),
                                  num_workers=self.workers, **kwargs)
        self._iter = iter(self._loader)
        self._finalizer = weakref.finalize(self, _shutdown, self._iter)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch as (data, labels) tensors on the device, owned by the caller."""
        if self._iter is None:
            raise DataError("the data prefetcher is closed")
        item = next(self._iter)
        self.index += 1
        if isinstance(item, str):
            raise DataError(item)
        if isinstance(item, int):  # a slot of shared memory: copy it out before it is reused
            data, labels = self._batches.slots[item % len(self._batches.slots)]
            if self.device.type == "cpu":
                return data.clone(), labels.clone()
            return data.to(self.device), labels.to(self.device)
        data, labels = item
        return data.to(self.device), labels.to(self.device)

    def close(self) -> None:
        """Stop the worker processes; idempotent."""
        self._finalizer()
        self._iter = None
        self.source.close()


def _shutdown(it) -> None:
    stop = getattr(it, "_shutdown_workers", None)
    if stop is not None:
        stop()


def _context():
    """fork where available (fast start, the source is inherited, not pickled), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")

