"""The released SSE forms, as generated, have what real Caffe computed for the release's test nets
(golden/sse_shapes): every blob name and shape in network order, layer names and types, per-layer
parameter shapes and counts, total parameter counts. The data layer is replaced by an Input layer
with tops data and label, as the golden was made."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

import caffe
from sse.nets.common import input_form
from sse.nets.variants import build_net, get_backbone

GOLDEN_CASES = ("sse_shapes",)

CASES = [
    ("holonet_1x128x128", "holonet", 1, 128),
    ("holonet_3x128x128", "holonet", 3, 128),
    ("densenet121_3x128x128", "densenet", 3, 128),
    ("resnet50_3x224x224", "resnet", 3, 224),
]


def load_case(golden, key: str) -> dict:
    return json.loads((golden / "sse_shapes" / "sse_shapes.json").read_text())[key]


def released_net(backbone_key: str, channels: int, size: int, stage: str = "test",
                 phase: int = caffe.TEST) -> caffe.Net:
    backbone = get_backbone(backbone_key)
    cfg = replace(backbone.data, channels=channels, input_size=size)
    param = build_net(backbone, backbone.released, cfg, stage)
    param = input_form(param, [1, channels, size, size], [1])
    return caffe.Net(net_param=param, phase=phase)


def param_shapes(net: caffe.Net) -> dict[str, tuple[list[list[int]], int]]:
    """Layer -> (its parameter blob shapes, their element count); ``net.params`` is read once."""
    return {name: ([list(b.data.shape) for b in blobs], sum(b.data.size for b in blobs))
            for name, blobs in net.params.items()}


@pytest.mark.parametrize("key,backbone,channels,size", CASES)
def test_released_form_matches_caffe_blobs_layers_and_params(golden, key, backbone, channels, size):
    case = load_case(golden, key)
    net = released_net(backbone, channels, size)
    assert [[name, list(blob.data.shape)] for name, blob in net.blobs.items()] == case["blobs"]
    assert [[lp.name, lp.type] for lp in net.net_param.layer] == case["layers"]
    recorded = {name: (shapes, count) for name, _, shapes, count in case["params"]}
    ours = param_shapes(net)
    assert ours == recorded
    assert sum(count for _, count in ours.values()) == case["param_count_all_blobs"]
    bn_stats = sum(ours[lp.name][1] for lp in net.net_param.layer if lp.type == "BatchNorm")
    assert case["param_count_all_blobs"] - bn_stats == case["param_count_excluding_batchnorm_stats"]
    assert len(net._layer_names) == case["num_layers_excluding_split"]


@pytest.mark.parametrize("key,backbone,channels,size", CASES[:1] + CASES[2:3])
def test_released_train_net_has_the_same_blobs_without_prob(golden, key, backbone, channels, size):
    case = load_case(golden, key)
    net = released_net(backbone, channels, size, stage="train", phase=caffe.TRAIN)
    expected = [[n, s] for n, s in case["blobs"] if n not in ("prob", "accuracy")]
    assert [[name, list(blob.data.shape)] for name, blob in net.blobs.items()] == expected


def test_generated_heads_follow_the_input_size_where_the_release_fixed_them(golden):
    """At 224 the release's DenseNet kept its 9x9/5x5 branch kernels (7x7 branch maps, a 462-wide
    fc_cascade); the generator sizes the kernels to the map, so the branches stay 1x1 (21 wide).
    The release's ResNet-50 fails at 128 (7x7 pooling of a 4x4 map); the generator pools the
    whole map."""
    case = load_case(golden, "densenet121_3x224x224")
    assert dict(case["blobs"])["fc_cascade"] == [1, 462]
    net = released_net("densenet", 3, 224)
    assert net.blobs["fc_cascade"].data.shape == (1, 21)
    assert net.params["conv_fc3"][0].data.shape == (1024, 256, 15, 15)
    assert "error" in load_case(golden, "resnet50_3x128x128")
    net = released_net("resnet", 3, 128)
    assert net.blobs["pool2"].data.shape == (1, 2048, 1, 1)
    assert net.blobs["fc_concat"].data.shape == (1, 7)
