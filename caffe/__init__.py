"""A drop-in for pycaffe on PyTorch: ``import caffe`` and use Net, SGDSolver, io, NetSpec as before.

Caffe's artefacts (prototxt, caffemodel, binaryproto, solverstate, LMDB/LevelDB of Datum) are the
interface; the computation is PyTorch's, numerically faithful to Caffe."""
from __future__ import annotations

from . import interrupt  # first: Ctrl-C while the rest loads is held back, then one line, no traceback
try:
    from . import io  # noqa: F401
    from .errors import CaffeError, NetError, ParseError, SolverError, UnknownLayerError, WeightsError
    from .layers import layer_type_list
    from .layers.base import TEST, TRAIN
    from .mode import set_device, set_mode_cpu, set_mode_gpu, set_random_seed
    from .net import Net
    from .classifier import Classifier
    from .detector import Detector
    from .net_spec import NetSpec, params, to_proto
    from .proto import caffe_pb2  # noqa: F401
    from .python_layer import Layer
    from .runtime import (NCCL, Timer, has_nccl, init_log, log, set_multiprocess, set_solver_count,
                          set_solver_rank, solver_count, solver_rank)
    from .solver import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver, RMSPropSolver,
                         SGDSolver, get_solver)
finally:
    interrupt.end_of_import()

__version__ = "1.0.0"

__all__ = [
    "Net", "TRAIN", "TEST", "Layer", "io", "layer_type_list", "set_mode_cpu", "set_mode_gpu",
    "set_device", "set_random_seed", "CaffeError", "NetError", "ParseError", "SolverError",
    "UnknownLayerError", "WeightsError",
    "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver", "AdamSolver",
    "get_solver", "NetSpec", "layers", "params", "to_proto", "Classifier", "Detector", "Timer",
    "init_log", "log", "has_nccl", "NCCL", "solver_count", "set_solver_count", "solver_rank",
    "set_solver_rank", "set_multiprocess",
]
