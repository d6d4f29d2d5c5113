"""pycaffe's Net methods beyond forward/backward (forward_all, forward_backward_all, save_hdf5 /
load_hdf5, set_input_arrays), a Python layer's own blobs as parameters (net.params, caffemodel,
solver), and errors that are also the built-in types pycaffe raised. Golden: ``pycaffe_api``."""
from __future__ import annotations

import sys

import h5py
import numpy as np
import pytest

import caffe
from caffe.model_io import parse_net_text
from golden_utils import param_key

GOLDEN_CASES = ("pycaffe_api",)

NET = """name: "m"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 }
    bias_filler { type: "constant" value: 0.5 } } }
layer { name: "relu" type: "ReLU" bottom: "ip" top: "ip" }
"""


def small_net() -> caffe.Net:
    caffe.set_random_seed(5)
    return caffe.Net(net_param=parse_net_text(NET), phase=caffe.TEST)


def expected(net: caffe.Net, x: np.ndarray) -> np.ndarray:
    w, b = (p.data for p in net.params["ip"])
    return np.maximum(x @ w.T + b, 0)


def test_forward_all_pads_the_last_batch_and_drops_the_padding() -> None:
    net = small_net()
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    out = net.forward_all(data=x)
    assert set(out) == {"ip"} and out["ip"].shape == (5, 2)
    np.testing.assert_allclose(out["ip"], expected(net, x), rtol=1e-5, atol=1e-6)
    with_blobs = net.forward_all(blobs=["data"], data=x)
    np.testing.assert_array_equal(with_blobs["data"], x)


def test_forward_backward_all_returns_outputs_and_input_diffs_for_every_item() -> None:
    net = caffe.Net(net_param=parse_net_text("force_backward: true\n" + NET), phase=caffe.TEST)
    x = np.random.default_rng(1).normal(size=(3, 3)).astype(np.float32)
    g = np.ones((3, 2), np.float32)
    outs, diffs = net.forward_backward_all(data=x, ip=g)
    np.testing.assert_allclose(outs["ip"], expected(net, x), rtol=1e-5, atol=1e-6)
    w = net.params["ip"][0].data
    mask = (x @ w.T + net.params["ip"][1].data) > 0
    np.testing.assert_allclose(diffs["data"], (g * mask) @ w, rtol=1e-5, atol=1e-6)


def test_save_hdf5_then_load_hdf5_restores_every_parameter(tmp_path) -> None:
    net = small_net()
    path = tmp_path / "w.h5"
    net.save_hdf5(str(path))
    with h5py.File(path) as f:
        assert sorted(f["data"]) == ["data", "ip", "relu"]
        assert f["data/ip/0"].dtype == np.float32 and f["data/ip/0"].shape == (2, 3)
    other = small_net()
    other.params["ip"][0].data[...] = 0
    other.load_hdf5(str(path))
    np.testing.assert_array_equal(other.params["ip"][0].data, net.params["ip"][0].data)


def test_load_hdf5_with_other_shapes_is_an_error_naming_the_layer(tmp_path) -> None:
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data/ip/0", data=np.zeros((4, 3), np.float32))
        f.create_dataset("data/ip/1", data=np.zeros((4,), np.float32))
    with pytest.raises(caffe.WeightsError, match="'ip' blob 0"):
        small_net().load_hdf5(str(path))


def test_set_input_arrays_feeds_a_memory_data_net() -> None:
    text = ('layer { name: "mem" type: "MemoryData" top: "data" top: "label" memory_data_param '
            '{ batch_size: 2 channels: 1 height: 1 width: 3 } }')
    net = caffe.Net(net_param=parse_net_text(text), phase=caffe.TEST)
    data = np.arange(12, dtype=np.float32).reshape(4, 1, 1, 3)
    net.set_input_arrays(data, np.array([0, 1, 2, 3], np.float32))
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, data[:2])
    net.forward()
    np.testing.assert_array_equal(net.blobs["label"].data, np.reshape([2, 3], (2, 1, 1, 1)))
    with pytest.raises(TypeError):
        net.set_input_arrays(data.astype(np.float64), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="MemoryData"):
        small_net().set_input_arrays(data, np.zeros(4, np.float32))


def test_errors_keep_their_classes_and_are_the_built_in_types_pycaffe_raised() -> None:
    net = small_net()
    with pytest.raises(ValueError) as info:
        net.forward(start="no_such_layer")
    assert isinstance(info.value, caffe.NetError)
    with pytest.raises(KeyError) as info:
        net.forward(nope=np.zeros(1))
    assert isinstance(info.value, caffe.NetError) and "nope" in str(info.value)
    with pytest.raises(ValueError):
        caffe.Net(net_param=parse_net_text('layer { name: "x" type: "NoSuchType" top: "x" }'),
                  phase=caffe.TEST)
    assert issubclass(caffe.ParseError, ValueError) and issubclass(caffe.SolverError, ValueError)


