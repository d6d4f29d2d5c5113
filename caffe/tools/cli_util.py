"""What every command-line tool shares: errors printed on one line without a traceback
(``--traceback`` or the environment variable ``SSE_TRACEBACK=1`` shows it), Ctrl-C ending with exit
code 130 and no traceback, and Caffe's habit of writing ``--flag = value`` with spaces."""
from __future__ import annotations

import sys
import traceback
import warnings
from typing import Callable, Sequence

from ..errors import CaffeError
from ..interrupt import traceback_wanted


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Join ``--solver = path`` / ``--solver= path`` / ``--solver =path`` into ``--solver=path``,
    as gflags accepted in the original shell scripts."""
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        a = items[i]
        if a.startswith("-") and i + 1 < len(items) and items[i + 1] == "=" and i + 2 < len(items):
            out.append(f"{a}={items[i + 2]}")
            i += 3
            continue
        if a.startswith("-") and a.endswith("=") and i + 1 < len(items):
            out.append(a + items[i + 1])
            i += 2
            continue
        if a.startswith("-") and "=" not in a and i + 1 < len(items) and items[i + 1].startswith("=") \
                and len(items[i + 1]) > 1:
            out.append(a + items[i + 1])
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def describe_error(exc: BaseException) -> str:
    """One line for an expected error: an OSError as 'file: reason' (a full disk names the file
    being written), anything else as its message."""
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename if exc.filename is not None else ""
        if exc.filename2 is not None:
            name = f"{name} -> {exc.filename2}"
        return f"{name}: {exc.strerror}" if name else exc.strerror
    return " ".join(str(exc).split("\n")) if str(exc) else type(exc).__name__


def report_error(prog: str, exc: BaseException, show_traceback: bool = False) -> int:
    """Print an expected error as 'prog: error: ...' (Ctrl-C as 'prog: interrupted') on stderr,
    or its traceback if wanted; the exit code: 130 after Ctrl-C, else 1."""
    show = traceback_wanted(show_traceback)
    if show:
        traceback.print_exception(exc)
    if isinstance(exc, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    if not show:
        print(f"{prog}: error: {describe_error(exc)}", file=sys.stderr)
    return 1


def guarded(prog: str, body: Callable[[], int | None], show_traceback: bool = False) -> int:
    """Run ``body()``; a CaffeError, an OSError or Ctrl-C ends in ``report_error``."""
    try:
        return int(body() or 0)
    except (KeyboardInterrupt, CaffeError, OSError) as exc:
        return report_error(prog, exc, show_traceback)


def run_main(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` under ``guarded``, with ``--traceback`` taken out of the arguments."""
    args = normalize_argv(sys.argv[1:] if argv is None else argv)
    show_tb = "--traceback" in args
    args = [a for a in args if a != "--traceback"]
    prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "caffe"
    warnings.showwarning = _one_line_warning
    return guarded(prog, lambda: main(args), show_tb)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr if file is None else file)
