"""Data and ImageData layers reproduce the batches real Caffe fed its nets (golden datum_db:
expected_lmdb_pycaffe.npz / expected_imagedata_pycaffe.npz), with and without worker processes."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import caffe
from caffe.data import set_num_workers

from conftest import GOLDEN

GOLDEN_CASES = ("datum_db",)

DATUM_DB = GOLDEN / "datum_db"

CASES = {  # net -> (number of batches, files the net reads relative to the working directory)
    "lmdb": (3, ["color_lmdb", "mean.binaryproto"]),
    "imagedata": (2, ["gray", "gray_list.txt"]),
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    for name in ["extract_lmdb", "extract_imagedata"]:
        for ext in (".prototxt", ".caffemodel"):
            shutil.copy(DATUM_DB / (name + ext), tmp_path)
    for _, files in CASES.values():
        for f in files:
            src = DATUM_DB / f
            (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / f)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    set_num_workers(None)


def _run(net_name: str, batches: int) -> dict[str, np.ndarray]:
    net = caffe.Net(f"extract_{net_name}.prototxt", caffe.TEST,
                    weights=f"extract_{net_name}.caffemodel")
    out: dict[str, list[np.ndarray]] = {}
    try:
        for _ in range(batches):
            net.forward()
            for name in net.blobs:
                out.setdefault(name, []).append(net.blobs[name].data.copy())
    finally:
        net.layer_dict["data"].close()
    return {k: np.concatenate(v) for k, v in out.items()}


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("net_name", ["lmdb", "imagedata"])
def test_batches_and_outputs_match_caffe(workdir, net_name, workers):
    set_num_workers(workers)
    batches, _ = CASES[net_name]
    got = _run(net_name, batches)
    expected = np.load(DATUM_DB / f"expected_{net_name}_pycaffe.npz")
    for name in expected.files:
        if name in ("data", "label"):
            assert np.array_equal(got[name], expected[name]), name
        else:
            np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-6, err_msg=name)


def test_data_layer_wraps_around_to_the_first_record(workdir):
    set_num_workers(0)
    got = _run("lmdb", 4)
    expected = np.load(DATUM_DB / "expected_lmdb_pycaffe.npz")
    assert np.array_equal(got["data"][6:8], expected["data"][0:2])
    assert np.array_equal(got["label"][6:8], expected["label"][0:2])
