#!/usr/bin/env python3
"""Entry point of the face pipeline (same as `sse-preprocess` / `python -m sse.faces`).

    python preprocess/preprocess.py INPUT... --out DIR [--label-csv F] [--gray] [--frontalize] [--jobs N]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sse.faces.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
