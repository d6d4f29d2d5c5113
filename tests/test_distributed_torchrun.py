"""``caffe train`` as one rank of a multi-machine job: two torchrun "nodes" (``--nnodes 2``, one
process each, static rendezvous on 127.0.0.1, gloo pinned to the loopback interface) train to the
weights one process with twice the batch gets, and one plain process resumes their snapshot to the
same end; two srun-like tasks train alike, and a SIGINT sent to one of them stops both at one
iteration with rank 0's snapshot; the launcher variables (torchrun's and SLURM's) map to a rank
and a share of inputs."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

import caffe
from caffe import launch, model_io
from caffe.errors import CaffeError
from process_helpers import wait_ok
from test_distributed_equivalence import SOLVER, _params, workdir  # noqa: F401 (fixture)

LOOPBACK = "127.0.0.1"
TIMEOUT_S = 240


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _clean_env() -> dict[str, str]:
    """This environment without launcher variables, gloo on the loopback interface."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
           and not k.startswith("SLURM_")}
    env.update(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    return env


def _check(proc: subprocess.Popen, what: str) -> str:
    """The process's stderr, once it has ended well."""
    return wait_ok(proc, what, TIMEOUT_S)[1]


@pytest.fixture
def job(workdir):
    """The data and nets of test_distributed_equivalence, solvers that snapshot at iteration 4, and
    a solver of batch 2B to resume with."""
    for batch in (3, 6):
        (workdir / f"solver{batch}.prototxt").write_text(SOLVER % (batch, batch) + "snapshot: 4\n")
    (workdir / "resumed").mkdir()
    (workdir / "resume.prototxt").write_text(
        (SOLVER % (6, 6)).replace('"out6/run"', '"resumed/run"'))
    return workdir


def _history(path):
    return [model_io.blobproto_to_array(b) for b in model_io.read_solverstate(path).history]


def test_two_torchrun_nodes_equal_one_process_of_twice_the_batch_and_resume_on_one(job):
    caffe.get_solver("solver6.prototxt").solve()
    port = _free_loopback_port()
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank),
         "--nproc-per-node", "1", "--master-addr", LOOPBACK, "--master-port", str(port),
         "-m", "caffe.tools.caffe_cli", "train", "--solver=solver3.prototxt", "--no_progress"],
        cwd=job, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in (0, 1)]
    logs = [_check(node, f"torchrun node {rank}") for rank, node in enumerate(nodes)]
    assert f"rank 0 of 2 (torchrun, rendezvous {LOOPBACK}:{port}, gloo)" in logs[0]
    assert "Iteration 4, Testing net" in logs[0] and "Testing net" not in logs[1]
    one, two = _params(job / "out6" / "run_iter_8.caffemodel"), \
        _params(job / "out3" / "run_iter_8.caffemodel")
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)
    for a, b in zip(_history(job / "out6" / "run_iter_8.solverstate"),
                    _history(job / "out3" / "run_iter_8.solverstate")):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)

    resume = subprocess.Popen(
        [sys.executable, "-m", "caffe.tools.caffe_cli", "train", "--solver=resume.prototxt",
         "--snapshot=out3/run_iter_4.solverstate", "--no_progress"],
        cwd=job, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _check(resume, "resume on one process")
    resumed = _params(job / "resumed" / "run_iter_8.caffemodel")
    for key in one:
        np.testing.assert_allclose(resumed[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)


def _srun_tasks(job, solver: str, ranks: int = 2) -> list[subprocess.Popen]:
    """``caffe train`` started as the tasks of one srun step on one node each, in new sessions
    (a signal reaches the task it is sent to only)."""
    port = _free_loopback_port()
    tasks = []
    for rank in range(ranks):
        env = _clean_env()
        env.update(SLURM_PROCID=str(rank), SLURM_STEP_NUM_TASKS=str(ranks), SLURM_LOCALID="0",
                   SLURM_STEP_NODELIST=LOOPBACK, MASTER_PORT=str(port))
        tasks.append(subprocess.Popen(
            [sys.executable, "-m", "caffe.tools.caffe_cli", "train", f"--solver={solver}",
             "--no_progress"],
            cwd=job, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True))
    return tasks


def test_two_srun_tasks_equal_one_process_of_twice_the_batch(job):
    """Two tasks as srun starts them: SLURM's variables only, the rendezvous host read from the
    step's node list (here the loopback address), the port from MASTER_PORT."""
    caffe.get_solver("solver6.prototxt").solve()
    tasks = _srun_tasks(job, "solver3.prototxt")
    for rank, task in enumerate(tasks):
        _check(task, f"srun task {rank}")
    one, two = _params(job / "out6" / "run_iter_8.caffemodel"), \
        _params(job / "out3" / "run_iter_8.caffemodel")
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_sigint_to_one_task_stops_both_at_one_iteration_and_rank_0_snapshots(job):
    (job / "long.prototxt").write_text((SOLVER % (3, 3)).replace("max_iter: 8", "max_iter: 100000")
                                       .replace("display: 0", "display: 10"))
    root, other = _srun_tasks(job, "long.prototxt")
    watchdog = threading.Timer(TIMEOUT_S, lambda: [t.kill() for t in (root, other)])
    watchdog.start()
    try:
        seen = []
        while True:
            line = root.stderr.readline()
            seen.append(line)
            if "Iteration 20 (" in line or not line:
                break
        os.kill(other.pid, signal.SIGINT)
        rest = _check(root, "rank 0")
        _check(other, "rank 1")
    finally:
        watchdog.cancel()
    assert "Optimization stopped early." in rest, "".join(seen[-5:]) + rest[-2000:]
    states = [p.name for p in (job / "out3").iterdir() if p.suffix == ".solverstate"]
    assert len(states) == 1 and int(states[0].split("_iter_")[1].split(".")[0]) >= 20


def test_torchrun_variables_give_the_rank_and_rendezvous():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": LOOPBACK,
           "MASTER_PORT": "29400"}
    assert launch.launch_environment(env) == launch.ProcessGroupEnv(3, 4, 1, LOOPBACK, 29400,
                                                                    "torchrun")
    assert launch.launch_environment({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert launch.launch_environment({}) is None
    with pytest.raises(CaffeError, match="RANK"):
        launch.launch_environment({"RANK": "4", "WORLD_SIZE": "4"})


def test_slurm_task_variables_map_to_rank_world_and_first_host():
    env = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1",
           "SLURM_STEP_NODELIST": "gpu[07-09,12]"}
    job = launch.launch_environment(env)
    assert job == launch.ProcessGroupEnv(5, 8, 1, "gpu07", launch.DEFAULT_MASTER_PORT, "slurm")
    exported: dict[str, str] = {}
    job.export(exported)
    assert exported == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu07",
                        "MASTER_PORT": str(launch.DEFAULT_MASTER_PORT)}
    # the batch script itself (no srun step) is not one rank of many
    assert launch.launch_environment({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) is None
    assert launch.first_host("node5,node6") == "node5"


def test_shard_flag_wins_over_the_launcher_and_splits_round_robin():
    env = {"RANK": "1", "WORLD_SIZE": "3"}
    assert str(launch.resolve_shard("", env)) == "1/3"
    assert str(launch.resolve_shard("2/3", env)) == "2/3"
    assert launch.resolve_shard("", {}).select("abcdefg") == list("abcdefg")
    shares = [launch.parse_shard(f"{k}/3").select(range(10)) for k in range(3)]
    assert sorted(sum(shares, [])) == list(range(10)) and shares[1] == [1, 4, 7]
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(CaffeError, match="--shard"):
            launch.parse_shard(bad)
    with pytest.raises(CaffeError, match="MASTER_ADDR"):
        launch.launch_environment(env).export({})


def test_a_launched_rank_takes_the_gpu_of_its_local_rank():
    from caffe.tools.caffe_cli import _launcher_device
    job = launch.ProcessGroupEnv(5, 8, 1, LOOPBACK, 29400, "slurm")
    assert _launcher_device([], job) is None  # gloo on the CPU
    assert _launcher_device([3], job) == 3  # the one GPU this task sees
    assert _launcher_device([0, 1, 2, 3], job) == 1
    with pytest.raises(CaffeError, match="local rank 2 has no device"):
        _launcher_device([0, 1], launch.ProcessGroupEnv(2, 8, 2, LOOPBACK, 29400, "slurm"))
