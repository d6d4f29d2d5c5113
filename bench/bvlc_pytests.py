"""Run BVLC Caffe's own Python test suite (``python/caffe/test`` of a BVLC checkout, e.g. commit
9b89154) against this package's ``caffe`` and print how many tests pass.

Run: ``python bench/bvlc_pytests.py /path/to/bvlc/caffe`` (``-k EXPR`` to select, ``-v`` to list
every test). The checkout is only read: the tests run in place (test_draw walks the checkout's
models/ and examples/ prototxts) with pytest's cache off, from a temporary working folder, so the
snapshots test_solver writes land there. BVLC's own ``python/`` folder is kept off ``sys.path``:
``import caffe`` must find this package. The suite needs ``six`` (the bench extra)."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def run(checkout: Path, select: str | None, verbose: bool) -> tuple[int, int, str]:
    """(passed, total, pytest's output) for the suite under ``checkout``."""
    tests = checkout / "python" / "caffe" / "test"
    if not tests.is_dir():
        raise SystemExit(f"{tests} not found: give the root of a BVLC Caffe checkout")
    cmd = [sys.executable, "-m", "pytest", str(tests), "-p", "no:cacheprovider", "-rf",
           "--rootdir", str(tests), "-o", "addopts=", "-W", "ignore::DeprecationWarning"]
    if select:
        cmd += ["-k", select]
    cmd.append("-v" if verbose else "-q")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory(prefix="bvlc_pytests_") as work:
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|errors?|skipped)", output)}
    passed = counts.get("passed", 0)
    total = passed + counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    return passed, total, output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="root of a BVLC Caffe source checkout")
    parser.add_argument("-k", dest="select", help="pytest -k expression")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every test")
    args = parser.parse_args(argv)
    passed, total, output = run(args.checkout.resolve(), args.select, args.verbose)
    print(output.rstrip())
    print(f"BVLC python tests: {passed} of {total} passed")
    return 0 if total and passed == total else 1


if __name__ == "__main__":
    sys.exit(main())
