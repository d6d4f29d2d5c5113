"""DummyData: tops filled by fillers, with no source.

As Caffe's DummyDataLayer: a ``constant`` filler (the default, value 0) fills its tops once, when the
net is built, and never again, so values written into such a top (or left there by a layer working in
place on it) stay from one forward to the next; any other filler refills its tops at every forward,
and they hold zeros until the first one. One filler serves every top (each drawn separately), or one
is given per top. Shapes come from ``shape`` (once, or once per top) or from the legacy
``num``/``channels``/``height``/``width`` (each once, or once per top)."""
from __future__ import annotations

import torch

from ..fillers import fill
from ..proto import caffe_pb2
from .base import Layer, Shape, register


@register("DummyData")
class DummyData(Layer):
    min_bottoms, max_bottoms, min_tops, max_tops = 0, 0, 1, None
    reads_own_tops = True

    def __init__(self, lp, phase: int) -> None:
        super().__init__(lp, phase)
        p = lp.dummy_data_param
        n = len(lp.top)
        if len(p.data_filler) not in (0, 1, n):
            raise self.error(f"give 0, 1 or {n} (one per top) data_filler, got {len(p.data_filler)}")
        if len(p.data_filler) == 0:
            self.fillers = [caffe_pb2.FillerParameter(type="constant", value=0)] * n
        elif len(p.data_filler) == 1:
            self.fillers = [p.data_filler[0]] * n
        else:
            self.fillers = list(p.data_filler)
        self.shapes = self._shapes(p, n)

    def _shapes(self, p, n: int) -> list[Shape]:
        legacy = {f: list(getattr(p, f)) for f in ("num", "channels", "height", "width")}
        if any(legacy.values()):
            if len(p.shape):
                raise self.error("give either shape or the legacy num/channels/height/width, not both")
            for field, values in legacy.items():
                if len(values) not in (1, n):
                    raise self.error(f"give '{field}' once or once per top ({n}), got {len(values)}")
            return [tuple(int(legacy[f][0 if len(legacy[f]) == 1 else i])
                          for f in ("num", "channels", "height", "width")) for i in range(n)]
        if len(p.shape) not in (1, n):
            raise self.error(f"give 'shape' once or once per top ({n}), got {len(p.shape)}")
        return [tuple(int(d) for d in p.shape[0 if len(p.shape) == 1 else i].dim) for i in range(n)]

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return list(self.shapes)

    def _refills(self, i: int) -> bool:
        return self.fillers[i].type != "constant"

    def initial_top_data(self) -> list[torch.Tensor | None]:
        """The constant tops' values at construction (the refilled ones start as zeros)."""
        return [None if self._refills(i) else fill(s, self.fillers[i], self.generator)
                for i, s in enumerate(self.shapes)]

    def forward(self, *tops: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, current in enumerate(tops):
            if self._refills(i):
                data = fill(self.shapes[i], self.fillers[i], self.generator)
                out.append(data.to(current.device))
            else:
                out.append(current.detach())
        return out
