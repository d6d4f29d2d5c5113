"""bench_long_video reports a command's own peak memory, not the benchmark's: a command started by a
large process inherits that process's high-water mark in its ru_maxrss, so the benchmark starts each
command through a small launcher."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import bench_long_video  # noqa: E402


def test_a_command_started_by_a_large_benchmark_reports_its_own_peak():
    held = np.ones(400 * 2**20 // 8)  # the benchmark at 400 MB (a long video's manifest read whole)
    measured = bench_long_video.run_tool(REPO, "calendar", ["calendar", "2026"])  # main takes argv with the program name
    assert held.sum() > 0
    assert measured["launcher"] and measured["peak_rss_mb"] < 150
    assert measured["seconds"] > 0 and measured["cpu_seconds"] >= 0


def test_a_failing_command_is_an_error_with_its_message():
    try:
        bench_long_video.run_tool(REPO, "calendar", ["calendar", "not-a-year"])
    except RuntimeError as exc:
        assert "calendar" in str(exc) and "failed" in str(exc)
    else:
        raise AssertionError("a failing command passed")
