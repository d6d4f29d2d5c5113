"""Caffe's protobuf schema (caffe.proto, our own copy with Caffe's field numbers) and the generated
module `caffe_pb2`, as in pycaffe: `from caffe.proto import caffe_pb2`.

caffe_pb2 is imported lazily so that `python -m caffe.proto.regenerate` still runs when the
generated module is missing or stale.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["caffe_pb2"]


def __getattr__(name: str) -> ModuleType:
    if name == "caffe_pb2":
        return importlib.import_module(f"{__name__}.caffe_pb2")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
