"""model_io against files written by real Caffe (tests/golden): caffemodels, solverstates,
binaryproto means and prototxts read to the values Caffe's own caffe_pb2 decoded."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caffe import model_io
from caffe.proto import caffe_pb2

from conftest import GOLDEN

GOLDEN_CASES = ("datum_db", "layers_forward", "sgd_training")


# caffemodel -> the npz of its decoded blobs ("layer:index" keys) written beside it.
def _caffemodels_with_params() -> list[tuple[Path, Path]]:
    pairs = [(m, m.with_name(m.stem + "_params.npz")) for m in sorted(GOLDEN.rglob("*.caffemodel"))]
    pairs = [(m, p) for m, p in pairs if p.exists()]
    pairs.append((GOLDEN / "layers_forward" / "weights.caffemodel", GOLDEN / "layers_forward" / "params.npz"))
    return [(m, p) for m, p in pairs if m.exists() and p.exists()]


def _params_of(net: caffe_pb2.NetParameter) -> dict[str, np.ndarray]:
    return {f"{layer.name}:{i}": model_io.blobproto_to_array(blob)
            for layer in net.layer for i, blob in enumerate(layer.blobs)}


@pytest.fixture(scope="module")
def caffemodel_pairs():
    pairs = _caffemodels_with_params()
    return pairs


def test_every_golden_caffemodel_reads_to_its_decoded_params(caffemodel_pairs):
    assert len(caffemodel_pairs) >= 10
    for model, params in caffemodel_pairs:
        got = _params_of(model_io.read_binary_net(model))
        expected = np.load(params)
        assert sorted(got) == sorted(expected.files), model
        for key in expected.files:
            assert got[key].dtype == np.float32
            np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{model} {key}")


def test_every_golden_caffemodel_is_readable():
    models = sorted(GOLDEN.rglob("*.caffemodel"))
    assert models
    for model in models:
        net = model_io.read_binary_net(model)
        assert net.layer and not net.layers, model


def test_solverstates_hold_iteration_and_history():
    states = sorted(GOLDEN.rglob("*.solverstate"))
    assert states
    for path in states:
        state = model_io.read_solverstate(path)
        expected = np.load(path.with_name(path.stem + "_history.npz"))
        assert state.iter == int(expected["iter"])
        assert state.current_step == int(expected["current_step"])
        assert len(state.history) == sum(k.startswith("history:") for k in expected.files)
        for i, blob in enumerate(state.history):
            np.testing.assert_array_equal(model_io.blobproto_to_array(blob), expected[f"history:{i}"])


def test_mean_binaryproto_uses_legacy_4d_shape():
    path = GOLDEN / "datum_db" / "mean.binaryproto"
    blob = model_io.read_blobproto(path)
    assert not blob.HasField("shape")
    assert model_io.blob_shape(blob) == (1, 3, 10, 12)
    np.testing.assert_array_equal(model_io.blobproto_to_array(blob), np.load(GOLDEN / "datum_db" / "mean.npy"))


def test_golden_solvers_read_with_nets_and_snapshot_prefix():
    solver = model_io.read_solver(GOLDEN / "sgd_training" / "solver_itersize2.prototxt")
    assert solver.net == "train.prototxt"
    assert solver.iter_size == 2
    assert solver.type == "SGD"
    assert solver.snapshot_prefix


def test_golden_nets_read_as_current_format():
    for path in sorted(GOLDEN.rglob("*.prototxt")):
        if "solver" in path.stem:
            continue
        net = model_io.read_net(path)
        assert net.layer and not net.layers and not net.input, path
