"""Caffe's training loop around the update: average_loss smoothing, display lines, testing at 0
and every test_interval (test_initialization, test_compute_loss), iter_size loss averaging,
gradient clipping, snapshot_after_train, action requests."""
from __future__ import annotations

import re

import h5py
import numpy as np
import pytest

import caffe
from caffe import model_io
from caffe.solver import SolverAction

NET = """name: "clf"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param { source: "list.txt" batch_size: 4 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc"
  include { phase: TEST } }
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"] = rng.normal(size=(20, 5)).astype(np.float32)
        f["label"] = rng.integers(0, 3, size=20).astype(np.float32)
    (tmp_path / "list.txt").write_text("d.h5\n")
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "snap").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make(extra: str):
    text = ('net: "net.prototxt" base_lr: 0.05 lr_policy: "fixed" momentum: 0.9 random_seed: 3 '
            'snapshot_prefix: "snap/s" ' + extra)
    return caffe.get_solver(model_io.parse_solver_text(text))


class Losses:
    def __init__(self):
        self.train, self.test = {}, {}

    def on_train(self, it, loss, outputs):
        self.train[it] = (loss, float(outputs["loss"][0]))

    def on_test(self, it, net_id, outputs):
        self.test[it] = outputs


def test_average_loss_smooths_over_the_last_iterations(workdir):
    solver = make("display: 1 average_loss: 3 max_iter: 8")
    rec = Losses()
    solver.add_observer(rec)
    solver.step(8)
    raw = [rec.train[k][1] for k in range(8)]
    for k in range(8):
        window = raw[max(0, k - 2):k + 1]
        assert rec.train[k][0] == pytest.approx(np.mean(window), rel=1e-5)


def test_iter_size_reports_the_mean_loss_of_its_passes(workdir):
    solver = make("display: 1 iter_size: 2")
    net = caffe.Net("net.prototxt", caffe.TRAIN)
    net.copy_from_param(solver.net.to_proto())
    expected = np.mean([float(net.forward()["loss"]) for _ in range(2)])
    rec = Losses()
    solver.add_observer(rec)
    solver.step(1)
    assert rec.train[0][0] == pytest.approx(expected, rel=1e-5)


def test_tests_run_at_zero_and_every_interval_with_loss(workdir, capfd):
    solver = make("display: 0 max_iter: 6 test_iter: 5 test_interval: 3 test_compute_loss: true")
    rec = Losses()
    solver.add_observer(rec)
    solver.solve()
    assert sorted(rec.test) == [0, 3, 6]
    err = capfd.readouterr().err
    assert len(re.findall(r"Iteration \d+, Testing net \(#0\)", err)) == 3
    assert re.search(r"Test loss: [\d.]+", err)
    # Caffe numbers the outputs in name order (its std::set of unconsumed blobs): acc, then loss.
    assert re.search(r"    Test net output #0: acc = [\d.]+", err)
    assert re.search(r"    Test net output #1: loss = [\d.]+ \(\* 1 = [\d.]+ loss\)", err)
    test_net = caffe.Net("net.prototxt", caffe.TEST, weights="snap/s_iter_6.caffemodel")
    accs = [float(test_net.forward()["acc"]) for _ in range(5)]
    assert rec.test[6]["acc"] == pytest.approx(np.mean(accs), rel=1e-6)


def test_no_test_at_zero_without_test_initialization(workdir):
    solver = make("display: 0 max_iter: 4 test_iter: 1 test_interval: 2 "
                  "test_initialization: false snapshot_after_train: false")
    rec = Losses()
    solver.add_observer(rec)
    solver.solve()
    assert sorted(rec.test) == [2, 4]
    assert not list((workdir / "snap").iterdir())


def test_gradient_clipping_is_logged_with_the_norm(workdir, capfd):
    solver = make("display: 0 clip_gradients: 0.001")
    solver.step(1)
    assert re.search(r"Gradient clipping: scaling down gradients \(L2 norm [\d.]+ > 0.001\) by "
                     r"scale factor [\d.e-]+", capfd.readouterr().err)


def test_action_requests_snapshot_then_stop(workdir):
    solver = make("display: 0 max_iter: 50")
    requests = iter([SolverAction.NONE, SolverAction.SNAPSHOT, SolverAction.NONE,
                     SolverAction.STOP])
    solver.set_action_function(lambda: next(requests, SolverAction.NONE))
    solver.solve()
    assert solver.iter == 4 and solver.requested_early_exit
    names = sorted(p.name for p in (workdir / "snap").iterdir())
    assert names == ["s_iter_2.caffemodel", "s_iter_2.solverstate", "s_iter_4.caffemodel",
                     "s_iter_4.solverstate"]


def test_share_weights_gives_a_net_the_trained_parameters(workdir):
    solver = make("display: 0")
    deploy = caffe.Net("net.prototxt", caffe.TEST)
    solver.share_weights(deploy)
    solver.step(2)
    np.testing.assert_array_equal(deploy.params["ip"][0].data, solver.net.params["ip"][0].data)
