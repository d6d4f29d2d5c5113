"""The layer types of BVLC Caffe's full layer list (golden ``layers_all``: nets recorded from real
Caffe, forward and backward) are reproduced by the engine: forward within 1e-5 relative, gradients
within 1e-4, plus the DummyData, HDF5Output and WindowData behaviour recorded there."""
from __future__ import annotations

import json

import numpy as np
import pytest

import caffe
from golden_utils import param_key, rel_err


def _case(golden, name: str):
    case = golden / "layers_all" / name
    if not case.is_dir():
        pytest.skip(f"golden case {case} not found")
    return case


def test_every_bvlc_layer_type_is_registered(golden):
    manifest = json.loads((golden / "layers_all" / "manifest.json").read_text())
    bvlc = manifest["coverage"]["layer_types_registered"]
    assert set(bvlc) <= set(caffe.layer_type_list())


def test_dummy_data_constant_tops_are_filled_once_and_the_others_at_every_forward(golden):
    case = _case(golden, "rng")
    caffe.set_random_seed(1701)
    net = caffe.Net(str(case / "net.prototxt"), caffe.TRAIN)
    setup = np.load(case / "blobs_after_setup.npz")
    for name in setup.files:
        assert net.blobs[name].data.shape == setup[name].shape, name
    for name in ("dd_const", "dd_const_inplace", "dd_gauss", "dd_unif", "dd_legacy", "dd_xa"):
        np.testing.assert_array_equal(net.blobs[name].data, setup[name], err_msg=name)
    net.blobs["x"].data[...] = np.load(case / "expected_forward1.npz")["x"]
    previous = None
    for k in (1, 2, 3):
        net.forward()
        expected = np.load(case / f"expected_forward{k}.npz")
        for name in ("dd_const", "dd_const_inplace", "dd_legacy"):
            np.testing.assert_array_equal(net.blobs[name].data, expected[name], err_msg=f"{k} {name}")
        gauss = net.blobs["dd_gauss"].data.copy()
        assert np.all((net.blobs["dd_unif"].data >= -1) & (net.blobs["dd_unif"].data <= 1))
        assert not np.array_equal(net.blobs["dd_xa"].data, net.blobs["dd_xb"].data)
        if previous is not None:
            assert not np.array_equal(gauss, previous)
        previous = gauss
