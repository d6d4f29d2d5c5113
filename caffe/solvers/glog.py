"""Caffe's log lines (glog format) on stderr, so the usual Caffe log parsers and plots work:

    I1128 04:27:06.123456 12345 solver.cpp:239] Iteration 10 (...), loss = 0.5

``log(source, message)`` writes one INFO line naming Caffe's source file for that message; while
a tqdm progress bar is shown, lines go through ``tqdm.write`` so the bar stays at the bottom."""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, TextIO

_state: dict = {"stream": None, "enabled": True, "writer": None}


def set_stream(stream: TextIO | None) -> None:
    """Send log lines to ``stream`` (None: the current sys.stderr)."""
    _state["stream"] = stream


def set_enabled(enabled: bool) -> None:
    """Silence (False) or restore (True) the log, e.g. on the non-root ranks of a parallel run."""
    _state["enabled"] = bool(enabled)


def set_writer(writer: Callable[[str], None] | None) -> None:
    """Route finished lines through ``writer`` (a progress bar's write), or back to the stream."""
    _state["writer"] = writer


def format_line(source: str, message: str, severity: str = "I", when: float | None = None) -> str:
    """One glog line: severity, MMDD, time with microseconds, thread id, source, message."""
    when = time.time() if when is None else when
    t = time.localtime(when)
    micros = int((when - int(when)) * 1e6)
    tid = threading.get_native_id() if hasattr(threading, "get_native_id") else os.getpid()
    return (f"{severity}{t.tm_mon:02d}{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            f".{micros:06d} {tid:5d} {source}] {message}")


def log(source: str, message: str, severity: str = "I") -> None:
    """Write a glog line (INFO by default; "W" warning, "E" error)."""
    if not _state["enabled"]:
        return
    line = format_line(source, message, severity)
    if _state["writer"] is not None:
        _state["writer"](line)
        return
    stream = _state["stream"] or sys.stderr
    stream.write(line + "\n")
    stream.flush()


def fmt(x: float) -> str:
    """A number as C++'s ostream prints a float: 6 significant digits."""
    return f"{float(x):.6g}"
