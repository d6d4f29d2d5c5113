"""Errors and warnings of the fusion and evaluation tools."""
from __future__ import annotations


class FusionError(ValueError):
    """Bad input to fusion or evaluation; the message names the file, line, model or video."""


class FusionWarning(UserWarning):
    """Suspicious but usable input (e.g. a row that is not a probability distribution)."""
