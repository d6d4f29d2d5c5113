"""Waiting for the subprocesses the multi-process tests start."""
from __future__ import annotations

import subprocess

import pytest


def wait_ok(proc: subprocess.Popen, what: str, timeout_s: float) -> tuple[str, str]:
    """(stdout, stderr) of ``proc`` once it has ended with status 0; fails the test, with the end of
    its stderr, when it fails or runs past ``timeout_s`` (then it is killed)."""
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{what} did not finish in {timeout_s} s:\n{(err or '')[-3000:]}")
    assert proc.returncode == 0, f"{what} failed:\n{(err or '')[-3000:]}"
    return out, err
