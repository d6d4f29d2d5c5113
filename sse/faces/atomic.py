"""Atomic writes of the face pipeline's outputs (JSON, PNG), on caffe.atomic.

A reader (or a resumed run) therefore sees either the old file or the complete new one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from caffe import atomic


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, creating its folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, data)


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=1) + "\n")


def write_png(path: Path, image: np.ndarray) -> None:
    """Encode `image` (gray or BGR uint8) as PNG and write it atomically."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    write_bytes(path, buf.tobytes())
