"""The layer base class and the registry of layer types by Caffe type name.

A layer, as in Caffe, is built from its LayerParameter and the phase; ``setup`` reads its
parameters, checks its bottoms and creates its blobs (learnable or not); ``reshape`` computes the
top shapes from the bottom shapes; ``forward`` maps bottom tensors to top tensors. Backward is
autograd through ``forward``."""
from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import torch
from torch import nn

from ..errors import NetError, UnknownLayerError
from ..fillers import fill

TRAIN, TEST = 0, 1
Shape = tuple[int, ...]

_REGISTRY: dict[str, type["Layer"]] = {}


def register(*type_names: str) -> Callable[[type["Layer"]], type["Layer"]]:
    """Class decorator: register a layer class under one or more Caffe type names."""
    def deco(cls: type["Layer"]) -> type["Layer"]:
        for name in type_names:
            _REGISTRY[name] = cls
        cls.type = type_names[0]
        return cls
    return deco


def layer_type_list() -> list[str]:
    """The registered layer type names, sorted (pycaffe's ``caffe.layer_type_list``)."""
    return sorted(_REGISTRY)


def create_layer(lp, phase: int) -> "Layer":
    """Instantiate the layer class registered for ``lp.type``."""
    cls = _REGISTRY.get(lp.type)
    if cls is None:
        raise UnknownLayerError(
            f"layer '{lp.name}': unknown layer type '{lp.type}'; known types: "
            + ", ".join(layer_type_list()))
    return cls(lp, phase)


class Layer(nn.Module):
    """Base of all layer types. Subclasses set the bottom/top count limits and override
    ``setup``, ``reshape`` and ``forward``."""

    type: ClassVar[str] = ""
    min_bottoms: ClassVar[int] = 0
    max_bottoms: ClassVar[int | None] = None
    min_tops: ClassVar[int] = 0
    max_tops: ClassVar[int | None] = None
    is_loss: ClassVar[bool] = False
    default_lr_mult: ClassVar[float] = 1.0
    feeds_from_blobs: ClassVar[bool] = False
    # True: forward also receives the current data of the layer's own tops, after the bottoms
    # (a layer that leaves some tops as they are, as Caffe's DummyData with a constant filler).
    reads_own_tops: ClassVar[bool] = False
    generator: torch.Generator | None = None

    def __init__(self, lp, phase: int) -> None:
        super().__init__()
        self.lp = lp
        self.name: str = lp.name
        self.phase = phase
        self.blobs = nn.ParameterList()
        self._check_counts()

    def _check_counts(self) -> None:
        nb, nt = len(self.lp.bottom), len(self.lp.top)
        if nb < self.min_bottoms or (self.max_bottoms is not None and nb > self.max_bottoms):
            raise NetError(self._count_message("bottom", nb, self.min_bottoms, self.max_bottoms))
        if nt < self.min_tops or (self.max_tops is not None and nt > self.max_tops):
            raise NetError(self._count_message("top", nt, self.min_tops, self.max_tops))

    def _count_message(self, what: str, got: int, lo: int, hi: int | None) -> str:
        want = f"{lo}" if hi == lo else f"{lo}..{'any' if hi is None else hi}"
        return f"layer '{self.name}' ({self.type}) takes {want} {what} blob(s), got {got}"

    def error(self, message: str) -> NetError:
        """A NetError that names this layer."""
        return NetError(f"layer '{self.name}' ({self.type}): {message}")

    def add_blob(self, shape: Sequence[int], filler=None, learnable: bool = True) -> nn.Parameter:
        """Append a parameter blob filled by ``filler`` (a FillerParameter; None: zeros)."""
        data = fill(tuple(int(s) for s in shape), filler, self.generator)
        p = nn.Parameter(data, requires_grad=learnable)
        self.blobs.append(p)
        return p

    def setup(self, bottom_shapes: list[Shape]) -> None:
        """Read parameters, check bottoms, create blobs. Default: nothing to do."""

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        """Top shapes for these bottom shapes. Default: one top shaped as bottom 0."""
        return [bottom_shapes[0]]

    def initial_top_data(self) -> list[torch.Tensor | None]:
        """Data of the tops when the net is built (None: zeros). Default: all zeros."""
        return [None] * len(self.lp.top)

    def forward(self, *bottoms: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def allow_force_backward(self, bottom_index: int) -> bool:
        """Caffe's AllowForceBackward: whether ``force_backward`` may backpropagate into this bottom
        (not into a loss layer's labels, bottom 1)."""
        return not (self.is_loss and bottom_index == 1)

    @property
    def is_training(self) -> bool:
        return self.phase == TRAIN

    def canonical_axis(self, axis: int, num_axes: int) -> int:
        """Caffe's CanonicalAxisIndex: negative axes count from the end; out of range is an error."""
        if not -num_axes <= axis < num_axes:
            raise self.error(f"axis {axis} out of range for a {num_axes}-D blob")
        return axis % num_axes
