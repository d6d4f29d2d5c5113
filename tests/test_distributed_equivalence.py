"""Several-process training (gloo on CPU): 2 processes of batch B end with the same weights as
1 process of batch 2B (a net without BatchNorm), the data split between the ranks; the root
tests alone; a SIGINT stops all ranks at the same iteration."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest

import caffe
from caffe import distributed, mode, model_io
from caffe.errors import SolverError

NET = """name: "mlp"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param { source: "list.txt" batch_size: %d } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 8 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

SOLVER = """net: "net%d.prototxt" base_lr: 0.1 lr_policy: "step" gamma: 0.5 stepsize: 3
momentum: 0.9 weight_decay: 0.001 max_iter: 8 display: 0 random_seed: 7
snapshot_prefix: "out%d/run" type: "SGD" test_iter: 2 test_interval: 4
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"] = rng.normal(size=(20, 6)).astype(np.float32)
        f["label"] = rng.integers(0, 3, size=20).astype(np.float32)
    (tmp_path / "list.txt").write_text("d.h5\n")
    for batch in (3, 6):
        (tmp_path / f"net{batch}.prototxt").write_text(NET % batch)
        (tmp_path / f"out{batch}").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _params(path):
    net = caffe.Net("net6.prototxt", caffe.TEST, weights=str(path))
    return {f"{k}:{i}": b.data.copy() for k, v in net.params.items() for i, b in enumerate(v)}


def test_two_gloo_processes_of_batch_b_equal_one_process_of_batch_2b(workdir):
    single = caffe.get_solver(model_io.parse_solver_text(SOLVER % (6, 6)))
    single.solve()
    distributed.train_parallel(model_io.parse_solver_text(SOLVER % (3, 3)), world_size=2)
    assert (workdir / "out3" / "run_iter_8.solverstate").exists()
    one, two = _params(workdir / "out6" / "run_iter_8.caffemodel"), \
        _params(workdir / "out3" / "run_iter_8.caffemodel")
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)
    state1 = model_io.read_solverstate(workdir / "out6" / "run_iter_8.solverstate")
    state2 = model_io.read_solverstate(workdir / "out3" / "run_iter_8.solverstate")
    for a, b in zip(state1.history, state2.history):
        np.testing.assert_allclose(model_io.blobproto_to_array(b), model_io.blobproto_to_array(a),
                                   rtol=1e-5, atol=1e-6)


def test_data_shards_of_two_ranks_interleave_to_the_single_batch(workdir):
    reads = {}
    for rank, world, batch in ((0, 2, 3), (1, 2, 3), (0, 1, 6)):
        mode.set_data_shard(rank, world)
        try:
            (workdir / "tmp.prototxt").write_text(NET % batch)
            net = caffe.Net("tmp.prototxt", caffe.TRAIN)
        finally:
            mode.set_data_shard(0, 1)
        batches = []
        for _ in range(5):
            net.forward()
            batches.append(net.blobs["data"].data.copy())
        reads[(rank, world)] = batches
    for k in range(5):
        joined = np.concatenate([reads[(0, 2)][k], reads[(1, 2)][k]])
        np.testing.assert_array_equal(joined, reads[(0, 1)][k])


def test_failure_in_a_worker_is_reported(workdir):
    bad = model_io.parse_solver_text(SOLVER % (3, 3))
    bad.net = "missing.prototxt"
    with pytest.raises(SolverError, match="training process failed.*missing.prototxt"):
        distributed.train_parallel(bad, world_size=2)


def test_gpu_flag_parsing():
    assert distributed.parse_gpus("") == []
    assert distributed.parse_gpus("0,1") == [0, 1]
    with pytest.raises(SolverError, match="--gpu"):
        distributed.parse_gpus("zero")


STOP_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from caffe import distributed, model_io
if __name__ == "__main__":
    param = model_io.parse_solver_text(open("long.prototxt").read())
    distributed.train_parallel(param, world_size=2, sigint_effect="stop")
"""


def test_sigint_stops_every_rank_and_the_root_snapshots(workdir):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (workdir / "long.prototxt").write_text(
        (SOLVER % (3, 3)).replace("max_iter: 8", "max_iter: 100000").replace("display: 0",
                                                                            "display: 10"))
    (workdir / "stop.py").write_text(STOP_SCRIPT.format(repo=repo))
    proc = subprocess.Popen([sys.executable, "stop.py"], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline, seen = time.time() + 120, []
    while time.time() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if "Iteration 20 (" in line or not line:
            break
    os.killpg(proc.pid, signal.SIGINT)
    watchdog = threading.Timer(120, proc.kill)  # a run that ignored the signal fails, not hangs
    watchdog.start()
    rest = proc.stderr.read()  # not communicate(): it would skip what readline buffered
    watchdog.cancel()
    proc.wait()
    assert proc.returncode == 0, "".join(seen[-5:]) + rest[-3000:]
    assert "Optimization stopped early." in rest
    states = [p for p in os.listdir(workdir / "out3") if p.endswith(".solverstate")]
    assert len(states) == 1 and int(states[0].split("_iter_")[1].split(".")[0]) >= 20