# ------------------------------------------------------------------ golden: a Python layer's blobs
@pytest.fixture
def pylayer_case(golden, monkeypatch):
    case = golden / "pycaffe_api"
    monkeypatch.syspath_prepend(str(case))
    monkeypatch.chdir(case)
    yield case
    sys.modules.pop("pyparam_layer", None)


def test_golden_python_layer_blob_is_a_parameter_trained_saved_and_loaded(pylayer_case, tmp_path):
    case = pylayer_case
    solver = caffe.SGDSolver(str(case / "pylayer_solver.prototxt"))
    assert list(solver.net.params) == ["conv", "pyscale", "fc"]
    np.testing.assert_array_equal(solver.net.params["pyscale"][0].data, [1.5, 1.5, 1.5])
    solver.net.copy_from(str(case / "g_init.caffemodel"))
    solver.net.blobs["data"].data[...] = np.load(case / "g_input_data.npy")
    solver.net.blobs["label"].data[...] = np.load(case / "g_input_label.npy")
    steps = np.load(case / "g_solver_steps.npz")
    for k in (1, 2):
        solver.step(1)
        for key in steps.files:
            if key.startswith(f"param_after_step{k}:"):
                layer, i = param_key(key.split(":", 1)[1])
                np.testing.assert_allclose(solver.net.params[layer][i].data, steps[key],
                                           rtol=1e-5, atol=1e-6, err_msg=key)
    path = tmp_path / "after.caffemodel"
    solver.net.save(str(path))
    net = caffe.Net(str(case / "pylayer_net.prototxt"), caffe.TEST, weights=str(path))
    np.testing.assert_allclose(net.params["pyscale"][0].data, steps["param_after_step2:pyscale:0"],
                               rtol=1e-5, atol=1e-6)


def test_netspec_with_a_tuple_bottom_is_a_type_error_naming_the_input() -> None:
    data = caffe.layers.DummyData(ntop=2)
    with pytest.raises(TypeError, match=r"^Silence input 0 is not a Top \(type is <class 'tuple'>\)$"):
        caffe.layers.Silence(data, ntop=0)


def golden_api_net(golden) -> caffe.Net:
    case = golden / "pycaffe_api"
    return caffe.Net(str(case / "net.prototxt"), str(case / "weights.caffemodel"), caffe.TEST)


def test_golden_forward_all_and_forward_backward_all(golden) -> None:
    case = golden / "pycaffe_api"
    net = golden_api_net(golden)
    x = np.load(case / "e_data_many.npy")
    for blobs, name in ((None, "e_forward_all.npz"), (["fc"], "e_forward_all_with_blobs.npz")):
        out, expected = net.forward_all(blobs=blobs, data=x), np.load(case / name)
        assert set(out) == set(expected.files)
        for key in expected.files:
            np.testing.assert_allclose(out[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
    top = np.load(case / "e_output_diffs_many.npz")
    outs, diffs = net.forward_backward_all(data=x, **{k: top[k] for k in top.files})
    for got, name in ((outs, "e_forward_backward_all_outs.npz"),
                      (diffs, "e_forward_backward_all_diffs.npz")):
        expected = np.load(case / name)
        for key in expected.files:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_golden_reshape_to_another_batch_size(golden) -> None:
    case = golden / "pycaffe_api"
    net = golden_api_net(golden)
    net.blobs["data"].reshape(3, 3, 8, 8)
    net.reshape()
    net.blobs["data"].data[...] = np.load(case / "h_data_reshaped.npy")
    net.forward()
    expected = np.load(case / "h_forward_after_reshape.npz")
    for key in expected.files:
        if key in net.blobs:  # the Split blobs are not exposed here
            np.testing.assert_allclose(net.blobs[key].data, expected[key], rtol=1e-5, atol=1e-6)


def test_golden_save_hdf5_layout_and_load(golden, tmp_path) -> None:
    case = golden / "pycaffe_api"
    net = golden_api_net(golden)
    net.save_hdf5(str(tmp_path / "w.h5"))
    with h5py.File(tmp_path / "w.h5") as mine, h5py.File(case / "weights_saved.h5") as caffes:
        split = {k for k in caffes["data"] if "split" in k}
        assert set(mine["data"]) == set(caffes["data"]) - split
        for layer in mine["data"]:
            for blob in mine["data"][layer]:
                np.testing.assert_array_equal(mine["data"][layer][blob], caffes["data"][layer][blob])
    other = caffe.Net(str(case / "net.prototxt"), caffe.TEST)
    other.load_hdf5(str(case / "weights_saved.h5"))
    np.testing.assert_array_equal(other.params["fc"][0].data, net.params["fc"][0].data)
