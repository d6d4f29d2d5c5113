"""Ctrl-C and tracebacks in the command-line tools. While ``import caffe`` loads PyTorch (the first
seconds of every tool), Ctrl-C is held back and raised once the import is done, so it never lands
inside the import machinery (a KeyboardInterrupt raised in one of its callbacks is printed as
"Exception ignored" and lost, and the tool would run on); uncaught, it prints one line instead of a
traceback. Once the package is loaded the tools' runner (caffe.tools.cli_util) handles Ctrl-C.
``SSE_TRACEBACK=1`` shows the traces in both places. Importing this module (the first thing
``caffe/__init__`` does) starts the quiet period."""
from __future__ import annotations

import os
import signal
import sys
import threading

TRACEBACK_ENV = "SSE_TRACEBACK"
_previous_hook = None
_held_sigint = False
_holding = False


def traceback_wanted(flag: bool = False) -> bool:
    """``--traceback`` given, or ``SSE_TRACEBACK`` set to anything but '', '0'."""
    return flag or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def quiet_during_import() -> None:
    """Hold Ctrl-C back until ``end_of_import`` (only where Python's own handler is in place, in the
    main thread), and print an uncaught Ctrl-C as 'prog: interrupted'."""
    global _previous_hook, _holding
    if _previous_hook is None and sys.excepthook is sys.__excepthook__:
        _previous_hook = sys.excepthook
        sys.excepthook = _hook
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _hold_sigint)
        _holding = True


def end_of_import() -> None:
    """Give Python its Ctrl-C handler back and raise a Ctrl-C held during the import (the hook stays
    for it, so that uncaught it prints one line); else give the interpreter its exception hook back."""
    global _previous_hook, _holding, _held_sigint
    if _holding and signal.getsignal(signal.SIGINT) is _hold_sigint:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _holding = False
    if _held_sigint:
        _held_sigint = False
        raise KeyboardInterrupt
    if _previous_hook is not None and sys.excepthook is _hook:
        sys.excepthook = _previous_hook
    _previous_hook = None


def _hold_sigint(signum, frame) -> None:
    global _held_sigint
    _held_sigint = True


def _hook(kind, value, tb) -> None:
    if issubclass(kind, KeyboardInterrupt) and not traceback_wanted():
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
        print(f"{prog}: interrupted", file=sys.stderr)
        return
    (_previous_hook or sys.__excepthook__)(kind, value, tb)


quiet_during_import()
