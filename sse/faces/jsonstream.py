"""A JSON object with one long array in it, read and written one element at a time.

A manifest (video.py) holds one entry per sampled frame, each with 68 landmarks: about 3 KB of text
and 10 KB of Python objects per frame, 0.3 GB of text for an hour of video. ``scan_object`` reads
such a file through a window of about ``block`` characters and hands out the array's elements one
by one (the rest of the object is returned whole); ``write_object`` writes an object whose array is
any iterable (entries made one at a time) with the bytes ``json.dumps(obj, indent=1)`` gives.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from caffe.atomic import atomic_path

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"
BLOCK = 1 << 20
_LOOKAHEAD = 64  # characters after a value that show it ended (a number is shorter)


class _Window:
    """Characters of a text file seen through a sliding buffer."""

    def __init__(self, f, block: int) -> None:
        self.f, self.block = f, block
        self.buf, self.pos, self.eof = "", 0, False

    def more(self) -> bool:
        """Read another block (dropping what was consumed); False at the end of the file."""
        if self.eof:
            return False
        chunk = self.f.read(self.block)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next character that is not white space ('' at the end)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos] if self.pos < len(self.buf) else ""

    def take(self, allowed: str) -> str:
        char = self.peek()
        if not char or char not in allowed:
            raise ValueError(f"JSON: expected one of {allowed!r} at character {self.pos} of the window, got {char!r}")
        self.pos += 1
        return char

    def value(self) -> Any:
        """The next JSON value (read further while it is cut off by the window's end)."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError:
                if self.more():
                    continue
                raise
            if len(self.buf) - end < _LOOKAHEAD and self.more():  # a number may go on in the next block
                continue
            self.pos = end
            return value


def scan_object(path: str | Path, key: str, block: int = BLOCK) -> Iterator[Any]:
    """Yield the elements of the array ``key`` of the JSON object in ``path``, one at a time; the
    generator's return value (``StopIteration.value``) is the object without ``key``. ValueError
    when the file is not a JSON object (or ``key`` is not an array: then it is returned whole)."""
    rest: dict = {}
    with open(path, encoding="utf-8") as f:
        window = _Window(f, block)
        window.take("{")
        if window.peek() == "}":
            window.pos += 1
            return rest
        while True:
            name = window.value()
            if not isinstance(name, str):
                raise ValueError(f"{path}: JSON object key expected, got {name!r}")
            window.take(":")
            if name == key and window.peek() == "[":
                window.pos += 1
                rest.pop(key, None)
                if window.peek() == "]":
                    window.pos += 1
                else:
                    while True:
                        yield window.value()
                        if window.take(",]") == "]":
                            break
            else:
                rest[name] = window.value()
            if window.take(",}") == "}":
                break
        if window.peek():
            raise ValueError(f"{path}: extra data after the JSON object")
    return rest


def read_object(path: str | Path, key: str, block: int = BLOCK) -> dict:
    """The JSON object in ``path`` without its array ``key`` (its elements are read and dropped)."""
    scan = scan_object(path, key, block)
    while True:
        try:
            next(scan)
        except StopIteration as stop:
            return stop.value


def write_object(path: str | Path, obj: dict, key: str) -> None:
    """Write ``obj`` atomically as ``json.dumps(obj, indent=1) + "\\n"`` would, with ``obj[key]`` any
    iterable of JSON values, encoded and written one element at a time."""
    items: Iterable = obj[key]
    marker = "\u0000streamed\u0000"
    head = json.dumps({**obj, key: marker}, indent=1)
    slot = f"{json.dumps(key)}: {json.dumps(marker)}"
    if head.count(slot) != 1:
        raise ValueError(f"{path}: cannot place the array {key!r} in the JSON text")
    before, after = head.split(slot)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(before + json.dumps(key) + ": ")
        first = True
        for item in items:
            f.write(("[\n  " if first else ",\n  ") + json.dumps(item, indent=1).replace("\n", "\n  "))
            first = False
        f.write("[]" if first else "\n ]")
        f.write(after + "\n")
