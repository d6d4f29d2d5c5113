"""The layer types of BVLC Caffe's full layer list (golden ``layers_all``: nets recorded from real
Caffe, forward and backward) are reproduced by the engine: forward within 1e-5 relative, gradients
within 1e-4, plus the DummyData, HDF5Output and WindowData behaviour recorded there."""
from __future__ import annotations

import json

import numpy as np
import pytest

import caffe
from golden_utils import param_key, rel_err

GOLDEN_CASES = ("layers_all/bias_scale", "layers_all/conv", "layers_all/forward_only",
                "layers_all/hdf5_output", "layers_all/loss", "layers_all/memory_data",
                "layers_all/neuron", "layers_all/norm", "layers_all/recurrent", "layers_all/rng",
                "layers_all/shape", "layers_all/special", "layers_all/window_data")


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


def _net(case, keep: set[str] | None = None, phase=caffe.TRAIN) -> caffe.Net:
    """The case's net (only the layers named in ``keep`` when given) with its recorded weights
    and inputs."""
    net_param = caffe.model_io.read_net(case / "net.prototxt")
    if keep is not None:
        kept = [lp for lp in net_param.layer if lp.name in keep]
        del net_param.layer[:]
        net_param.layer.extend(kept)
    net = caffe.Net(net_param=net_param, phase=phase)
    if (case / "weights.caffemodel").exists():
        net.copy_from(str(case / "weights.caffemodel"))
    for path in sorted(case.glob("input_*.npy")):
        name = path.stem[len("input_"):]
        if name in net.blobs and name in net.inputs:
            net.blobs[name].data[...] = np.load(path)
    return net


def _check_forward_backward(case, net: caffe.Net) -> None:
    net.forward()
    expected = np.load(case / "expected_forward.npz")
    compared = [n for n in expected.files if n in net.blobs]
    assert compared
    for name in compared:
        assert rel_err(net.blobs[name].data, expected[name]) <= 1e-5, name
    diffs = np.load(case / "output_diffs.npz")
    for name in diffs.files:
        if name in net.blobs:
            net.blobs[name].diff[...] = diffs[name]
    net.backward()
    blob_diff = np.load(case / "expected_blob_diff.npz")
    for name in (n for n in blob_diff.files if n in net.blobs):
        np.testing.assert_allclose(net.blobs[name].diff, blob_diff[name], rtol=1e-4, atol=1e-5,
                                   err_msg=name)
    param_diff = np.load(case / "expected_param_diff.npz")
    for key in param_diff.files:
        layer, i = param_key(key)
        if layer in net.params:
            np.testing.assert_allclose(net.params[layer][i].diff, param_diff[key], rtol=1e-4,
                                       atol=1e-5, err_msg=key)


@pytest.mark.parametrize("name", ["neuron", "shape", "special", "bias_scale", "recurrent"])
def test_layer_net_matches_caffe_forward_and_backward(golden, name, monkeypatch):
    case = _case(golden, name)
    monkeypatch.chdir(case)  # InfogainLoss reads its H file relative to the working directory
    _check_forward_backward(case, _net(case))


def test_normalization_layers_match_caffe_forward_and_backward(golden):
    """LRN (both regions), MVN, SPP, Reduction, Softmax, Pooling, BatchNorm on one input."""
    case = _case(golden, "norm")
    _check_forward_backward(case, _net(case))


def test_loss_layers_match_caffe_forward_and_backward(golden, monkeypatch):
    """Every loss of the case, SigmoidCrossEntropyLoss's BATCH_SIZE default included (each loss
    reads its own input copy)."""
    case = _case(golden, "loss")
    monkeypatch.chdir(case)  # InfogainLoss reads its H file relative to the working directory
    _check_forward_backward(case, _net(case))


def test_nd_convolutions_and_deconvolutions_match_caffe_forward_and_backward(golden):
    """1-D and 3-D Convolution/Deconvolution (per-axis kernel, stride, pad and dilation, groups)
    beside the 2-D ones, forward and backward against Caffe; the whole case runs, as x's gradient
    also holds its Im2col and InnerProduct layers."""
    case = _case(golden, "conv")
    net = _net(case)
    expected = np.load(case / "expected_forward.npz")
    nd = {"conv1d", "conv3d", "conv3d_g2", "deconv3d"}
    assert nd <= set(expected.files) and {net.blobs[n].data.ndim for n in nd} == {3, 5}
    assert {"x1d", "x3d"} <= set(np.load(case / "expected_blob_diff.npz").files)
    _check_forward_backward(case, net)


