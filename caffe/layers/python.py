"""The "Python" layer type: a user class with pycaffe's numpy interface, inside autograd."""
from __future__ import annotations

import torch
from torch import nn

from ..blob import param_blob
from ..python_layer import PythonFunction, PythonRunner, instantiate
from .base import Layer, Shape, register


@register("Python")
class Python(Layer):
    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        self.user = instantiate(lp, phase)
        self.runner = PythonRunner(self.user, len(lp.bottom), len(lp.top))
        self._setup_done = False

    def setup(self, bottom_shapes: list[Shape]) -> None:
        for blob, shape in zip(self.runner.bottom, bottom_shapes):
            blob.reshape(*shape)
        if not self._setup_done:
            self.user.setup(self.runner.bottom, self.runner.top)
            self._adopt_user_blobs()
            self._setup_done = True

    def _adopt_user_blobs(self) -> None:
        """The blobs the user's setup added become this layer's parameter blobs, so that
        net.params, caffemodels and the solver see them (as in Caffe); the user keeps Blob views
        of them (``self.blobs[i].data`` / ``.diff``, its backward adds to the diff)."""
        for i, blob in enumerate(self.user.blobs):
            p = nn.Parameter(blob.tensor.detach().clone())
            self.blobs.append(p)
            self.user.blobs[i] = param_blob(p, self.runner.sync)

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        for blob, shape in zip(self.runner.bottom, bottom_shapes):
            if blob.shape != tuple(shape):
                blob.reshape(*shape)
        self.user.reshape(self.runner.bottom, self.runner.top)
        return [b.shape for b in self.runner.top]

    def forward(self, *bottoms: torch.Tensor) -> list[torch.Tensor]:
        return list(PythonFunction.apply(self.runner, *bottoms))
