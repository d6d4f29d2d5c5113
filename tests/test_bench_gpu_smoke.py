"""bench/bench_gpu.py has only ever run in its CPU smoke mode here (no GPU was lent): keep that
mode working, so the script is ready when a GPU is, and check it writes nothing without one."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_cpu_smoke_run_prints_a_throughput_row_and_writes_nothing(tmp_path) -> None:
    out = tmp_path / "gpu.md"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_gpu.py"), "--device", "cpu", "--batch", "2",
         "--reps", "1", "--warmup", "1", "--models", "holonet", "--out", str(out)],
        capture_output=True, text=True, check=True, timeout=300)
    rows = [line for line in result.stdout.splitlines() if line.startswith("| SSE-HoloNet | 2 |")]
    assert len(rows) == 1, result.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert all(float(c) > 0 for c in cells[2:7]), rows[0]  # images/s of the five modes
    assert all(float(c) < 0.1 for c in cells[7:9]), rows[0]  # bf16/fp16 deviations of the scores
    assert not out.exists()