def test_im2col_matches_caffe_forward_and_its_backward_is_the_adjoint(golden):
    """Forward against Caffe; the golden input gradient also holds the case's convolutions, so
    the backward is checked as the adjoint of the forward: <im2col(x), g> == <x, dx(g)>."""
    case = _case(golden, "conv")
    net = _net(case, {"in_x", "im2col", "im2col_dil"})
    net.forward()
    expected = np.load(case / "expected_forward.npz")
    rng = np.random.default_rng(5)
    for name in ("im2col", "im2col_dil"):
        assert rel_err(net.blobs[name].data, expected[name]) <= 1e-5, name
    grads = {name: rng.normal(size=net.blobs[name].shape).astype(np.float32)
             for name in ("im2col", "im2col_dil")}
    for name, g in grads.items():
        net.blobs[name].diff[...] = g
    net.backward()
    x = net.blobs["x"].data.astype(np.float64)
    lhs = sum(float((net.blobs[n].data.astype(np.float64) * g).sum()) for n, g in grads.items())
    rhs = float((x * net.blobs["x"].diff).sum())
    assert abs(lhs - rhs) <= 1e-4 * max(abs(lhs), 1.0)


def test_recurrent_state_carries_over_between_forwards_unless_exposed(golden):
    """A second forward starts from the last hidden (and cell) state of the first; a new net, and
    the exposed layers, start from zeros or the given state."""
    case = _case(golden, "recurrent")
    net = _net(case)
    net.forward()
    net.blobs["cont"].data[...] = np.load(case / "input_cont2.npy")
    net.forward()
    fresh = _net(case)
    fresh.blobs["cont"].data[...] = np.load(case / "input_cont2.npy")
    fresh.forward()
    carried = np.load(case / "expected_forward2.npz")
    from_zero = np.load(case / "expected_forward2_fresh_net.npz")
    for name in ("rnn", "rnn_static", "rnn_exposed", "lstm", "lstm_static", "lstm_exposed",
                 "lstm_exposed_hT", "lstm_exposed_cT"):
        assert rel_err(net.blobs[name].data, carried[name]) <= 1e-5, name
        assert rel_err(fresh.blobs[name].data, from_zero[name]) <= 1e-5, name
    assert not np.allclose(carried["rnn"], from_zero["rnn"])


def test_forward_only_layers_match_caffe(golden):
    """ArgMax breaks ties toward the higher index (Caffe sorts (value, index) pairs descending),
    Threshold is strict, Dropout in TEST is the identity, and Accuracy counts ties against the
    sample: every top of the TEST net equals Caffe's."""
    case = _case(golden, "forward_only")
    net = _net(case, phase=caffe.TEST)
    net.forward()
    expected = np.load(case / "expected_forward.npz")
    for name in expected.files:
        assert net.blobs[name].data.shape == expected[name].shape, name
        np.testing.assert_array_equal(net.blobs[name].data, expected[name], err_msg=name)


def test_memory_data_serves_arrays_in_order_untransformed_with_4d_labels(golden):
    """Batches 0-1, 2-3, 4-5, 0-1 of ``set_input_arrays``, ``transform_param`` ignored, and the
    label top N at setup and N x 1 x 1 x 1 after a forward (memory_data_layer.cpp)."""
    case = _case(golden, "memory_data")
    net = caffe.Net(str(case / "net.prototxt"), caffe.TEST)
    assert net.blobs["label"].data.shape == (2,)
    net.set_input_arrays(np.load(case / "input_arrays_data.npy"),
                         np.load(case / "input_arrays_labels.npy"))
    expected = np.load(case / "expected_forwards.npz")
    for k in (1, 2, 3, 4):
        net.forward()
        for name in ("data", "label", "sum"):
            assert rel_err(net.blobs[name].data, expected[f"forward{k}/{name}"]) <= 1e-6, (k, name)


def test_hdf5_output_writes_its_bottoms_in_legacy_4d_shapes_once(golden, tmp_path, monkeypatch):
    import h5py

    case = _case(golden, "hdf5_output")
    monkeypatch.chdir(tmp_path)
    net = caffe.Net(str(case / "net.prototxt"), caffe.TEST)
    with h5py.File(tmp_path / "hdf5_output.h5", "r") as f:
        assert list(f) == []
    net.blobs["x"].data[...] = np.load(case / "input_x.npy")
    net.blobs["lab"].data[...] = np.load(case / "input_lab.npy")
    net.forward()
    expected = np.load(case / "hdf5_output_content.npz")
    with h5py.File(tmp_path / "hdf5_output.h5", "r") as f:
        assert sorted(f) == sorted(expected.files)
        for name in expected.files:
            assert f[name].dtype == np.float32
            np.testing.assert_array_equal(f[name][()], expected[name], err_msg=name)
    with pytest.raises(caffe.errors.NetError, match="already holds"):
        net.forward()


def test_window_data_reads_background_then_foreground_windows_like_caffe(golden, monkeypatch):
    case = _case(golden, "window_data")
    monkeypatch.chdir(case)
    net = caffe.Net(str(case / "net.prototxt"), caffe.TEST)
    expected = np.load(case / "expected_forward.npz")
    for _ in range(2):
        net.forward()
        np.testing.assert_array_equal(net.blobs["label"].data, expected["label"])
        np.testing.assert_allclose(net.blobs["data"].data, expected["data"], rtol=1e-6, atol=1e-5)
