"""Training parity with real Caffe: the golden sgd_training runs (SGD, momentum, weight decay, step
rate, iter_size 1 and 2, BatchNorm in TRAIN) and the lr_policies tables."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import caffe
from caffe import model_io
from golden_utils import param_key

GOLDEN_CASES = ("lr_policies", "sgd_training")


def _workdir(tmp_path: Path, case: Path, solver_name: str) -> Path:
    """A run directory like the golden one: the net and a list file naming the golden train.h5,
    snapshots under tmp_path/snap. Returns the solver path (relative paths, as Caffe reads them)."""
    (tmp_path / "train_h5_list.txt").write_text(str(case / "train.h5") + "\n")
    (tmp_path / "train.prototxt").write_text((case / "train.prototxt").read_text())
    (tmp_path / "snap").mkdir()
    (tmp_path / solver_name).write_text((case / solver_name).read_text())
    return tmp_path / solver_name


class Recorder:
    """Collects what the log shows: smoothed loss and lr per iteration."""

    def __init__(self) -> None:
        self.loss: dict[int, float] = {}
        self.lr: dict[int, float] = {}

    def on_train(self, it, loss, outputs):
        self.loss[it] = loss

    def on_lr(self, it, lr):
        self.lr[it] = lr


def _train(tmp_path, monkeypatch, case, solver_name):
    solver_path = _workdir(tmp_path, case, solver_name)
    monkeypatch.chdir(tmp_path)
    solver = caffe.get_solver(solver_path.name)
    solver.net.copy_from(str(case / "init.caffemodel"))
    rec = Recorder()
    solver.add_observer(rec)
    blob_losses = []
    for _ in range(solver.param.max_iter):
        solver.step(1)
        blob_losses.append(float(solver.net.blobs["loss"].data))
    return solver, rec, blob_losses


def _net_params(net) -> dict[str, np.ndarray]:
    return {f"{name}:{i}": b.data.copy() for name, blobs in net.params.items()
            for i, b in enumerate(blobs)}


@pytest.mark.parametrize("run", ["itersize1", "itersize2"])
def test_sgd_training_matches_caffe_losses_weights_and_snapshots(golden, tmp_path, monkeypatch, run):
    case = golden / "sgd_training"
    ref = json.loads((case / "losses.json").read_text())[run]
    solver, rec, blob_losses = _train(tmp_path, monkeypatch, case, f"solver_{run}.prototxt")

    expected = np.array(ref["pycaffe_loss_blob_after_each_step"])
    got = np.array(blob_losses)
    np.testing.assert_allclose(got[:5], expected[:5], rtol=1e-5)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    np.testing.assert_allclose([rec.loss[k] for k in ref["iterations"]], ref["loss"], rtol=1e-4)
    np.testing.assert_allclose([rec.lr[k] for k in ref["iterations"]], ref["lr"], rtol=1e-6)

    final = np.load(case / f"final_{run}_params.npz")
    params = solver.net.params
    for key in final.files:
        layer, i = param_key(key)
        if layer == "bn1":
            np.testing.assert_allclose(params[layer][i].data, final[key], rtol=1e-5, err_msg=key)
        else:
            np.testing.assert_allclose(params[layer][i].data, final[key], rtol=1e-4, atol=1e-6,
                                       err_msg=key)
    bn = ref["bn1_after_training"]
    np.testing.assert_allclose(params["bn1"][2].data, bn["scale_factor_blob"], rtol=1e-5)
    np.testing.assert_allclose(params["bn1"][0].data, bn["mean_blob"], rtol=1e-5)

    for it in (10, 20, 30):
        history = np.load(case / "snap" / f"{run}_iter_{it}_history.npz")
        state = model_io.read_solverstate(tmp_path / "snap" / f"{run}_iter_{it}.solverstate")
        assert state.iter == int(history["iter"]) == it
        assert state.current_step == int(history["current_step"])
        assert state.learned_net == f"snap/{run}_iter_{it}.caffemodel"
        assert len(state.history) == len([k for k in history.files if k.startswith("history:")])
        for i, bp in enumerate(state.history):
            got = model_io.blobproto_to_array(bp).reshape(history[f"history:{i}"].shape)
            np.testing.assert_allclose(got, history[f"history:{i}"], rtol=1e-4, atol=1e-6,
                                       err_msg=f"iter {it} history {i}")
        snap_params = np.load(case / "snap" / f"{run}_iter_{it}_params.npz")
        net = caffe.Net(str(tmp_path / "train.prototxt"), caffe.TEST,
                        weights=str(tmp_path / "snap" / f"{run}_iter_{it}.caffemodel"))
        for key in snap_params.files:
            layer, i = param_key(key)
            np.testing.assert_allclose(net.params[layer][i].data, snap_params[key], rtol=1e-4,
                                       atol=1e-6, err_msg=f"iter {it} {key}")


@pytest.mark.parametrize("run", ["itersize1", "itersize2"])
def test_first_update_matches_caffe_exactly(golden, tmp_path, monkeypatch, run):
    case = golden / "sgd_training"
    monkeypatch.chdir(tmp_path)
    solver_path = _workdir(tmp_path, case, f"solver_{run}.prototxt")
    solver = caffe.get_solver(solver_path.name)
    solver.net.copy_from(str(case / "init.caffemodel"))
    before = _net_params(solver.net)
    solver.step(1)
    after = _net_params(solver.net)
    ref = np.load(case / f"after_iter1_{run}.npz")
    for key in before:
        np.testing.assert_allclose(after[key], ref[f"param:{key}"], rtol=1e-5, atol=1e-7, err_msg=key)
        if key.startswith("bn1:"):  # statistics move in the forward pass; the update is zero
            assert not ref[f"update:{key}"].any()
            continue
        np.testing.assert_allclose(before[key] - after[key], ref[f"update:{key}"], rtol=1e-4,
                                   atol=1e-8, err_msg=key)


POLICIES = ["fixed", "step", "multistep", "multistep_unsorted_dup", "poly_p2", "poly_p0.5", "inv",
            "exp", "sigmoid"]


@pytest.mark.parametrize("policy", POLICIES)
def test_lr_policy_table_and_losses_match_caffe(golden, tmp_path, monkeypatch, policy):
    case = golden / "lr_policies"
    ref = json.loads((case / "lr.json").read_text())[policy]
    solver_path = _workdir(tmp_path, case, f"solver_{policy}.prototxt")
    monkeypatch.chdir(tmp_path)
    solver = caffe.get_solver(solver_path.name)
    solver.net.copy_from(str(case / "init.caffemodel"))
    rec = Recorder()
    solver.add_observer(rec)
    solver.step(solver.param.max_iter)
    np.testing.assert_allclose([rec.lr[k] for k in ref["iterations"]], ref["lr"], rtol=1e-5)
    np.testing.assert_allclose([rec.loss[k] for k in ref["iterations"]], ref["loss"], rtol=1e-4)


def test_solve_logs_in_caffe_format_and_snapshots_after_training(golden, tmp_path, monkeypatch,
                                                                   capfd):
    case = golden / "sgd_training"
    solver_path = _workdir(tmp_path, case, "solver_itersize1.prototxt")
    text = solver_path.read_text().replace("max_iter: 30", "max_iter: 12")
    solver_path.write_text(text)
    monkeypatch.chdir(tmp_path)
    solver = caffe.get_solver(solver_path.name)
    solver.net.copy_from(str(case / "init.caffemodel"))
    solver.solve()
    err = capfd.readouterr().err
    assert os.path.exists("snap/itersize1_iter_10.solverstate")
    assert os.path.exists("snap/itersize1_iter_12.caffemodel")
    logged = json.loads((case / "losses.json").read_text())["itersize1"]["loss"]
    assert "sgd_solver.cpp:112] Iteration 11, lr = 0.003" in err
    assert "Iteration 3 (" in err and f"loss = {logged[3]}" in err
    assert f"    Train net output #0: loss = {logged[3]} (* 1 = {logged[3]} loss)" in err
    assert "Snapshotting to binary proto file snap/itersize1_iter_12.caffemodel" in err
    assert "] Optimization Done." in err
    line = next(l for l in err.splitlines() if "Iteration 3 (" in l)
    assert line[0] == "I" and line[5] == " " and line[1:5].isdigit()
