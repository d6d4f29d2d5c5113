"""Ctrl-C and tracebacks in the command-line tools. While ``import caffe`` loads PyTorch (the first
seconds of every tool), Ctrl-C prints one line instead of a traceback of the import machinery;
once the package is loaded the tools' runner (caffe.tools.cli_util) handles it. ``SSE_TRACEBACK=1``
shows the traces in both places. Importing this module (the first thing ``caffe/__init__`` does)
starts the quiet period."""
from __future__ import annotations

import os
import sys

TRACEBACK_ENV = "SSE_TRACEBACK"
_previous_hook = None


def traceback_wanted(flag: bool = False) -> bool:
    """``--traceback`` given, or ``SSE_TRACEBACK`` set to anything but '', '0'."""
    return flag or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def quiet_during_import() -> None:
    """Print an uncaught Ctrl-C as 'prog: interrupted' until ``end_of_import``."""
    global _previous_hook
    if _previous_hook is None and sys.excepthook is sys.__excepthook__:
        _previous_hook = sys.excepthook
        sys.excepthook = _hook


def end_of_import() -> None:
    """Give the interpreter its exception hook back."""
    global _previous_hook
    if _previous_hook is not None and sys.excepthook is _hook:
        sys.excepthook = _previous_hook
    _previous_hook = None


def _hook(kind, value, tb) -> None:
    if issubclass(kind, KeyboardInterrupt) and not traceback_wanted():
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
        print(f"{prog}: interrupted", file=sys.stderr)
        return
    (_previous_hook or sys.__excepthook__)(kind, value, tb)


quiet_during_import()
