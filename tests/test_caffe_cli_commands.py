"""The ``caffe`` command: train reproduces Caffe's golden log, test/time/device_query print
Caffe's lines, signals stop or snapshot a run, and bad input ends with one error line."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import caffe
from caffe.tools.caffe_cli import main

GOLDEN_CASES = ("sgd_training",)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def run_dir(golden, tmp_path, monkeypatch):
    case = golden / "sgd_training"
    (tmp_path / "train_h5_list.txt").write_text(str(case / "train.h5") + "\n")
    (tmp_path / "train.prototxt").write_text((case / "train.prototxt").read_text())
    (tmp_path / "snap").mkdir()
    for name in ("solver_itersize1.prototxt", "solver_itersize2.prototxt"):
        (tmp_path / name).write_text((case / name).read_text())
    monkeypatch.chdir(tmp_path)
    return case


def parse_log(text: str) -> tuple[dict[int, float], dict[int, float]]:
    """Losses and rates by iteration, with the regular expressions of Caffe's parse_log.py."""
    loss, lr = {}, {}
    for line in text.splitlines():
        m = re.search(r"Iteration (\d+) \(.*\), loss = ([\.\deE+-]+)", line)
        if m:
            loss[int(m.group(1))] = float(m.group(2))
        m = re.search(r"Iteration (\d+), lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)", line)
        if m:
            lr[int(m.group(1))] = float(m.group(2))
    return loss, lr


@pytest.mark.parametrize("run", ["itersize1", "itersize2"])
def test_train_with_spaced_flags_reproduces_caffes_log(run_dir, capfd, run):
    rc = main(["train", "--solver", "=", f"solver_{run}.prototxt",
               f"--weights={run_dir / 'init.caffemodel'}"])
    err = capfd.readouterr().err
    assert rc == 0, err[-2000:]
    ref = json.loads((run_dir / "losses.json").read_text())[run]
    loss, lr = parse_log(err)
    np.testing.assert_allclose([loss[k] for k in ref["iterations"]], ref["loss"], rtol=1e-4)
    np.testing.assert_allclose([lr[k] for k in ref["iterations"]], ref["lr"], rtol=1e-6)
    caffe_log = (run_dir / f"train_{run}.log").read_text()
    final_caffe = re.search(r"Iteration 30, loss = ([\d.]+)", caffe_log).group(1)
    final_ours = re.search(r"Iteration 30, loss = ([\d.]+)", err).group(1)
    assert float(final_ours) == pytest.approx(float(final_caffe), rel=1e-4)
    assert sorted(os.listdir("snap")) == sorted(
        f"{run}_iter_{k}.{ext}" for k in (10, 20, 30) for ext in ("caffemodel", "solverstate"))


def test_train_draws_live_curves(run_dir, capfd):
    assert main(["train", "--solver=solver_itersize1.prototxt", "--plot=curves.png"]) == 0
    import matplotlib.image as mpimg
    assert mpimg.imread("curves.png").shape[1] == 800


def test_train_resumes_from_snapshot_flag(run_dir, capfd):
    assert main(["train", "-solver=solver_itersize1.prototxt",
                 f"-weights={run_dir / 'init.caffemodel'}"]) == 0
    first = caffe.Net("train.prototxt", caffe.TEST, weights="snap/itersize1_iter_30.caffemodel")
    expected = first.params["ip1"][0].data.copy()
    os.remove("snap/itersize1_iter_30.caffemodel")
    capfd.readouterr()
    assert main(["train", "--solver=solver_itersize1.prototxt",
                 "--snapshot=snap/itersize1_iter_20.solverstate"]) == 0
    err = capfd.readouterr().err
    assert "Resuming from snap/itersize1_iter_20.solverstate" in err
    assert "Iteration 19 (" not in err and "Iteration 20 (" in err
    resumed = caffe.Net("train.prototxt", caffe.TEST, weights="snap/itersize1_iter_30.caffemodel")
    np.testing.assert_array_equal(resumed.params["ip1"][0].data, expected)


def _error_line(capfd) -> str:
    err = capfd.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def test_train_with_missing_net_file_fails_with_one_line(run_dir, capfd):
    open("s.prototxt", "w").write('net: "nonexistent.prototxt" base_lr: 0.1 lr_policy: "fixed"')
    assert main(["train", "--solver=s.prototxt"]) == 1
    assert "net file 'nonexistent.prototxt' not found" in _error_line(capfd)


def test_train_with_unknown_solver_field_names_the_line(run_dir, capfd):
    open("s.prototxt", "w").write('net: "train.prototxt"\nbase_lr: 0.1\nmomentun: 0.9\n')
    assert main(["train", "--solver=s.prototxt"]) == 1
    line = _error_line(capfd)
    assert "s.prototxt:3" in line and "momentun" in line


