"""pycaffe's batch and HDF5 methods of ``caffe.Net``: ``forward_all``, ``forward_backward_all``,
``set_input_arrays`` (MemoryData), ``save_hdf5`` and ``load_hdf5``. A mixin of ``Net``: they only use
its public pycaffe surface (``blobs``, ``inputs``, ``outputs``, ``forward``, ``backward``, ``layers``)."""
from __future__ import annotations

import os
from itertools import zip_longest
from typing import Iterator, Mapping, Sequence

import h5py
import numpy as np
import torch

from .atomic import atomic_path
from .errors import CaffeTypeError, NetError, WeightsError


class PycaffeNetMethods:
    """What pycaffe's ``pycaffe.py`` and ``_caffe.cpp`` add to a Net beyond forward/backward."""

    def forward_all(self, blobs: Sequence[str] | None = None, **kwargs) -> dict[str, np.ndarray]:
        """Forward every item of the arrays in ``kwargs`` (input name -> N x ... array), one batch at
        a time (the last batch padded with zeros); the outputs and ``blobs`` for all N items."""
        names = list(dict.fromkeys(list(self.outputs) + list(blobs or [])))
        outs: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for batch in self._batch(kwargs):
            result = self.forward(blobs=blobs, **batch)
            for n in names:
                outs[n].extend(result[n].copy())
        return self._unpad(outs, kwargs)

    def forward_backward_all(self, blobs: Sequence[str] | None = None,
                             diffs: Sequence[str] | None = None, **kwargs
                             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``forward_all`` and a backward per batch: ``kwargs`` holds the inputs and the output diffs
        (output name -> N x ... array). Returns (outputs and ``blobs``, input diffs and ``diffs``),
        every value an N-row array (pycaffe leaves some outputs as padded lists, a bug not kept)."""
        out_names = list(dict.fromkeys(list(self.outputs) + list(blobs or [])))
        diff_names = list(dict.fromkeys(list(self.inputs) + list(diffs or [])))
        outs: dict[str, list[np.ndarray]] = {n: [] for n in out_names}
        grads: dict[str, list[np.ndarray]] = {n: [] for n in diff_names}
        forward_batches = self._batch({k: v for k, v in kwargs.items() if k in self.inputs})
        backward_batches = self._batch({k: v for k, v in kwargs.items() if k in self.outputs})
        for fb, bb in zip_longest(forward_batches, backward_batches, fillvalue={}):
            result = self.forward(blobs=blobs, **fb)
            back = self.backward(diffs=diffs, **bb)
            for n in out_names:
                outs[n].extend(result[n].copy())
            for n in diff_names:
                grads[n].extend(back[n].copy())
        return self._unpad(outs, kwargs), self._unpad(grads, kwargs)

    def _batch(self, arrays: Mapping[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Batches of the net's batch size cut from ``arrays``; the last one padded with zeros."""
        if not arrays:
            return
        num = len(next(iter(arrays.values())))
        for name, value in arrays.items():
            if len(value) != num:
                raise NetError(f"'{name}' has {len(value)} items, the other arrays {num}")
        if not self.inputs:
            raise NetError(f"net '{self.name}' has no input blobs to feed batches into")
        size = self.blobs[self.inputs[0]].shape[0]
        for start in range(0, num, size):
            batch = {}
            for name, value in arrays.items():
                chunk = np.asarray(value[start:start + size], dtype=np.float32)
                if len(chunk) < size:
                    pad = np.zeros((size - len(chunk),) + chunk.shape[1:], dtype=np.float32)
                    chunk = np.concatenate([chunk, pad])
                batch[name] = chunk
            yield batch

    @staticmethod
    def _unpad(values: dict[str, list[np.ndarray]], kwargs: Mapping[str, np.ndarray]
               ) -> dict[str, np.ndarray]:
        num = len(next(iter(kwargs.values()))) if kwargs else None
        return {k: np.asarray(v[:num] if num is not None else v) for k, v in values.items()}

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        """Give the first layer, a MemoryData layer, its N x C x H x W ``data`` and N ``labels``."""
        first = self.layers[0] if len(self.layers) else None
        if first is None or first.type != "MemoryData":
            raise NetError(f"net '{self.name}': set_input_arrays may only be called if the first "
                           "layer is a MemoryData layer")
        data, labels = np.asarray(data), np.asarray(labels)
        if data.dtype != np.float32 or labels.dtype != np.float32:
            raise CaffeTypeError("set_input_arrays needs float32 data and labels (as pycaffe)")
        if labels.ndim != 1 and labels.shape[1:] != (1,) * (labels.ndim - 1):
            raise NetError(f"labels must be one value per item, got shape {labels.shape}")
        first.module.set_input_arrays(data, labels)

    def save_hdf5(self, filename: str | os.PathLike) -> None:
        """The weights as Caffe's HDF5 model: a group per layer under /data, a float32 dataset
        per blob named by its index; written atomically."""
        self._sync.flush()
        with atomic_path(filename) as tmp, h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            for layer in self.layers:
                group = data.create_group(layer.name)
                for i, p in enumerate(layer.module.blobs):
                    group.create_dataset(str(i), data=p.detach().cpu().numpy().astype(np.float32))

    def load_hdf5(self, filename: str | os.PathLike) -> None:
        """Copy weights from an HDF5 model by layer name (Caffe's CopyTrainedLayersFromHDF5)."""
        self._sync.flush()
        with h5py.File(filename, "r") as f:
            if "data" not in f:
                raise WeightsError(f"{filename}: no /data group (not a Caffe HDF5 model)")
            data = f["data"]
            for layer in self.layers:
                if layer.name not in data:
                    continue
                group = data[layer.name]
                if len(group) != len(layer.module.blobs):
                    raise WeightsError(f"{filename}: incompatible number of blobs for layer "
                                       f"'{layer.name}': the file has {len(group)}, the net has "
                                       f"{len(layer.module.blobs)}")
                for i, p in enumerate(layer.module.blobs):
                    arr = np.asarray(group[str(i)], dtype=np.float32)
                    if arr.shape != tuple(p.shape):
                        raise WeightsError(f"{filename}: layer '{layer.name}' blob {i} has shape "
                                           f"{arr.shape} in the file, {tuple(p.shape)} in the net")
                    with torch.no_grad():
                        p.copy_(torch.from_numpy(arr))
