"""What the command lines of sse.fusion share: errors printed without traceback, warnings on one line."""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable

from sse.fusion.errors import FusionError

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (FusionError, OSError)


def expected_errors() -> tuple[type[BaseException], ...]:
    """FusionError, OSError and, when the engine is importable, caffe's CaffeError."""
    try:
        from caffe.errors import CaffeError
    except ImportError:
        return EXPECTED_ERRORS
    return EXPECTED_ERRORS + (CaffeError,)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback of an error")


def run(parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int | None],
        argv: list[str] | None = None) -> int:
    """Parse ``argv``, run ``body``; bad input prints 'prog: error: message' and returns 1, Ctrl-C
    returns 130 (``--traceback`` or SSE_TRACEBACK=1 shows the trace)."""
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return body(args) or 0
    except (KeyboardInterrupt,) + expected_errors() as e:
        from caffe.tools.cli_util import report_error  # loads the engine: on the error path only
        return report_error(parser.prog, e, args.traceback)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)
