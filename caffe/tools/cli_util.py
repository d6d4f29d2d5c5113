"""What every command-line tool shares: errors printed without a traceback (``--traceback``
shows it), and Caffe's habit of writing ``--flag = value`` with spaces."""
from __future__ import annotations

import sys
import traceback
from typing import Callable, Sequence

from ..errors import CaffeError


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


def run_main(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; a CaffeError (or a missing file) is printed as one line on stderr with
    exit code 1, unless ``--traceback`` is among the arguments."""
    args = normalize_argv(sys.argv[1:] if argv is None else argv)
    show_tb = "--traceback" in args
    args = [a for a in args if a != "--traceback"]
    try:
        return int(main(args) or 0)
    except (CaffeError, FileNotFoundError) as exc:
        if show_tb:
            traceback.print_exc()
        else:
            prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "caffe"
            print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
