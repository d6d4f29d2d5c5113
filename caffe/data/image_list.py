"""Image list files as Caffe's ImageData layer and convert_imageset read them: one ``path label``
per line, split at the LAST space (paths may contain spaces)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import DataError


@dataclass(frozen=True)
class ListEntry:
    """One image of a list file, with its 1-based line number for error messages."""

    path: str
    label: int
    line: int


def read_image_list(path: str | os.PathLike) -> list[ListEntry]:
    """The entries of a list file; blank lines are skipped. DataError for a missing file, a line
    without a label, a label that is not an integer, or an empty list."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise DataError(f"image list file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"image list file {path} is not UTF-8 text: {exc}") from None
    entries: list[ListEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, label = line.rpartition(" ")
        if not sep or not name:
            raise DataError(f"{path}:{number}: expected 'path label', got {line!r}")
        try:
            value = int(label)
        except ValueError:
            raise DataError(f"{path}:{number}: label {label!r} is not an integer") from None
        entries.append(ListEntry(name, value, number))
    if not entries:
        raise DataError(f"image list file {path} is empty")
    return entries
