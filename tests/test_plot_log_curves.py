"""Training curves from Caffe logs (real Caffe's golden logs and ours) and from a live run."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import caffe
from caffe import model_io
from caffe.tools.plot_log import LivePlot, main, parse_log, read_log

GOLDEN_CASES = ("sgd_training",)

TEST_LOG = """I1128 04:27:06.100000 12345 solver.cpp:347] Iteration 0, Testing net (#0)
I1128 04:27:06.200000 12345 solver.cpp:414]     Test net output #0: accuracy = 0.25
I1128 04:27:06.200000 12345 solver.cpp:414]     Test net output #1: loss = 1.6 (* 1 = 1.6 loss)
I1128 04:27:06.300000 12345 solver.cpp:347] Iteration 0, Testing net (#1)
I1128 04:27:06.400000 12345 solver.cpp:414]     Test net output #0: accuracy = 0.2
I1128 04:27:06.500000 12345 solver.cpp:239] Iteration 0 (0 iter/s, 0.1s/10 iters), loss = 1.7
I1128 04:27:06.500000 12345 solver.cpp:258]     Train net output #0: loss = 1.7 (* 1 = 1.7 loss)
I1128 04:27:06.500000 12345 sgd_solver.cpp:112] Iteration 0, lr = 0.01
I1128 04:27:07.500000 12345 solver.cpp:239] Iteration 10, loss = 1.2
I1128 04:27:07.500000 12345 sgd_solver.cpp:112] Iteration 10, lr = 1e-03
I1128 04:27:08.100000 12345 solver.cpp:347] Iteration 20, Testing net (#0)
I1128 04:27:08.200000 12345 solver.cpp:414]     Test net output #0: accuracy = 0.75
I1128 04:27:08.200000 12345 solver.cpp:414]     Test net output #1: loss = 0.6 (* 1 = 0.6 loss)
"""


def test_real_caffe_log_gives_the_logged_losses_and_rates(golden):
    case = golden / "sgd_training"
    ref = json.loads((case / "losses.json").read_text())["itersize1"]
    curves = read_log(case / "train_itersize1.log")
    train = dict(curves.train["loss"])
    assert [train[k] for k in ref["iterations"]] == ref["loss"]
    assert [lr for _, lr in curves.lr] == ref["lr"]
    assert train[30] == pytest.approx(0.311909)  # the display pass after training


def test_test_outputs_of_several_test_nets_and_old_loss_lines():
    curves = parse_log(TEST_LOG.splitlines())
    assert curves.test["accuracy"] == [(0, 0.25), (20, 0.75)]
    assert curves.test["loss"] == [(0, 1.6), (20, 0.6)]
    assert curves.test["#1/accuracy"] == [(0, 0.2)]
    assert curves.train["loss"] == [(0, 1.7), (10, 1.2)]
    assert curves.lr == [(0, 0.01), (10, 1e-3)]


def test_command_writes_png_and_csv(tmp_path, capsys):
    log = tmp_path / "train.log"
    log.write_text(TEST_LOG)
    assert main([str(log), "-o", str(tmp_path / "c.png"), "--csv", str(tmp_path / "c")]) == 0
    import matplotlib.image as mpimg
    image = mpimg.imread(tmp_path / "c.png")
    assert image.shape[0] > 600 and image.shape[1] == 800
    assert image[..., :3].std() > 0.05  # something is drawn
    rows = (tmp_path / "c.test.csv").read_text().splitlines()
    assert rows[0] == "iteration,accuracy,loss,#1/accuracy" and rows[2] == "20,0.75,0.6,"
    assert (tmp_path / "c.train.csv").read_text().splitlines()[2] == "10,1.2,,0.001"


def test_log_without_training_lines_is_an_error(tmp_path, capsys):
    log = tmp_path / "empty.log"
    log.write_text("nothing here\n")
    assert main([str(log)]) == 1
    assert "nothing to plot" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.log")]) == 1


def test_live_plot_draws_during_a_run(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"] = rng.normal(size=(12, 4)).astype(np.float32)
        f["label"] = rng.integers(0, 2, size=12).astype(np.float32)
    (tmp_path / "list.txt").write_text("d.h5\n")
    (tmp_path / "net.prototxt").write_text(
        'layer { name: "d" type: "HDF5Data" top: "data" top: "label" '
        'hdf5_data_param { source: "list.txt" batch_size: 4 } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
        'inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }\n'
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n'
        'layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" '
        'include { phase: TEST } }\n')
    monkeypatch.chdir(tmp_path)
    solver = caffe.get_solver(model_io.parse_solver_text(
        'net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed" display: 2 max_iter: 12 '
        'test_iter: 1 test_interval: 6 snapshot_after_train: false'))
    live = LivePlot(tmp_path / "live.png", every=2)
    solver.add_observer(live)
    solver.solve()
    assert (tmp_path / "live.png").stat().st_size > 10000
    assert [it for it, _ in live.curves.test["acc"]] == [0, 6, 12]
    assert [it for it, _ in live.curves.train["loss"]] == list(range(0, 12, 2))
    assert len(live.curves.lr) == 6
