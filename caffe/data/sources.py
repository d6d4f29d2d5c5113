"""Batch sources: batch k of an endless, sharded stream of transformed items.

Items are numbered by a global index g = 0, 1, 2, ... over the data read sequentially with
wrap-around (record ``g mod N`` of a database, or of the list file's order for epoch ``g // N``).
With ``rand_skip`` the stream starts at a random ``skip`` in [0, rand_skip).

Sharding (several GPUs): rank r of w reads items ``skip + (k*w + r)*B ... + B - 1`` for its
batch k, so the w ranks of batch B together read exactly what one process of batch w*B reads,
batch by batch.

Random transformations draw from a generator seeded by (seed, g): an item's crop and flip depend
only on the seed and its index, never on the worker process, the batch size or the sharding.
``load(k)`` may therefore be called in any process and in any order (forward order is fastest).
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import DataError
from . import db as dbmod
from .datum import datum_pixels, hwc_to_chw, parse_datum, read_image, why_unreadable
from .image_list import ListEntry
from .transformer import DataTransformer

Shape = tuple[int, ...]


class BatchSource:
    """Common part: item numbering, sharding, transformation into a float32 batch."""

    def __init__(self, transformer: DataTransformer, batch_size: int, skip: int = 0,
                 rank: int = 0, world_size: int = 1, seed: int = 0) -> None:
        if batch_size <= 0:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        self.transformer = transformer
        self.batch_size = int(batch_size)
        self.skip, self.rank, self.world_size = int(skip), int(rank), int(world_size)
        self.seed = int(seed)
        self.input_shape: Shape = ()
        self.max_workers: int | None = None  # how many processes may read at once (None: any)

    @property
    def item_shape(self) -> Shape:
        return self.transformer.output_shape(self.input_shape)

    @property
    def batch_shape(self) -> Shape:
        return (self.batch_size, *self.item_shape)

    def num_items(self) -> int | None:
        """How many items the source holds before it wraps around (None: not known cheaply)."""
        return None

    def item_indices(self, k: int) -> range:
        """The global item indices of batch k for this shard."""
        start = self.skip + (k * self.world_size + self.rank) * self.batch_size
        return range(start, start + self.batch_size)

    def _needs_rng(self) -> bool:
        spec = self.transformer.spec
        return spec.mirror or spec.jitters or (bool(spec.crop_size) and spec.phase == 0)

    def load(self, k: int, data: np.ndarray | None = None,
             labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Batch k: (data float32 B x C x H x W, labels float32 B), written into ``data`` and
        ``labels`` when given (e.g. views of shared memory)."""
        if data is None:
            data = np.empty(self.batch_shape, dtype=np.float32)
        if labels is None:
            labels = np.empty(self.batch_size, dtype=np.float32)
        needs_rng = self._needs_rng()
        for j, g in enumerate(self.item_indices(k)):
            pixels, labels[j], where = self.read(g)
            if tuple(pixels.shape) != self.input_shape:
                raise DataError(f"{where}: item of shape {tuple(pixels.shape)} differs from the "
                                f"first item's {self.input_shape}")
            rng = np.random.default_rng([self.seed, g]) if needs_rng else None
            self.transformer.transform(pixels, data[j], rng)
        return data, labels

    def read(self, g: int) -> tuple[np.ndarray, int, str]:
        """Item g: (C x H x W pixels, label, a description naming it for errors)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release open files (a source reopens them when used again)."""


