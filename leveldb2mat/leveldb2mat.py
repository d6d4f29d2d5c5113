#!/usr/bin/env python
"""Features dumped by extract_features -> MATLAB .mat, the release's command line:

    python leveldb2mat.py db batch_num batch_size dim out.mat

Run with --help for the options; the work is done by sse.fusion.leveldb2mat."""
import sys
from pathlib import Path

try:
    import sse  # noqa: F401  (installed package)
except ImportError:  # run from a checkout without installing: use the repository's packages
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sse.fusion.leveldb2mat import main

if __name__ == "__main__":
    sys.exit(main())
