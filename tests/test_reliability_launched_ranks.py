"""Launched ranks (``caffe train`` as srun tasks) that cannot train together end, every one of them,
with one line naming what happened and exit code 1, no traceback and no abort inside gloo: ranks
given different nets or solvers, a rank that never starts (the rendezvous is bounded by
``--rendezvous_timeout`` or ``CAFFE_RENDEZVOUS_TIMEOUT``), a rank killed or failing during
training."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from caffe import model_io
from caffe.errors import CaffeError
from caffe.rendezvous import DEFAULT_TIMEOUT_S, differences, fingerprint, rendezvous_timeout
from test_distributed_equivalence import NET, SOLVER, workdir  # noqa: F401 (fixture)
from test_distributed_torchrun import LOOPBACK, _clean_env, _free_loopback_port

TIMEOUT_S = 120


@pytest.fixture
def job(workdir):
    """The nets and data of test_distributed_equivalence, a solver that runs long, and a net and
    solver that differ from them in one layer."""
    (workdir / "solver3.prototxt").write_text(SOLVER % (3, 3))
    (workdir / "long.prototxt").write_text((SOLVER % (3, 3)).replace("max_iter: 8", "max_iter: 100000")
                                           .replace("display: 0", "display: 10"))
    (workdir / "other.prototxt").write_text((NET % 3).replace("num_output: 8", "num_output: 9"))
    (workdir / "other_solver.prototxt").write_text(
        (SOLVER % (3, 3)).replace('"net3.prototxt"', '"other.prototxt"'))
    return workdir


def _task(job, rank: int, solver: str, port: int, *flags: str, cwd=None,
          env: dict | None = None) -> subprocess.Popen:
    """``caffe train`` as task ``rank`` of a two-task srun step, in a session of its own."""
    environ = _clean_env()
    environ.update(SLURM_PROCID=str(rank), SLURM_STEP_NUM_TASKS="2", SLURM_LOCALID="0",
                   SLURM_STEP_NODELIST=LOOPBACK, MASTER_PORT=str(port), **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "caffe.tools.caffe_cli", "train", f"--solver={solver}",
         "--no_progress", *flags],
        cwd=cwd or job, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def _failed(proc: subprocess.Popen, what: str) -> str:
    """The one error line of a task that has ended with exit code 1, without a traceback."""
    try:
        _, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        err = proc.communicate()[1]
        pytest.fail(f"{what} did not end in {TIMEOUT_S} s:\n{err[-3000:]}")
    assert proc.returncode == 1, f"{what} ended with {proc.returncode}:\n{err[-3000:]}"
    assert "Traceback" not in err and "terminate called" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err[-3000:]
    return errors[0]


def test_ranks_with_different_nets_name_the_layer_that_differs(job):
    port = _free_loopback_port()
    tasks = [_task(job, 0, "solver3.prototxt", port), _task(job, 1, "other_solver.prototxt", port)]
    for rank, task in enumerate(tasks):
        line = _failed(task, f"rank {rank}")
        assert f"rank {rank} of 2:" in line and "different nets or solvers" in line, line
        assert "rank 1's net (other.prototxt) differs from rank 0's (net3.prototxt) at layer 'ip1'" \
            in line


def test_a_rank_whose_peer_never_starts_ends_after_the_rendezvous_timeout(job):
    start = time.monotonic()
    root = _task(job, 0, "solver3.prototxt", _free_loopback_port(), "--rendezvous_timeout=2")
    line = _failed(root, "rank 0 alone")
    assert "rank 0 of 2: rank 1 did not join the rendezvous" in line and "within 2 s" in line, line
    assert time.monotonic() - start < 60
    other = _task(job, 1, "solver3.prototxt", _free_loopback_port(),
                  env={"CAFFE_RENDEZVOUS_TIMEOUT": "2"})
    line = _failed(other, "rank 1 alone")
    assert "rank 1 of 2: rank 0 did not open the rendezvous" in line and "within 2 s" in line, line


@pytest.mark.parametrize("victim", [0, 1])
def test_a_peer_killed_during_training_ends_the_survivor_in_one_line(job, victim):
    port = _free_loopback_port()
    tasks = [_task(job, rank, "long.prototxt", port) for rank in (0, 1)]
    watchdog = threading.Timer(TIMEOUT_S, lambda: [t.kill() for t in tasks])
    watchdog.start()
    try:
        while True:
            line = tasks[0].stderr.readline()
            if "Iteration 20 (" in line or not line:
                break
        tasks[victim].send_signal(signal.SIGKILL)
        tasks[victim].wait()
        survivor = 1 - victim
        line = _failed(tasks[survivor], f"rank {survivor}")
    finally:
        watchdog.cancel()
    who = "rank 0 ended" if victim == 0 else "a peer rank ended"
    assert f"rank {survivor} of 2: {who} during training" in line, line


def test_a_rank_that_fails_is_named_by_the_others(job, tmp_path_factory):
    """Rank 1 runs where the data file is missing: it ends with its own error, rank 0 names it."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    for name in ("net3.prototxt", "solver3.prototxt", "list.txt"):
        (elsewhere / name).write_text((job / name).read_text())
    port = _free_loopback_port()
    tasks = [_task(job, 0, "solver3.prototxt", port),
             _task(job, 1, "solver3.prototxt", port, cwd=elsewhere)]
    own = _failed(tasks[1], "rank 1")
    assert "d.h5' not found" in own, own
    line = _failed(tasks[0], "rank 0")
    assert "rank 0 of 2: rank 1 failed:" in line and "d.h5' not found" in line, line


