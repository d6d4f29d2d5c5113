"""Every generated prototxt builds in the engine (train and test with their data layers replaced by
Input, since the databases are not here; deploy as written), and each form has the structure the
project's reading of the variant names gives it."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

import caffe
from caffe.model_io import read_net
from sse.nets.common import input_form
from sse.nets.variants import BACKBONES, VARIANTS, build_net, get_backbone

SCRIPT = Path(__file__).resolve().parents[1] / "script"


def engine_net(param, channels: int, size: int, phase: int, batch: int = 1) -> caffe.Net:
    if param.layer[0].type != "Input":
        param = input_form(param, [batch, channels, size, size], [batch])
    return caffe.Net(net_param=param, phase=phase)


def committed(backbone_key: str) -> list[Path]:
    return sorted((SCRIPT / BACKBONES[backbone_key].folder).glob("*_*.prototxt"))


def build_committed_file(path: Path, backbone_key: str) -> list[caffe.Net]:
    data = BACKBONES[backbone_key].data
    if path.name.endswith("_solver.prototxt"):
        return []
    param = read_net(path)
    phase = caffe.TRAIN if path.name.endswith("_train.prototxt") else caffe.TEST
    return [engine_net(param, data.channels, data.input_size, phase)]


@pytest.mark.parametrize("backbone", ["holonet", "densenet"])
def test_committed_prototxts_build(backbone):
    files = committed(backbone)
    assert len(files) == 20
    for path in files:
        for net in build_committed_file(path, backbone):
            if path.name.endswith("_deploy.prototxt"):
                assert net.inputs == ["data"] and not net.loss_tops
            assert list(net.blobs.values())[-1].data.size >= 1


@pytest.mark.slow
def test_committed_resnet_prototxts_build_at_224():
    for path in committed("resnet"):
        build_committed_file(path, "resnet")


SMALL = {"holonet": 32, "densenet": 32, "resnet": 64}


def loss_layers(net: caffe.Net) -> list[str]:
    return [lp.name for lp in net.net_param.layer if lp.type == "SoftmaxWithLoss"]


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_form_structure(backbone, variant):
    bb, v = get_backbone(backbone), VARIANTS[variant]
    size = SMALL[backbone]
    cfg = replace(bb.data, input_size=size)
    net = engine_net(build_net(bb, v, cfg, "test"), bb.data.channels, size, caffe.TEST, batch=2)
    losses = loss_layers(net)
    assert all(weight == 1 for _, weight in net.loss_tops)
    assert net.blobs["prob"].data.shape[:2] == (2, 7)
    types = Counter(lp.type for lp in net.net_param.layer)
    if v.fusion is None:
        assert losses == ["loss"]
        return
    assert len(losses) == v.scores + 1
    final = net.net_param.layer[-3]
    assert final.type == "Softmax"
    fused_layer = [lp for lp in net.net_param.layer if final.bottom[0] in lp.top][-1]
    if v.fusion == "eltwise":
        assert fused_layer.type == "Eltwise" and len(fused_layer.bottom) == v.scores
        assert "fc_cascade" not in net.blobs and "Concat5" not in net._layer_names
    else:
        assert fused_layer.type == "InnerProduct"
        width = bb.branch_width(7, "concat")
        main = 7 if bb.main_head else width
        weight = net.params[fused_layer.name][0].data
        assert weight.shape == (7, width * (v.scores - 1) + main)
    heads = [lp for lp in net.net_param.layer if lp.type == "Convolution"
             and list(lp.convolution_param.stride) == [2]
             and list(lp.convolution_param.kernel_size) == [7]]
    if v.head == "cascade":
        assert len(heads) >= v.scores - (1 if bb.main_head else 0)
        assert types["InnerProduct"] >= v.scores - (1 if bb.main_head else 0)
    else:
        assert not [lp for lp in heads if lp.name != "conv1"]


def test_cascade_heads_end_at_one_map_size_with_widths_doubling():
    bb = get_backbone("holonet")
    net = engine_net(build_net(bb, "4conv-c+concat", replace(bb.data, input_size=64), "deploy"),
                     1, 64, caffe.TEST)
    shapes = {name: blob.data.shape for name, blob in net.blobs.items()}
    assert [shapes[f"conv_c2_2_{i}"][1] for i in (1, 2, 3)] == [256, 512, 1024]
    ends = [shapes[name][2:] for name in ("conv_c2_2_3", "conv_c3_1_2", "conv_c3_2_2", "conv_c4_1_1")]
    assert ends == [(4, 4)] * 4
    assert shapes["fc_c2_2"] == (1, 14) and shapes["fc_fused"] == (1, 7)
    resnet = get_backbone("resnet")
    param = build_net(resnet, "4conv-c+eltwise", replace(resnet.data, input_size=64), "deploy")
    net = engine_net(param, 3, 64, caffe.TEST)
    assert net.top_names["res2c_conv_3"] == ["res2c_new"] == net.bottom_names["res2c_conv_3"]
    assert net.blobs["pool2"].data.shape == (1, 2048, 1, 1)
    assert net.blobs["fc_fused"].data.shape == (1, 7)


def test_test_prototxt_runs_as_written_on_a_gray_image_list(tmp_path):
    """The generated test net reads its list with ImageData (``is_color: false`` for a gray net)
    and gives one 7-way ``prob`` row per image, as extract_features will dump it."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"face{i}.png"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        lines.append(f"face{i}.png {i}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    bb = get_backbone("holonet")
    cfg = replace(bb.data, input_size=32, mean_file=None, mean_value=(128.0,),
                  test_list=str(tmp_path / "list.txt"), test_root=f"{tmp_path}/", test_batch=3)
    net = caffe.Net(net_param=build_net(bb, bb.released, cfg, "test"), phase=caffe.TEST)
    for lp in net.net_param.layer:
        if lp.type == "BatchNorm":  # statistics of a trained net: unit variance, scale factor 1
            stats = net.params[lp.name]
            stats[1].data[...] = 1
            stats[2].data[...] = 1
    out = net.forward()
    assert net.blobs["data"].data.shape == (3, 1, 32, 32)
    assert out["prob"].shape == (3, 7)
    np.testing.assert_allclose(out["prob"].sum(axis=1), 1, rtol=1e-5)
    assert list(net.blobs["label"].data) == [0, 1, 2]
