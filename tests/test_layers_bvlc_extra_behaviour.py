"""Behaviour of the BVLC layer types beyond the golden nets: the configurations real Caffe refuses
(golden ``layers_all`` probes) are errors that name the layer, WindowData's context padding,
square crops, mirroring and mean file, DummyData through NetSpec, Filter with nothing selected."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import caffe
from caffe.errors import CaffeError, NetError
from caffe.model_io import parse_net_text


def _net(text: str, phase=caffe.TRAIN) -> caffe.Net:
    return caffe.Net(net_param=parse_net_text('name: "t"\n' + text), phase=phase)


def test_spp_level_whose_pad_reaches_its_kernel_is_an_error_naming_the_layer():
    with pytest.raises(NetError, match=r"layer 'spp' \(SPP\).*level 2.*pad"):
        _net('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 '
             'dim: 5 dim: 5 } } }\n'
             'layer { name: "spp" type: "SPP" bottom: "x" top: "s" spp_param { pyramid_height: 3 } }')


def test_crop_out_of_bounds_is_an_error_naming_the_dimension():
    with pytest.raises(NetError, match=r"layer 'c' \(Crop\).*dimension 2 is out-of-bounds"):
        _net('layer { name: "in" type: "Input" top: "x" top: "y" input_param { shape { dim: 1 '
             'dim: 1 dim: 4 dim: 4 } shape { dim: 1 dim: 1 dim: 3 dim: 3 } } }\n'
             'layer { name: "c" type: "Crop" bottom: "x" bottom: "y" top: "c" crop_param { offset: 2 } }')


@pytest.mark.parametrize("param,message", [
    ('shape { dim: 2 } data_filler { type: "constant" } data_filler { type: "constant" } '
     'data_filler { type: "constant" }', "data_filler"),
    ('shape { dim: 2 } num: 2 channels: 1 height: 1 width: 1', "not both"),
    ('shape { dim: 2 } shape { dim: 3 } shape { dim: 4 }', "'shape' once or once per top"),
])
def test_dummy_data_bad_parameters_are_errors_naming_the_layer(param, message):
    with pytest.raises(NetError, match=rf"layer 'dd' \(DummyData\).*{message}"):
        _net(f'layer {{ name: "dd" type: "DummyData" top: "a" top: "b" dummy_data_param {{ {param} }} }}')


def test_dummy_data_from_net_spec_feeds_a_training_step():
    from caffe import layers as L

    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(shape=[dict(dim=[4, 1, 5, 5]), dict(dim=[4, 1, 1, 1])],
                                  data_filler=[dict(type="gaussian", std=1), dict(type="constant")],
                                  ntop=2)
    n.ip = L.InnerProduct(n.data, num_output=3, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.ip, n.label)
    net = caffe.Net(net_param=n.to_proto(), phase=caffe.TRAIN)
    net.blobs["label"].data[...] = np.array([0, 1, 2, 1]).reshape(4, 1, 1, 1)
    net.forward()
    net.backward()
    np.testing.assert_array_equal(net.blobs["label"].data.ravel(), [0, 1, 2, 1])
    assert np.abs(net.params["ip"][0].diff).max() > 0


def test_filter_with_nothing_selected_gives_an_empty_top_and_zero_gradient():
    net = _net('force_backward: true\n'
               'layer { name: "in" type: "Input" top: "x" top: "s" input_param { shape { dim: 3 '
               'dim: 2 } shape { dim: 3 } } }\n'
               'layer { name: "f" type: "Filter" bottom: "x" bottom: "s" top: "f" }\n'
               'layer { name: "r" type: "Reduction" bottom: "f" top: "r" loss_weight: 1 }')
    assert net.blobs["f"].shape == (3, 2)
    net.forward(x=np.ones((3, 2), np.float32), s=np.zeros(3, np.float32))
    assert net.blobs["f"].data.shape == (0, 2)
    net.backward()
    assert not net.blobs["x"].diff.any()


def test_embed_and_batch_reindex_refuse_bad_indices():
    net = _net('layer { name: "in" type: "Input" top: "i" input_param { shape { dim: 2 } } }\n'
               'layer { name: "e" type: "Embed" bottom: "i" top: "e" embed_param { input_dim: 3 '
               'num_output: 2 } }')
    with pytest.raises(CaffeError, match=r"layer 'e' \(Embed\).*index 1.5"):
        net.forward(i=np.array([0, 1.5], np.float32))
    net = _net('layer { name: "in" type: "Input" top: "x" top: "p" input_param { shape { dim: 2 '
               'dim: 2 } shape { dim: 2 } } }\n'
               'layer { name: "r" type: "BatchReindex" bottom: "x" bottom: "p" top: "r" }')
    with pytest.raises(CaffeError, match=r"layer 'r' \(BatchReindex\).*index 2"):
        net.forward(x=np.ones((2, 2), np.float32), p=np.array([0, 2], np.float32))


def _window_net(tmp_path, window: str, extra_transform: str = "", extra: str = "",
                batch: int = 2) -> caffe.Net:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "w.png"), img)
    (tmp_path / "windows.txt").write_text(
        f"# 0\n{tmp_path / 'w.png'}\n3\n10\n12\n2\n{window}\n3 0.0 0 0 3 3\n")
    net = _net(f'layer {{ name: "win" type: "WindowData" top: "data" top: "label" '
               f'transform_param {{ crop_size: 4 {extra_transform} }} '
               f'window_data_param {{ source: "{tmp_path / "windows.txt"}" batch_size: {batch} '
               f'fg_fraction: 0.5 {extra} }} }}', caffe.TEST)
    return net, img


def test_window_data_square_crop_with_context_pad_leaves_the_outside_of_the_image_zero(tmp_path):
    # box x 8..11, y 2..9 (4 wide, 8 high) -> square 8x8 centred at (10, 6), context 4/2 = 2x:
    # x 2..18, y -2..14, clipped to x 2..11, y 0..9; scale 4/17 per pixel.
    net, img = _window_net(tmp_path, "1 0.9 8 2 11 9", extra='crop_mode: "square" context_pad: 1')
    net.forward()
    fg = net.blobs["data"].data[1]
    assert net.blobs["label"].data.tolist() == [0.0, 1.0]
    scale = 4 / 17
    pad_y = round(2 * scale)
    size_w, size_h = round(10 * scale), round(10 * scale)
    expected = cv2.resize(img[0:10, 2:12], (size_w, size_h), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(fg[:, pad_y:pad_y + size_h, :size_w],
                                  expected.transpose(2, 0, 1).astype(np.float32))
    assert not fg[:, :pad_y].any() and not fg[:, :, size_w:].any()


def test_window_data_mirror_and_mean_file(tmp_path):
    mean = np.arange(3 * 6 * 6, dtype=np.float32).reshape(1, 3, 6, 6)
    caffe.model_io.write_blobproto(caffe.io.array_to_blobproto(mean), tmp_path / "mean.binaryproto")
    net, img = _window_net(tmp_path, "1 0.9 4 3 7 6",
                           extra_transform=f'mirror: true mean_file: "{tmp_path / "mean.binaryproto"}"',
                           batch=16)
    net.forward()
    crop = img[3:7, 4:8].transpose(2, 0, 1).astype(np.float32) - mean[0, :, 1:5, 1:5]
    flipped = img[3:7, 4:8][:, ::-1].transpose(2, 0, 1).astype(np.float32) - mean[0, :, 1:5, 1:5]
    seen = set()
    for item in net.blobs["data"].data[8:]:
        if np.array_equal(item, crop):
            seen.add("plain")
        elif np.array_equal(item, flipped):
            seen.add("mirrored")
        else:
            raise AssertionError("a foreground item is neither the window nor its mirror image")
    assert seen == {"plain", "mirrored"}


def test_net_spec_keywords_reach_the_new_layer_types_parameters():
    from caffe import layers as L, params as P

    n = caffe.NetSpec()
    n.x, n.cont, n.i = L.Input(shape=[dict(dim=[4, 2, 3, 3]), dict(dim=[4, 2]), dict(dim=[4])], ntop=3)
    n.lstm = L.LSTM(n.x, n.cont, num_output=3)
    n.rnn = L.RNN(n.x, n.cont, num_output=2)
    n.spp = L.SPP(n.x, pyramid_height=2, pool=P.SPP.AVE)
    n.red = L.Reduction(n.x, operation=P.Reduction.ASUM, axis=1)
    n.emb = L.Embed(n.i, input_dim=3, num_output=2)
    n.im = L.Im2col(n.x, kernel_size=3, pad=1)
    n.clip = L.Clip(n.x, min=-1, max=1)
    n.par = L.Parameter(shape=dict(dim=[2, 2]))
    net = caffe.Net(net_param=n.to_proto(), phase=caffe.TRAIN)
    shapes = {name: net.blobs[name].shape for name in ("lstm", "rnn", "spp", "red", "emb", "im", "par")}
    assert shapes == {"lstm": (4, 2, 3), "rnn": (4, 2, 2), "spp": (4, 10), "red": (4,),
                      "emb": (4, 2), "im": (4, 18, 3, 3), "par": (2, 2)}