def test_fingerprints_name_the_layer_and_the_solver_fields_that_differ(job):
    base = model_io.parse_solver_text(SOLVER % (3, 3))
    same = model_io.parse_solver_text(SOLVER % (3, 3))
    same.device_id = 3  # each rank has its own device
    assert differences([fingerprint(base), fingerprint(same)]) is None
    other = model_io.parse_solver_text((SOLVER % (3, 3)).replace("base_lr: 0.1", "base_lr: 0.2")
                                       .replace("max_iter: 8", "max_iter: 9"))
    other.net = "other.prototxt"
    diff = differences([fingerprint(base), fingerprint(same), fingerprint(other)])
    assert diff == ("rank 2's net (other.prototxt) differs from rank 0's (net3.prototxt) at layer "
                    "'ip1'; rank 2's solver differs from rank 0's in base_lr, max_iter")
    (job / "short.prototxt").write_text((NET % 3).split('layer { name: "loss"')[0])
    short = model_io.parse_solver_text(SOLVER % (3, 3))
    short.net = "short.prototxt"
    assert differences([fingerprint(base), fingerprint(short)]).endswith(
        ": 5 layers on rank 0, 4 on rank 1")


def test_the_rendezvous_timeout_comes_from_the_flag_then_the_environment():
    assert rendezvous_timeout(None, {}) == DEFAULT_TIMEOUT_S
    assert rendezvous_timeout("", {"CAFFE_RENDEZVOUS_TIMEOUT": "7.5"}) == 7.5
    assert rendezvous_timeout("2", {"CAFFE_RENDEZVOUS_TIMEOUT": "7.5"}) == 2
    for bad in ("0", "-1", "soon", "inf"):
        with pytest.raises(CaffeError, match="rendezvous_timeout.*positive number of seconds"):
            rendezvous_timeout(bad, {})
    with pytest.raises(CaffeError, match="CAFFE_RENDEZVOUS_TIMEOUT"):
        rendezvous_timeout(None, {"CAFFE_RENDEZVOUS_TIMEOUT": "x"})


def test_a_spawned_process_killed_ends_the_job_with_one_line(monkeypatch):
    """``caffe train --gpu 0,1``: a process that ends by a signal is named, without a traceback."""
    import torch.multiprocessing as mp

    from caffe import distributed
    from caffe.errors import SolverError

    def killed(*args, **kwargs):
        raise mp.ProcessExitedException("process 1 terminated with signal SIGKILL", error_index=1,
                                        error_pid=4242, exit_code=-9, signal_name="SIGKILL")

    monkeypatch.setattr(mp, "spawn", killed)
    with pytest.raises(SolverError, match="^training process 1 ended with signal SIGKILL$"):
        distributed.train_parallel(model_io.parse_solver_text(SOLVER % (3, 3)), world_size=2)
