"""Data layers: ``Data`` (LMDB/LevelDB of Datum), ``ImageData`` (a list file of images) and
``MemoryData`` (arrays handed over from Python).

``Data`` and ``ImageData`` are prefetching layers: each forward returns the next batch, made ahead
in worker processes (``caffe.data.prefetch``), transformed by Caffe's DataTransformer. In TRAIN
phase each process reads its shard of the stream (``caffe.mode.data_shard()``: rank r of w reads
items ``(k*w + r)*B ... + B - 1`` for its batch k); in TEST phase every process reads the whole
stream, as in Caffe where only the root solver tests (unless TEST nets are sharded too: a sharded
``extract_features``). Random draws (rand_skip, shuffle, crop,
mirror) come from the net's generator, so ``caffe.set_random_seed`` makes them reproducible."""
from __future__ import annotations

import numpy as np
import torch

from .. import mode
from ..data.image_list import read_image_list
from ..data.prefetch import Prefetcher
from ..data.sources import BatchSource, DBSource, ImageListSource
from ..data.transformer import DataTransformer, TransformSpec
from ..errors import CaffeError, NetError
from .base import Layer, Shape, register


class _PrefetchingData(Layer):
    """Common part of Data and ImageData: the source, the prefetcher, the two tops."""

    min_bottoms, max_bottoms, min_tops, max_tops = 0, 0, 1, 2

    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        self.register_buffer("_device_probe", torch.empty(0), persistent=False)
        self.source: BatchSource | None = None
        self._prefetcher: Prefetcher | None = None

    def _draw(self, high: int) -> int:
        """A draw in [0, high) from the net's generator (high <= 0: 0)."""
        if high <= 0:
            return 0
        return int(torch.randint(high, (1,), generator=self.generator))

    def _source_args(self, rand_skip: int) -> dict:
        rank, world = mode.data_shard(self.phase)
        return dict(skip=self._draw(rand_skip), rank=rank, world_size=world,
                    seed=self._draw(1 << 62))

    def _transformer(self) -> DataTransformer:
        return DataTransformer(TransformSpec.from_param(self.lp.transform_param, self.phase))

    def _make_source(self) -> BatchSource:
        raise NotImplementedError

    def setup(self, bottom_shapes: list[Shape]) -> None:
        try:
            self.source = self._make_source()
        except CaffeError as exc:
            if str(exc).startswith(f"layer '{self.name}'"):
                raise
            raise type(exc)(f"layer '{self.name}' ({self.type}): {exc}") from exc

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        shapes = [self.source.batch_shape, (self.source.batch_size,)]
        return shapes[:len(self.lp.top)]

    def _prefetch_depth(self) -> int:
        return int(self.lp.data_param.prefetch)

    def forward(self) -> list[torch.Tensor]:
        device = self._device_probe.device
        if self._prefetcher is None or self._prefetcher.device != device:
            start = 0 if self._prefetcher is None else self._prefetcher.index
            self.close()
            self._prefetcher = Prefetcher(self.source, prefetch=self._prefetch_depth(),
                                          device=device, start=start)
        data, labels = self._prefetcher.next()
        return [data, labels][:len(self.lp.top)]

    def close(self) -> None:
        """Stop this layer's prefetching workers (they restart at the next forward)."""
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None


@register("Data")
class Data(_PrefetchingData):
    """Datum records of an LMDB or LevelDB (``data_param``: source, backend, batch_size,
    rand_skip, prefetch); raw or encoded Datum (decoded by OpenCV, BGR, native channels unless
    ``force_color``/``force_gray``)."""

    def _make_source(self) -> BatchSource:
        p = self.lp.data_param
        if not p.source:
            raise self.error("data_param.source is not set")
        if p.batch_size <= 0:
            raise self.error("data_param.batch_size must be positive")
        return DBSource(p.source, int(p.backend), self._transformer(), int(p.batch_size),
                        **self._source_args(int(p.rand_skip)))


@register("ImageData")
class ImageData(_PrefetchingData):
    """Images named by a list file (``image_data_param``: source, root_folder, batch_size,
    new_height/new_width, is_color, shuffle, rand_skip). A missing image is a DataError naming
    the list file line."""

    def _make_source(self) -> BatchSource:
        p = self.lp.image_data_param
        entries = read_image_list(p.source)
        if p.rand_skip and p.rand_skip >= len(entries):
            raise self.error(f"rand_skip {p.rand_skip} is not smaller than the {len(entries)} "
                             "images of the list")
        return ImageListSource(p.source, entries, p.root_folder, self._transformer(),
                               int(p.batch_size), new_height=int(p.new_height),
                               new_width=int(p.new_width), is_color=bool(p.is_color),
                               shuffle=bool(p.shuffle), **self._source_args(int(p.rand_skip)))


@register("MemoryData")
class MemoryData(Layer):
    """Batches cut from arrays given with ``set_input_arrays(data, labels)`` (pycaffe's
    ``net.set_input_arrays``), in order, wrapping around; no transformation (as Caffe's Reset).
    The label top is N at setup and N x 1 x 1 x 1 from the first forward on, as in Caffe."""

    min_bottoms, max_bottoms, min_tops, max_tops = 0, 0, 1, 2

    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        self.register_buffer("_device_probe", torch.empty(0), persistent=False)
        p = lp.memory_data_param
        self.batch_size = int(p.batch_size)
        self.item_shape = (int(p.channels), int(p.height), int(p.width))
        if self.batch_size <= 0 or min(self.item_shape) <= 0:
            raise self.error("memory_data_param needs positive batch_size, channels, height, width")
        self._data: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._pos = 0
        self._label_shape: Shape = (self.batch_size,)

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return [(self.batch_size, *self.item_shape), self._label_shape][:len(self.lp.top)]

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        """N x C x H x W data and N labels, N a multiple of batch_size (float32 as in pycaffe)."""
        data = np.ascontiguousarray(data, dtype=np.float32)
        labels = np.ascontiguousarray(labels, dtype=np.float32).reshape(-1)
        if data.ndim != 4 or tuple(data.shape[1:]) != self.item_shape:
            raise self.error(f"data must be N x {' x '.join(map(str, self.item_shape))}, "
                             f"got {data.shape}")
        if labels.shape[0] != data.shape[0]:
            raise self.error(f"{data.shape[0]} data items but {labels.shape[0]} labels")
        if data.shape[0] == 0 or data.shape[0] % self.batch_size:
            raise self.error(f"the number of items ({data.shape[0]}) must be a positive multiple "
                             f"of batch_size {self.batch_size}")
        self._data, self._labels, self._pos = data, labels, 0

    def forward(self) -> list[torch.Tensor]:
        if self._data is None:
            raise NetError(f"layer '{self.name}' (MemoryData): call set_input_arrays before forward")
        b, pos = self.batch_size, self._pos
        device = self._device_probe.device
        data = torch.from_numpy(self._data[pos:pos + b].copy()).to(device)
        self._label_shape = (b, 1, 1, 1)
        labels = self._labels[pos:pos + b].reshape(self._label_shape)
        labels = torch.from_numpy(labels.copy()).to(device)
        self._pos = (pos + b) % self._data.shape[0]
        return [data, labels][:len(self.lp.top)]
