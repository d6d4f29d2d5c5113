"""caffe.draw (a net as a pydot graph, rendered by Graphviz's dot) and caffe.coord_map (how the
coordinates of one NetSpec top map to another's, and the Crop that aligns them), as pycaffe's."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import caffe
import caffe.draw
from caffe import layers as L
from caffe import params as P
from caffe.coord_map import coord_map_from_to, crop
from caffe.model_io import read_net

REPO = Path(__file__).resolve().parents[1]
HOLONET = REPO / "script/SSE-HoloNet/SSE_holonet_train.prototxt"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz's dot is not installed (Debian: graphviz)")


def test_graph_has_a_node_per_layer_and_blob_and_keeps_one_phase() -> None:
    net = read_net(HOLONET)
    graph = caffe.draw.get_pydot_graph(net, "LR")
    names = {n.get_name().strip('"') for n in graph.get_nodes()}
    for layer in net.layer:
        assert f"{layer.name}_{layer.type}" in names
        for top in layer.top:
            assert f"{top}_blob" in names
    train = caffe.draw.get_pydot_graph(net, "LR", phase=caffe.TRAIN)
    kept = [l for l in net.layer if not any(r.phase == caffe.TEST for r in l.include)]
    layer_nodes = [n for n in train.get_nodes() if not n.get_name().endswith('_blob"')]
    assert len(layer_nodes) == len(kept) < len(net.layer)


def test_labels_name_convolution_geometry_and_learning_rates() -> None:
    net = read_net(HOLONET)
    conv = next(l for l in net.layer if l.type == "Convolution")
    label = caffe.draw.get_layer_label(conv, "TB", display_lrm=True)
    assert conv.name in label and "kernel size: 7" in label and "lr mult" in label
    assert caffe.draw.get_pooling_types_dict()[0] == "MAX"


@needs_dot
def test_draw_net_renders_png_and_draw_net_to_file_writes_it(tmp_path) -> None:
    net = read_net(HOLONET)
    png = caffe.draw.draw_net(net, "TB", ext="png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "net.svg"
    caffe.draw.draw_net_to_file(net, str(out), "LR", caffe.TEST)
    assert out.read_text().lstrip().startswith(("<?xml", "<svg"))


def spec(ks=3, stride=1, pad=0, pool=2, dstride=2, dpad=0):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 1, 100, 100]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=ks, stride=stride, pad=pad)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=pool, stride=pool)
    n.deconv = L.Deconvolution(n.pool, num_output=4, kernel_size=2 * dstride, stride=dstride,
                               pad=dpad)
    return n


def test_conv_pool_deconv_maps_back_to_the_input() -> None:
    n = spec()
    assert coord_map_from_to(n.deconv, n.data) == (1, 1, 0)
    n = spec(pool=4, dstride=4)
    assert coord_map_from_to(n.deconv, n.data) == (1, 1, -1)
    n = spec(pad=3)
    assert coord_map_from_to(n.deconv, n.data) == (1, 1, -3)
    n = spec()
    assert coord_map_from_to(n.conv, n.data) == (1, 1, 1)
    assert coord_map_from_to(n.data, n.conv) == (1, 1, -1)


def test_per_axis_parameters_give_per_axis_maps() -> None:
    n = spec(ks=[3, 5], stride=[1, 2], pad=[0, 10])
    ax, a, b = coord_map_from_to(n.conv, n.data)
    np.testing.assert_array_equal(a, [1, 2])
    np.testing.assert_array_equal(b, [1, -8])


def test_crop_aligns_and_rejects_what_cannot_be_cropped() -> None:
    n = spec()
    n.crop = crop(n.deconv, n.data)
    assert coord_map_from_to(n.crop, n.data) == (1, 1, 0)
    proto = n.to_proto()
    assert proto.layer[-1].type == "Crop" and proto.layer[-1].crop_param.axis == 2
    mismatch = spec(pool=3, dstride=2)
    with pytest.raises(AssertionError):
        crop(mismatch.deconv, mismatch.data)
    bad = spec(dpad=10)
    with pytest.raises(AssertionError):
        crop(bad.deconv, bad.data)
    n.ip = L.InnerProduct(n.deconv, num_output=3)
    with pytest.raises(RuntimeError):
        coord_map_from_to(n.ip, n.data)
