"""HDF5Output: writes its two bottoms to an HDF5 file as datasets ``data`` and ``label``."""
from __future__ import annotations

import h5py
import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import DataError
from .base import Layer, Shape, register


def legacy_4d(shape: Shape) -> tuple[int, int, int, int]:
    """A blob's legacy num x channels x height x width (missing axes are 1)."""
    if len(shape) > 4:
        raise ValueError(f"a {len(shape)}-D blob has no legacy 4-D shape")
    return tuple(shape) + (1,) * (4 - len(shape))


@register("HDF5Output")
class HDF5Output(Layer):
    """As Caffe's HDF5OutputLayer: the file ``hdf5_output_param.file_name`` is created (emptied)
    when the net is built; a forward writes bottom 0 as ``data`` and bottom 1 as ``label``, float32,
    in their legacy 4-D shapes (a label of shape (N,) is stored N x 1 x 1 x 1). The file is written
    atomically. A second forward is an error, as in Caffe, where the datasets then exist. No tops,
    no gradient."""

    min_bottoms, max_bottoms, min_tops, max_tops = 2, 2, 0, 0

    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        self.file_name = lp.hdf5_output_param.file_name
        if not self.file_name:
            raise self.error("hdf5_output_param.file_name is not set")
        self._written = False
        self._write({})

    def _write(self, datasets: dict[str, np.ndarray]) -> None:
        try:
            with atomic_path(self.file_name) as tmp, h5py.File(tmp, "w") as f:
                for name, array in datasets.items():
                    f.create_dataset(name, data=array)
        except OSError as exc:
            raise DataError(f"layer '{self.name}' (HDF5Output): cannot write {self.file_name}: "
                            f"{exc}") from None

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        data, label = bottom_shapes
        for s in (data, label):
            if len(s) > 4:
                raise self.error(f"bottoms must have at most 4 axes (legacy shape), got {s}")
        if legacy_4d(data)[0] != legacy_4d(label)[0]:
            raise self.error(f"data and label must have the same batch size, got {data} and {label}")
        return []

    def forward(self, data: torch.Tensor, label: torch.Tensor) -> list[torch.Tensor]:
        if self._written:
            raise self.error(f"{self.file_name} already holds the datasets 'data' and 'label' "
                             "(Caffe's HDF5Output writes once per net; build a new net to write again)")
        arrays = {name: t.detach().cpu().to(torch.float32).numpy().reshape(legacy_4d(tuple(t.shape)))
                  for name, t in (("data", data), ("label", label))}
        self._write(arrays)
        self._written = True
        return []
