"""Exceptions of the package: every user-facing failure is one of these, with a message that names
the file, line, layer or blob involved and what was expected."""
from __future__ import annotations


class CaffeError(Exception):
    """Base class of all errors raised by this package for bad input."""


class ParseError(CaffeError):
    """A prototxt or binary protobuf file could not be read (file, line and column where known)."""


class UnknownLayerError(CaffeError):
    """A layer type that no registered layer class implements."""


class NetError(CaffeError):
    """A net definition that cannot be built: missing bottoms, bad shapes, bad parameters."""


class WeightsError(CaffeError):
    """Weights that do not fit the net: shape mismatch, unreadable caffemodel."""


class SolverError(CaffeError):
    """A solver definition or state that cannot be used."""


class DataError(CaffeError):
    """Bad input data: missing database, missing image, inconsistent Datum sizes."""
