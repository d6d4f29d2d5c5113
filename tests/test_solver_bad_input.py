"""The solver refuses bad input with clear errors, and stops on a non-finite loss naming the
iteration and the first layer that went non-finite."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import caffe
from caffe import model_io
from caffe.errors import ParseError, SolverError

NET = """name: "lin"
layer { name: "data" type: "HDF5Data" top: "data" top: "target"
  hdf5_data_param { source: "list.txt" batch_size: 4 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
%s
layer { name: "loss" type: "EuclideanLoss" bottom: "%s" bottom: "target" top: "loss" }
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"] = rng.normal(size=(8, 5)).astype(np.float32) + 2
        f["target"] = rng.normal(size=(8, 3)).astype(np.float32)
    (tmp_path / "list.txt").write_text("d.h5\n")
    (tmp_path / "net.prototxt").write_text(NET % ("", "ip"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def solver_text(extra: str = "", net: str = "net.prototxt") -> str:
    return f'net: "{net}" base_lr: 0.01 lr_policy: "fixed" max_iter: 10 display: 0 {extra}'


def test_solver_pointing_to_a_missing_net_file_names_it(workdir):
    (workdir / "s.prototxt").write_text(solver_text(net="nets/missing.prototxt"))
    with pytest.raises(SolverError, match=r"net file 'nets/missing.prototxt' not found.*current "
                                          r"directory"):
        caffe.get_solver("s.prototxt")


def test_unknown_solver_field_is_a_parse_error_with_line(workdir):
    (workdir / "s.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.01\nlearning_rate: 3\n')
    with pytest.raises(ParseError, match=r"s.prototxt:3:.*learning_rate"):
        caffe.get_solver("s.prototxt")


def test_missing_solver_file(workdir):
    with pytest.raises(ParseError, match="not found"):
        caffe.get_solver("nope.prototxt")


@pytest.mark.parametrize("extra,message", [
    ('lr_policy: "cosine"', None),
    ("", "exactly one train net"),
    ("average_loss: 0", "average_loss"),
    ("snapshot: 5 snapshot_prefix: \"no/such/dir/x\"", "Cannot write to snapshot prefix"),
    ('regularization_type: "L3"', "Unknown regularization type"),
    ("test_iter: 3", "test_interval"),
])
def test_inconsistent_solver_settings_are_refused(workdir, extra, message):
    if message is None:
        text = solver_text().replace('lr_policy: "fixed"', extra)
        message = "unknown lr_policy 'cosine'"
    elif message == "exactly one train net":
        text = solver_text() + ' train_net: "net.prototxt"'
    else:
        text = solver_text(extra)
    with pytest.raises(SolverError, match=message):
        caffe.get_solver(model_io.parse_solver_text(text))


def test_step_policy_needs_a_stepsize(workdir):
    text = solver_text().replace('"fixed"', '"step" gamma: 0.1')
    with pytest.raises(SolverError, match="stepsize"):
        caffe.get_solver(model_io.parse_solver_text(text))


def _snapshot_of_default_net(workdir) -> str:
    (workdir / "snap").mkdir()
    solver = caffe.get_solver(model_io.parse_solver_text(solver_text('snapshot_prefix: "snap/a"')))
    solver.step(1)
    return solver.snapshot()


def test_restoring_a_snapshot_with_other_param_count_is_refused(workdir):
    path = _snapshot_of_default_net(workdir)
    (workdir / "net2.prototxt").write_text((NET % ("", "ip")).replace("num_output: 3",
                                                                      "num_output: 3 bias_term: false"))
    other = caffe.get_solver(model_io.parse_solver_text(solver_text(net="net2.prototxt")))
    with pytest.raises(SolverError, match="Incorrect length of history blobs"):
        other.restore(path)


def test_restoring_a_snapshot_with_other_param_shapes_is_refused(workdir):
    path = _snapshot_of_default_net(workdir)
    with h5py.File(workdir / "d6.h5", "w") as f:
        f["data"] = np.zeros((8, 6), np.float32)
        f["target"] = np.zeros((8, 3), np.float32)
    (workdir / "list6.txt").write_text("d6.h5\n")
    (workdir / "net6.prototxt").write_text((NET % ("", "ip")).replace("list.txt", "list6.txt"))
    other = caffe.get_solver(model_io.parse_solver_text(solver_text(net="net6.prototxt")))
    with pytest.raises(SolverError, match=r"history blob 0 has shape \(3, 5\).*\(3, 6\)"):
        other.restore(path)


def test_restoring_a_snapshot_of_another_solver_type_is_refused(workdir):
    path = _snapshot_of_default_net(workdir)
    adam = caffe.get_solver(model_io.parse_solver_text(solver_text('type: "Adam"')))
    with pytest.raises(SolverError, match="Incorrect length of history blobs"):
        adam.restore(path)


def test_nan_from_a_layer_stops_the_run_naming_iteration_and_layer(workdir):
    log_layer = 'layer { name: "logit" type: "Log" bottom: "ip" top: "logged" }'
    (workdir / "net.prototxt").write_text(NET % (log_layer, "logged"))
    solver = caffe.get_solver(model_io.parse_solver_text(solver_text()))
    with pytest.raises(SolverError, match=r"Iteration 0: the loss is nan; layer 'logit' \(Log\) "
                                          r"produced a non-finite top 'logged'"):
        solver.step(3)


def test_diverging_training_stops_at_the_iteration_where_the_loss_explodes(workdir):
    solver = caffe.get_solver(model_io.parse_solver_text(
        solver_text("momentum: 0.9").replace("base_lr: 0.01", "base_lr: 1e12")))
    with pytest.raises(SolverError) as info:
        solver.step(10)
    message = str(info.value)
    iteration = int(message.split("Iteration ")[1].split(":")[0])
    assert iteration >= 1 and iteration == solver.iter
    assert "; layer '" in message and "non-finite" in message
