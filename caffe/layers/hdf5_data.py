"""HDF5Data: batches read from the HDF5 files named in a list file, one dataset per top.

As Caffe's HDF5DataLayer: the ``source`` text file names one HDF5 file per line; each top reads
the dataset of the same name, ``batch_size`` rows at a time, in file order and row order, moving
to the next file at the end of one and wrapping around after the last. With ``shuffle`` the file
order is permuted at each pass and the rows of each file when it is loaded. Under several-process
training (``caffe.mode.set_data_shard``) rank r of w keeps rows r*B .. r*B+B-1 of every w*B rows
of that sequence in the TRAIN phase, so the ranks together read what one process with batch w*B
reads; TEST nets (tested by the root alone) read every row, unless TEST nets are sharded too (a
sharded ``extract_features``)."""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch

from ..errors import DataError
from ..mode import data_shard
from .base import Layer, Shape, register


def read_source_list(source: str) -> list[str]:
    """The HDF5 file names of a list file (blank lines skipped). A relative name is taken from
    the current directory as Caffe does, or else from the list file's directory."""
    try:
        lines = Path(source).read_text().splitlines()
    except FileNotFoundError:
        raise DataError(f"HDF5Data: source list file '{source}' not found") from None
    names = []
    for number, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            continue
        if not os.path.isabs(name) and not os.path.exists(name):
            beside = os.path.join(os.path.dirname(source), name)
            if os.path.exists(beside):
                name = beside
        if not os.path.exists(name):
            raise DataError(f"{source}:{number}: HDF5 file '{line.strip()}' not found")
        names.append(name)
    if not names:
        raise DataError(f"HDF5Data: source list file '{source}' names no HDF5 file")
    return names


@register("HDF5Data")
class HDF5Data(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 0, 0, 1, None

    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        p = lp.hdf5_data_param
        if p.batch_size <= 0:
            raise self.error("hdf5_data_param.batch_size must be positive")
        self.batch_size = int(p.batch_size)
        self.shuffle = bool(p.shuffle)
        self.files = read_source_list(p.source)
        # Only the root tests in a several-process run: a TEST net reads the whole stream.
        self.rank, self.world_size = data_shard(phase)
        self.register_buffer("_device_probe", torch.zeros(0), persistent=False)

    def setup(self, bottom_shapes: list[Shape]) -> None:
        self._file_order = np.arange(len(self.files))
        if self.shuffle:
            self._file_order = self._permutation(len(self.files))
        self._file_pos = 0
        self._load(self.files[self._file_order[0]])

    def _permutation(self, n: int) -> np.ndarray:
        return torch.randperm(n, generator=self.generator).numpy()

    def _load(self, path: str) -> None:
        try:
            with h5py.File(path, "r") as f:
                arrays = []
                for name in self.lp.top:
                    if name not in f:
                        raise self.error(f"{path}: no dataset named '{name}' (has: {', '.join(f)})")
                    arrays.append(np.asarray(f[name], dtype=np.float32))
        except OSError as exc:
            raise DataError(f"HDF5Data '{self.name}': cannot read {path}: {exc}") from None
        rows = arrays[0].shape[0]
        for name, a in zip(self.lp.top, arrays):
            if a.ndim < 1 or a.shape[0] != rows:
                raise self.error(f"{path}: dataset '{name}' has {a.shape[0] if a.ndim else 0} rows, "
                                 f"'{self.lp.top[0]}' has {rows}")
        if rows == 0:
            raise self.error(f"{path}: the datasets have no rows")
        if hasattr(self, "_arrays"):
            for name, a, old in zip(self.lp.top, arrays, self._arrays):
                if a.shape[1:] != old.shape[1:]:
                    raise self.error(f"{path}: dataset '{name}' rows are {a.shape[1:]}, earlier "
                                     f"files had {old.shape[1:]}")
        self._arrays = arrays
        self._rows = np.arange(rows)
        if self.shuffle:
            self._rows = self._permutation(rows)
        self._row_pos = 0

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return [(self.batch_size,) + tuple(a.shape[1:]) for a in self._arrays]

    def _next_row(self) -> list[np.ndarray]:
        if self._row_pos == len(self._rows):
            self._file_pos += 1
            if self._file_pos == len(self.files):
                self._file_pos = 0
                if self.shuffle:
                    self._file_order = self._permutation(len(self.files))
            if len(self.files) > 1 or self.shuffle:
                self._load(self.files[self._file_order[self._file_pos]])
            else:
                self._row_pos = 0
        row = self._rows[self._row_pos]
        self._row_pos += 1
        return [a[row] for a in self._arrays]

    def skip_batches(self, count: int) -> None:
        """Advance as if ``count`` batches had been read (resuming a run where it stopped)."""
        for _ in range(count * self.batch_size * self.world_size):
            self._next_row()

    def forward(self) -> list[torch.Tensor]:
        b = self.batch_size
        rows = [self._next_row() for _ in range(b * self.world_size)]
        mine = rows[self.rank * b:(self.rank + 1) * b]
        device = self._device_probe.device
        return [torch.from_numpy(np.stack([r[j] for r in mine])).to(device)
                for j in range(len(self._arrays))]
