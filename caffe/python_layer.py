"""pycaffe's Python layer interface: subclass ``caffe.Layer`` and implement setup, reshape,
forward and backward on numpy blobs; reference it from a prototxt with
``type: "Python" python_param { module: "m" layer: "Cls" param_str: "..." }``."""
from __future__ import annotations

import importlib

import numpy as np
import torch

from .blob import ArrayBlob, HostSync


class Layer:
    """Base class of user Python layers (pycaffe's ``caffe.Layer``)."""

    def __init__(self, lp=None, phase: int = 0) -> None:
        self.param_str = lp.python_param.param_str if lp is not None else ""
        self.phase = phase
        self.blobs = _BlobVec()
        self.layer_param = lp

    def setup(self, bottom, top) -> None:
        pass

    def reshape(self, bottom, top) -> None:
        pass

    def forward(self, bottom, top) -> None:
        raise NotImplementedError

    def backward(self, top, propagate_down, bottom) -> None:
        pass


class _BlobVec(list):
    """pycaffe's BlobVec: ``add_blob(*shape)`` appends a new zero blob."""

    def add_blob(self, *shape: int) -> None:
        self.append(ArrayBlob(tuple(int(s) for s in shape)))


def instantiate(lp, phase: int) -> Layer:
    """Import ``python_param.module`` and build an instance of ``python_param.layer``."""
    p = lp.python_param
    try:
        module = importlib.import_module(p.module)
    except ImportError as exc:
        from .errors import NetError
        raise NetError(f"layer '{lp.name}' (Python): cannot import module '{p.module}' ({exc}); "
                       "is its folder on PYTHONPATH?") from exc
    cls = getattr(module, p.layer, None)
    if cls is None:
        from .errors import NetError
        raise NetError(f"layer '{lp.name}' (Python): module '{p.module}' has no class '{p.layer}'")
    obj = cls.__new__(cls)
    Layer.__init__(obj, lp, phase)
    return obj


class PythonFunction(torch.autograd.Function):
    """Runs a user layer's numpy forward and backward inside autograd."""

    @staticmethod
    def forward(ctx, runner, *bottoms: torch.Tensor):
        ctx.runner = runner
        tops = runner.run_forward(bottoms)
        return tuple(tops)

    @staticmethod
    def backward(ctx, *top_grads: torch.Tensor):
        bottom_grads = ctx.runner.run_backward(top_grads)
        return (None, *bottom_grads)


class PythonRunner:
    """Holds the numpy blobs of one Python layer and calls its methods."""

    def __init__(self, obj: Layer, n_bottoms: int, n_tops: int) -> None:
        self.obj = obj
        self.sync = HostSync()
        self.bottom = [ArrayBlob() for _ in range(n_bottoms)]
        self.top = [ArrayBlob() for _ in range(n_tops)]

    def load_bottoms(self, bottoms) -> None:
        for blob, x in zip(self.bottom, bottoms):
            blob.tensor = x.detach().to("cpu", torch.float32).contiguous()
            blob.grad = torch.zeros_like(blob.tensor)

    def run_forward(self, bottoms) -> list[torch.Tensor]:
        device = bottoms[0].device if bottoms else torch.device("cpu")
        self.load_bottoms(bottoms)
        self.obj.reshape(self.bottom, self.top)
        self.obj.forward(self.bottom, self.top)
        self.sync.flush()
        return [b.tensor.clone().to(device) for b in self.top]

    def run_backward(self, top_grads) -> list[torch.Tensor | None]:
        for blob, g in zip(self.top, top_grads):
            blob.grad = (torch.zeros_like(blob.tensor) if g is None
                         else g.detach().to("cpu", torch.float32).reshape(blob.tensor.shape).clone())
        for blob in self.bottom:
            blob.grad.zero_()
        self.obj.backward(self.top, [True] * len(self.bottom), self.bottom)
        self.sync.flush()
        return [np_to_tensor(b.grad) for b in self.bottom]


def np_to_tensor(t) -> torch.Tensor:
    return torch.as_tensor(np.asarray(t)) if not isinstance(t, torch.Tensor) else t
