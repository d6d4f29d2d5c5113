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
