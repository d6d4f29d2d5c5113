"""Generator options for training on other data: crop_size, the rotation/scale extension (TRAIN
only) and the head width."""
from __future__ import annotations

import pytest

import caffe
from sse.nets.common import DataConfig, NetConfigError
from sse.nets.variants import build_net


def _transforms(net):
    return {(l.include[0].phase if l.include else None): l.transform_param
            for l in net.layer if l.type in ("Data", "ImageData")}


def test_crop_applies_in_both_phases_and_jitter_in_train_only():
    cfg = DataConfig(input_size=48, crop_size=48, mirror=True, max_rotation=10, max_scale_jitter=0.1)
    tps = _transforms(build_net("holonet", "3conv-s+concat", cfg, "train"))
    train, test = tps[caffe.TRAIN], tps[caffe.TEST]
    assert train.crop_size == test.crop_size == 48
    assert (train.max_rotation, round(train.max_scale_jitter, 6)) == (10, 0.1)
    assert not test.HasField("max_rotation") and not test.HasField("max_scale_jitter")
    assert not _transforms(build_net("holonet", "3conv-s+concat", cfg, "test"))[None].HasField("max_rotation")


def test_crop_size_must_be_the_input_size():
    with pytest.raises(NetConfigError, match="crop_size"):
        build_net("holonet", "original", DataConfig(input_size=48, crop_size=40), "deploy")


@pytest.mark.parametrize("variant, layer", [("3conv-s+concat", "conv_fc3_1"),
                                            ("4conv-c+concat", "conv_c2_2_3")])
def test_head_width_sets_the_widest_head_convolution(variant, layer):
    cfg = DataConfig(input_size=48)
    default = {l.name: l for l in build_net("holonet", variant, cfg, "deploy").layer}
    narrow = {l.name: l for l in build_net("holonet", variant, cfg, "deploy", head_width=128).layer}
    assert default[layer].convolution_param.num_output == 1024
    assert narrow[layer].convolution_param.num_output == 128
    with pytest.raises(NetConfigError, match="head_width"):
        build_net("holonet", variant, cfg, "deploy", head_width=0)


def test_trunk_width_widens_the_holonet_trunk_on_the_command_line_and_refuses_other_backbones(tmp_path, capsys):
    from caffe import model_io
    from sse.nets import generate
    args = ["--backbone", "holonet", "--variant", "3conv-s+concat", "--input-size", "48", "--crop-size", "48",
            "--channels", "1", "--out", str(tmp_path)]
    outputs = {}
    for width in (1, 3):
        assert generate.main(args + ["--trunk-width", str(width), "--out", str(tmp_path / str(width))]) == 0
        net = model_io.read_net(next((tmp_path / str(width)).glob("SSE-HoloNet/*_deploy.prototxt")))
        outputs[width] = {l.name: l.convolution_param.num_output for l in net.layer if l.type == "Convolution"}
    assert outputs[3]["conv1_1/conv"] == 3 * outputs[1]["conv1_1/conv"] == 24
    assert outputs[3]["conv4_1/out/conv"] == 3 * 64 and outputs[3]["conv_fc4_1"] == outputs[1]["conv_fc4_1"]
    assert generate.main(["--backbone", "resnet", "--trunk-width", "2", "--out", str(tmp_path / "r")]) != 0
    assert "--backbone holonet" in capsys.readouterr().err
