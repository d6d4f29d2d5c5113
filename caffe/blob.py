"""pycaffe's Blob: ``data`` and ``diff`` as numpy arrays.

On the CPU the arrays share memory with the engine's tensors, so assigning into them feeds the net
(``net.blobs['data'].data[...] = x``). On a GPU they are host copies that the net writes back to the
device before its next forward or backward (``HostSync``), as Caffe's SyncedMemory does."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch


class HostSync:
    """Host copies handed out for device tensors; written back on ``flush``."""

    def __init__(self) -> None:
        self._pending: list[tuple[torch.Tensor, np.ndarray]] = []

    def view(self, t: torch.Tensor) -> np.ndarray:
        if t.device.type == "cpu":
            return t.detach().numpy()
        arr = t.detach().cpu().numpy()
        self._pending.append((t, arr))
        return arr

    def flush(self) -> None:
        for t, arr in self._pending:
            with torch.no_grad():
                t.copy_(torch.from_numpy(arr))
        self._pending.clear()


class Blob:
    """A named blob as pycaffe shows it. ``get_data``/``get_diff`` return the current tensors;
    ``set_data`` replaces the data tensor (used by ``reshape``)."""

    def __init__(self, get_data: Callable[[], torch.Tensor], get_diff: Callable[[], torch.Tensor],
                 set_data: Callable[[torch.Tensor], None] | None, sync: HostSync) -> None:
        self._get_data, self._get_diff, self._set_data, self._sync = get_data, get_diff, set_data, sync

    @property
    def data(self) -> np.ndarray:
        return self._sync.view(self._get_data())

    @data.setter
    def data(self, value) -> None:
        self.data[...] = value

    @property
    def diff(self) -> np.ndarray:
        return self._sync.view(self._get_diff())

    @diff.setter
    def diff(self, value) -> None:
        self.diff[...] = value

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._get_data().shape)

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    def _legacy(self, i: int) -> int:
        shape = self.shape
        return shape[i] if len(shape) > i else 1

    @property
    def num(self) -> int:
        return self._legacy(0)

    @property
    def channels(self) -> int:
        return self._legacy(1)

    @property
    def height(self) -> int:
        return self._legacy(2)

    @property
    def width(self) -> int:
        return self._legacy(3)

    def reshape(self, *shape: int) -> None:
        """Give the blob a new shape (contents are not kept), as pycaffe's Blob.reshape."""
        if self._set_data is None:
            raise ValueError("this blob cannot be reshaped")
        old = self._get_data()
        self._set_data(torch.zeros(tuple(int(s) for s in shape), dtype=old.dtype, device=old.device))

    def __repr__(self) -> str:
        return f"Blob(shape={self.shape})"


def param_blob(p: torch.nn.Parameter, sync: HostSync) -> Blob:
    """A parameter as pycaffe's Blob: its data, and its gradient as the diff (zeros until set)."""
    def diff() -> torch.Tensor:
        if p.grad is None:
            p.grad = torch.zeros_like(p.data)
        return p.grad

    def set_data(t: torch.Tensor) -> None:
        p.data = t
        p.grad = None

    return Blob(lambda: p.data, diff, set_data, sync)


class ArrayBlob(Blob):
    """A free-standing blob backed by its own tensors (Python layers' bottoms, tops and blobs)."""

    def __init__(self, shape: tuple[int, ...] = (0,), sync: HostSync | None = None) -> None:
        self.tensor = torch.zeros(shape, dtype=torch.float32)
        self.grad = torch.zeros(shape, dtype=torch.float32)
        super().__init__(lambda: self.tensor, lambda: self.grad, self._replace, sync or HostSync())

    def _replace(self, t: torch.Tensor) -> None:
        self.tensor = t
        self.grad = torch.zeros_like(t)
