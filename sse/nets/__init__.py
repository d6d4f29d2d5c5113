"""SSE network generators written with ``caffe.NetSpec``: the HoloNet, DenseNet-121 and ResNet-50
backbones in five forms each (original, 3conv-s+eltwise, 3conv-s+concat, 4conv-c+eltwise,
4conv-c+concat), as train/test/deploy prototxts and solvers (``sse-gen-nets``)."""
from __future__ import annotations

from .common import DataConfig, NetConfigError, input_form
from .variants import BACKBONES, VARIANTS, build_net

__all__ = ["BACKBONES", "VARIANTS", "DataConfig", "NetConfigError", "build_net", "input_form"]
