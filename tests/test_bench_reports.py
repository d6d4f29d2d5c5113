"""The reports of bench/bench_demo.py and bench/bench_engine.py are rendered from their measurements
only (no figure typed into the scripts), and can be rendered again from the JSON a run leaves
(``--from-json``) without measuring anything."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import bench_demo  # noqa: E402

TRAIN_LOG = """\
I1205 01:27:31.801882   968 solver.cpp:239] Iteration 0 (0 iter/s, 3.71617s/10 iters), loss = 11.0843
I1205 01:27:31.802224   968 sgd_solver.cpp:112] Iteration 0, lr = 0.01
I1205 01:28:10.763344   968 solver.cpp:347] Iteration 200, Testing net (#0)
I1205 01:28:12.174720   968 solver.cpp:414]     Test net output #0: accuracy = 0.683036
I1205 01:28:12.174876   968 solver.cpp:414]     Test net output #1: loss = 1.26955 (* 1 = 1.26955 loss)
I1205 01:28:54.436324   968 solver.cpp:239] Iteration 200 (0.141422 iter/s, 70.7105s/10 iters), loss = 1.08963
I1205 01:29:30.000000   968 solver.cpp:347] Iteration 400, Testing net (#0)
I1205 01:29:31.500000   968 solver.cpp:414]     Test net output #0: accuracy = 0.741071
I1205 01:29:31.600000   968 solver.cpp:327] Iteration 400, loss = 0.5
"""


def test_demo_train_log_gives_caffe_train_time_and_test_accuracies(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(TRAIN_LOG)
    got = bench_demo.read_train_log(log)
    assert (got["first_iteration"], got["last_iteration"]) == (0, 400)
    assert abs(got["seconds"] - 119.798118) < 1e-6
    assert got["tests"] == [{"iteration": 200, "output": "accuracy", "value": 0.683036},
                            {"iteration": 400, "output": "accuracy", "value": 0.741071}]


def test_demo_report_from_json(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(TRAIN_LOG)
    run = {"date": "2000-01-01", "extra": [], "command": "sse-demo --out DIR",
           "info": {"cpu": "test", "cores": "2", "load average (start -> end)": "0.10 -> 0.20"},
           "wall": 50.0, "user": 80.0, "system": 2.0,
           "steps": [{"step": "drawing clips", "start": 1.0, "end": 2.0},
                     {"step": "caffe train", "start": 3.0, "end": 45.0}],
           "train": bench_demo.read_train_log(log), "frame_accuracy": 0.75, "frames": 224,
           "video_accuracy": 0.9286, "videos": 28, "chance": 1 / 7, "macro_f1": 0.921}
    (tmp_path / "demo.json").write_text(json.dumps(run))
    out = tmp_path / "demo.md"
    subprocess.run([sys.executable, str(REPO / "bench" / "bench_demo.py"), "--from-json",
                    str(tmp_path / "demo.json"), "--out", str(out)], check=True,
                   capture_output=True, timeout=120)
    text = out.read_text()
    assert "| caffe train | 42.0 s |" in text
    assert "| **whole job** | **50.0 s** (CPU: user 80.0 s, system 2.0 s) |" in text
    assert "accuracy 74.1% at iteration 400" in text and "**video accuracy 92.9%**" in text
    assert "shared with other jobs" not in text


def test_engine_report_has_no_figure_from_outside_the_run(tmp_path):
    run = {"date": "2000-01-01", "reps": 3, "threads": None,
           "info": {"cpu": "test", "cores": "2", "blas": "openblas", "OPENBLAS_CORETYPE": "(unset)",
                    "load average (start -> end)": "0.10 -> 0.20"},
           "matmul": 0.05, "native": None,
           "train": {key: {"engine": 0.25, "plain": 0.3, "plain_gemm": 0.28, "loss": 2.0,
                           "flop": 1.0e10} for key in ("holonet", "densenet")},
           "infer": [{"net": "holonet", "batch": 1, "plain": 0.01, "optimised": 0.008,
                      "opencv": 0.016}]}
    (tmp_path / "engine.json").write_text(json.dumps(run))
    out = tmp_path / "engine.md"
    subprocess.run([sys.executable, str(REPO / "bench" / "bench_engine.py"), "--from-json",
                    str(tmp_path / "engine.json"), "--out", str(out)], check=True,
                   capture_output=True, timeout=300)
    text = out.read_text()
    assert "| SSE-HoloNet | 250 | 5.00 | 0.58 |" in text  # engine ms, matmul units, FLOP floor
    assert "Real Caffe" not in text and "speed-up" not in text