class DBSource(BatchSource):
    """Datum records of an LMDB/LevelDB, in key order with wrap-around.

    A cursor is opened lazily in each process that reads (LMDB and LevelDB handles must not cross
    a fork) and walks forward; the database size is learnt at the first wrap (LMDB knows it at
    once), after which long skips are taken modulo the size."""

    def __init__(self, path: str | os.PathLike, backend: object, transformer: DataTransformer,
                 batch_size: int, **kwargs) -> None:
        super().__init__(transformer, batch_size, **kwargs)
        self.path = os.fspath(path)
        self.backend = dbmod.backend_name(backend)
        if self.backend == dbmod.LEVELDB:
            self.max_workers = 1  # LevelDB locks the database to one process
        self._cursor = None
        self._pid = -1
        self._pos = 0
        self._size: int | None = None
        spec = transformer.spec
        cursor = dbmod.open_cursor(self.path, self.backend)
        try:
            key, value = cursor.key(), cursor.value()
        finally:
            cursor.close()
        first = datum_pixels(parse_datum(value, key), key, spec.force_color, spec.force_gray)
        self.input_shape = tuple(int(d) for d in first.shape)
        self.transformer.check_input(self.input_shape)

    def num_items(self) -> int | None:
        """The record count of an LMDB (LevelDB does not keep one)."""
        cursor = dbmod.open_cursor(self.path, self.backend)
        try:
            size = getattr(cursor, "__len__", None)
            return size() if size is not None else None
        finally:
            cursor.close()

    def _open(self) -> None:
        if self._cursor is None or self._pid != os.getpid():
            self._cursor = dbmod.open_cursor(self.path, self.backend)
            self._pid = os.getpid()
            self._pos = 0
            size = getattr(self._cursor, "__len__", None)
            self._size = size() if size is not None else self._size

    def _seek(self, g: int) -> None:
        cursor = self._cursor
        steps = g - self._pos
        if steps < 0 or (self._size and steps >= self._size):
            if self._size:
                steps %= self._size
            else:
                cursor.seek_to_first()
                self._pos, steps = 0, g
        for _ in range(steps):
            cursor.next()
            self._pos += 1
            if not cursor.valid():
                self._size = self._size or self._pos
                cursor.seek_to_first()
        self._pos = g

    def read(self, g: int) -> tuple[np.ndarray, int, str]:
        self._open()
        self._seek(g)
        key, value = self._cursor.key(), self._cursor.value()
        datum = parse_datum(value, key)
        spec = self.transformer.spec
        pixels = datum_pixels(datum, key, spec.force_color, spec.force_gray)
        return pixels, datum.label, f"{self.path}: record {key.decode(errors='replace')}"

    def close(self) -> None:
        if self._cursor is not None and self._pid == os.getpid():
            self._cursor.close()
        self._cursor = None


class ImageListSource(BatchSource):
    """Images named by a list file (ImageData), read with OpenCV, optionally resized; with
    ``shuffle`` each epoch's order is a permutation seeded by (seed, epoch), as Caffe reshuffles
    at the start and at every wrap-around."""

    def __init__(self, list_file: str | os.PathLike, entries: list[ListEntry], root_folder: str,
                 transformer: DataTransformer, batch_size: int, new_height: int = 0,
                 new_width: int = 0, is_color: bool = True, shuffle: bool = False,
                 **kwargs) -> None:
        super().__init__(transformer, batch_size, **kwargs)
        if (new_height > 0) != (new_width > 0):
            raise DataError("new_height and new_width must be set together")
        self.list_file = os.fspath(list_file)
        self.entries = entries
        self.root_folder = root_folder
        self.new_height, self.new_width = int(new_height), int(new_width)
        self.is_color, self.shuffle = bool(is_color), bool(shuffle)
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None
        pixels, _, _ = self.read(self.skip)
        self.input_shape = tuple(int(d) for d in pixels.shape)
        self.transformer.check_input(self.input_shape)

    def num_items(self) -> int:
        return len(self.entries)

    def entry(self, g: int) -> ListEntry:
        """The list entry of global item g."""
        n = len(self.entries)
        epoch, pos = divmod(g, n)
        if not self.shuffle:
            return self.entries[pos]
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, 1 << 32, epoch]).permutation(n)
            self._perm_epoch = epoch
        return self.entries[int(self._perm[pos])]

    def read(self, g: int) -> tuple[np.ndarray, int, str]:
        e = self.entry(g)
        img = read_image(self.root_folder + e.path, self.new_height, self.new_width, self.is_color)
        where = f"{self.list_file}:{e.line}"
        if img is None:
            raise DataError(f"{where}: {why_unreadable(self.root_folder + e.path)}")
        return hwc_to_chw(img), e.label, where

