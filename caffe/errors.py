"""Exceptions of the package: every user-facing failure is one of these, with a message that names
the file, line, layer or blob involved and what was expected. Each also derives from the built-in
type pycaffe raised for the same mistake (ValueError for a bad definition, value or name of a layer,
KeyError for an unknown blob name, TypeError for an argument of the wrong kind), so code written
for pycaffe that catches those still catches them."""
from __future__ import annotations


class CaffeError(Exception):
    """Base class of all errors raised by this package for bad input."""


class ParseError(CaffeError, ValueError):
    """A prototxt or binary protobuf file could not be read (file, line and column where known)."""


class UnknownLayerError(CaffeError, ValueError):
    """A layer type that no registered layer class implements."""


class NetError(CaffeError, ValueError):
    """A net definition that cannot be built: missing bottoms, bad shapes, bad parameters."""


class WeightsError(CaffeError, ValueError):
    """Weights that do not fit the net: shape mismatch, unreadable caffemodel."""


class SolverError(CaffeError, ValueError):
    """A solver definition or state that cannot be used."""


class DataError(CaffeError, ValueError):
    """Bad input data: missing database, missing image, inconsistent Datum sizes."""


class JobError(CaffeError, RuntimeError):
    """A job of several ranks that cannot train: a rank missing at the rendezvous, a rank that
    ended or failed, ranks given different nets or solvers."""


class BlobNameError(NetError, KeyError):
    """A blob name the net does not have (pycaffe's dict lookup raised KeyError)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CaffeTypeError(CaffeError, TypeError):
    """An argument of the wrong kind (pycaffe's Boost.Python raised a TypeError)."""


class WeightsWarning(UserWarning):
    """Weights that load but leave part of the net as it was: layers absent from the caffemodel."""
