"""Snapshots and resumption: 40 iterations straight equal 20 + resume + 20 (weights, BatchNorm
statistics, history, multistep position); a run SIGKILLed while writing a snapshot leaves the
previous one whole and resumable; test nets share the train net's weights."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import caffe
from caffe import model_io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NET = """name: "small"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
  include { phase: TRAIN } hdf5_data_param { source: "list.txt" batch_size: 4 } }
layer { name: "tdata" type: "HDF5Data" top: "data" top: "label"
  include { phase: TEST } hdf5_data_param { source: "list.txt" batch_size: 6 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip1" bottom: "label" top: "acc"
  include { phase: TEST } }
"""

SOLVER = """net: "net.prototxt"
base_lr: 0.05 lr_policy: "multistep" gamma: 0.5 stepvalue: 7 stepvalue: 15 stepvalue: 30
momentum: 0.9 weight_decay: 0.001 max_iter: 40 display: 5 snapshot: 10
snapshot_prefix: "snap/small" random_seed: 11 type: "{type}"
test_iter: 2 test_interval: 10 {extra}
"""


def write_workdir(path, type_="SGD", extra=""):
    rng = np.random.default_rng(0)
    with h5py.File(path / "d.h5", "w") as f:
        f["data"] = rng.normal(size=(22, 2, 5, 5)).astype(np.float32)
        f["label"] = rng.integers(0, 3, size=22).astype(np.float32)
    (path / "list.txt").write_text("d.h5\n")
    (path / "net.prototxt").write_text(NET)
    (path / "solver.prototxt").write_text(SOLVER.format(type=type_, extra=extra))
    (path / "snap").mkdir(exist_ok=True)


def params_of(net):
    return {f"{k}:{i}": b.data.copy() for k, v in net.params.items() for i, b in enumerate(v)}


@pytest.mark.parametrize("type_", ["SGD", "Adam"])
def test_resuming_from_a_solverstate_gives_the_same_weights_as_training_straight(
        tmp_path, monkeypatch, type_):
    write_workdir(tmp_path, type_)
    monkeypatch.chdir(tmp_path)
    straight = caffe.get_solver("solver.prototxt")
    straight.solve()
    assert straight.iter == 40
    expected = params_of(straight.net)

    first = caffe.get_solver("solver.prototxt")
    first.step(20)
    first.snapshot()
    resumed = caffe.get_solver("solver.prototxt")
    resumed.solve("snap/small_iter_20.solverstate")
    assert resumed.iter == 40 and resumed.current_step == straight.current_step == 3
    got = params_of(resumed.net)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    for h1, h2 in zip(resumed.history, straight.history):
        np.testing.assert_array_equal(h1.numpy(), h2.numpy())


def test_test_nets_share_the_train_weights_and_report_means(tmp_path, monkeypatch):
    write_workdir(tmp_path)
    monkeypatch.chdir(tmp_path)
    solver = caffe.get_solver("solver.prototxt")
    assert len(solver.test_nets) == 1
    test_net = solver.test_nets[0]
    solver.step(3)
    np.testing.assert_array_equal(test_net.params["ip1"][0].data, solver.net.params["ip1"][0].data)
    results = solver.test(0)
    assert set(results) == {"loss", "acc"} and 0 <= results["acc"] <= 1


def test_snapshot_history_follows_learnable_params_order(tmp_path, monkeypatch):
    write_workdir(tmp_path, "Adam")
    monkeypatch.chdir(tmp_path)
    solver = caffe.get_solver("solver.prototxt")
    solver.step(3)
    path = solver.snapshot()
    state = model_io.read_solverstate(path)
    params = solver.net.learnable_params
    assert state.iter == 3 and state.learned_net == "snap/small_iter_3.caffemodel"
    assert len(state.history) == 2 * len(params)
    for bp, p in zip(state.history, params + params):
        assert model_io.blob_shape(bp) == tuple(p.shape)


KILL_SCRIPT = textwrap.dedent("""
    import builtins, os, signal, sys
    sys.path.insert(0, {repo!r})
    import caffe
    from caffe import atomic

    class Dying:
        def __init__(self, f):
            self.f = f
        def __enter__(self):
            return self
        def __exit__(self, *a):
            self.f.close()
        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    solver = caffe.get_solver("solver.prototxt")
    solver.step(20)
    solver.snapshot()
    solver.step(5)
    atomic.open = lambda *a, **k: Dying(builtins.open(*a, **k))  # every file the atomic writer opens
    solver.snapshot()
""")


def test_sigkill_while_writing_a_snapshot_leaves_the_previous_one_resumable(tmp_path, monkeypatch):
    write_workdir(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kill.py").write_text(KILL_SCRIPT.format(repo=REPO))
    proc = subprocess.run([sys.executable, "kill.py"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    names = sorted(os.listdir(tmp_path / "snap"))
    assert "small_iter_25.caffemodel" not in names and "small_iter_25.solverstate" not in names
    assert {"small_iter_20.caffemodel", "small_iter_20.solverstate"} <= set(names)
    assert any(n.endswith(".tmp") for n in names)  # the half-written temp file, never renamed
    before = caffe.Net("net.prototxt", caffe.TEST, weights="snap/small_iter_20.caffemodel")
    resumed = caffe.get_solver("solver.prototxt")
    resumed.restore("snap/small_iter_20.solverstate")
    assert resumed.iter == 20
    for key, value in params_of(before).items():
        layer, i = key.rsplit(":", 1)
        np.testing.assert_array_equal(resumed.net.params[layer][int(i)].data, value)
    resumed.step(2)