def test_train_with_snapshot_of_another_net_fails(run_dir, capfd, tmp_path):
    assert main(["train", "--solver=solver_itersize1.prototxt"]) == 0
    other = (run_dir / "train.prototxt").read_text().replace("num_output: 5", "num_output: 6")
    open("other.prototxt", "w").write(other)
    solver = open("solver_itersize1.prototxt").read().replace("train.prototxt", "other.prototxt")
    open("other_solver.prototxt", "w").write(solver)
    capfd.readouterr()
    assert main(["train", "--solver=other_solver.prototxt",
                 "--snapshot=snap/itersize1_iter_10.solverstate"]) == 1
    assert "history blob 7 has shape (5, 64)" in _error_line(capfd)


def test_train_refuses_weights_with_snapshot_and_missing_solver(run_dir, capfd):
    assert main(["train", "--solver=solver_itersize1.prototxt", "--weights=a.caffemodel",
                 "--snapshot=b.solverstate"]) == 1
    assert "not both" in _error_line(capfd)
    assert main(["train"]) == 1
    assert "Need a solver" in _error_line(capfd)
    assert main(["train", "--solver=solver_itersize1.prototxt", "--gpu=0"]) == 1 or \
        caffe.mode.current_device().type == "cuda"
    capfd.readouterr()
    assert main(["train", "--solver=solver_itersize1.prototxt", "--sigint_effect=explode"]) == 1
    assert "Invalid signal effect" in _error_line(capfd)


def test_test_command_scores_a_model_like_pycaffe(run_dir, capfd):
    weights = str(run_dir / "final_itersize1.caffemodel")
    assert main(["test", "--model=train.prototxt", f"--weights={weights}",
                 "--iterations=2"]) == 0
    err = capfd.readouterr().err
    net = caffe.Net("train.prototxt", caffe.TEST, weights=weights)
    losses = [float(net.forward()["loss"]) for _ in range(2)]
    assert re.search(r"Batch 1, loss = ([\d.]+)", err).group(1) == f"{losses[1]:.6g}"
    mean = re.search(r"\] loss = ([\d.]+) \(\* 1 = ", err).group(1)
    assert float(mean) == pytest.approx(np.mean(losses), rel=1e-5)
    assert re.search(r"Loss: [\d.]+", err)


def test_time_command_reports_every_layer(run_dir, capfd):
    assert main(["time", "--model=train.prototxt", "--iterations=2"]) == 0
    err = capfd.readouterr().err
    for layer in ("data", "conv1", "bn1", "scale1", "relu1", "pool1", "ip1", "loss"):
        assert re.search(rf"\s{layer}\tforward: [\d.e+-]+ ms\.", err), layer
        assert re.search(rf"\s{layer}\tbackward: [\d.e+-]+ ms\.", err), layer
    assert "Average Forward-Backward:" in err and "*** Benchmark ends ***" in err


def test_device_query_and_unknown_command(capfd):
    import torch
    assert main(["device_query"]) == 0
    if not torch.cuda.is_available():
        assert main(["device_query", "--gpu=0"]) == 1
    assert main(["fly"]) == 1
    assert "Unknown action: fly" in capfd.readouterr().err
    assert main([]) == 1


LONG_SOLVER = """net: "train.prototxt" base_lr: 0.001 lr_policy: "fixed" momentum: 0.9
max_iter: 100000 display: 20 snapshot: 0 snapshot_prefix: "snap/long" random_seed: 1
"""


def _start_long_run(effect: str, max_iter: int) -> subprocess.Popen:
    open("long.prototxt", "w").write(LONG_SOLVER.replace("100000", str(max_iter)))
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")  # a tiny net: one thread is fastest
    return subprocess.Popen([sys.executable, "-m", "caffe.tools.caffe_cli", "train",
                             "--solver=long.prototxt", f"--sigint_effect={effect}"],
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(proc: subprocess.Popen, pattern: str, timeout: float = 60) -> list[str]:
    lines = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if pattern in line:
            return lines
    proc.kill()
    raise AssertionError(f"'{pattern}' not seen:\n" + "".join(lines[-20:]))


@pytest.mark.parametrize("effect,max_iter", [("stop", 100000), ("snapshot", 150)])
def test_sigint_snapshots_and_the_run_ends_cleanly(run_dir, effect, max_iter):
    """stop: snapshot (snapshot_after_train) and end early; snapshot: snapshot where the signal
    came and carry on to max_iter, as Caffe does."""
    proc = _start_long_run(effect, max_iter)
    _wait_for(proc, "Iteration 40 (")
    proc.send_signal(signal.SIGINT)
    lines = _wait_for(proc, "Snapshotting solver state")
    watchdog = threading.Timer(120, proc.kill)  # a run that ignored the signal fails, not hangs
    watchdog.start()
    rest = proc.stderr.read()  # not communicate(): it would skip what readline buffered
    watchdog.cancel()
    proc.wait()
    assert proc.returncode == 0, rest[-2000:]
    snapshot = int(re.search(r"snap/long_iter_(\d+)\.solverstate", lines[-1]).group(1))
    assert 40 < snapshot < max_iter and os.path.exists(f"snap/long_iter_{snapshot}.caffemodel")
    if effect == "stop":
        assert "Optimization stopped early." in rest
    else:
        assert "Optimization Done." in rest and os.path.exists(f"snap/long_iter_{max_iter}.solverstate")
