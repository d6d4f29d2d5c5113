"""The torchvision -> caffemodel converter puts every tensor in the right blob of our layer names.

torchvision is not a dependency: the state_dicts are built here from torchvision's documented key
naming and shapes (ResNet-50: conv1/bn1/layer1..4/fc with Bottleneck conv1-3, bn1-3, downsample;
DenseNet-121: features.conv0/norm0, denseblock*/denselayer*/norm1/conv1/norm2/conv2,
transition*/norm/conv, norm5, classifier), filled with random numbers."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import caffe
from sse.nets.convert_torchvision import ConversionError, convert, main
from sse.nets.variants import build_net, get_backbone


def _bn(state: dict, prefix: str, channels: int, gen: torch.Generator) -> None:
    state[f"{prefix}.weight"] = torch.rand(channels, generator=gen) + 0.5
    state[f"{prefix}.bias"] = torch.randn(channels, generator=gen) * 0.1
    state[f"{prefix}.running_mean"] = torch.randn(channels, generator=gen) * 0.1
    state[f"{prefix}.running_var"] = torch.rand(channels, generator=gen) + 0.5
    state[f"{prefix}.num_batches_tracked"] = torch.tensor(100)


def _conv(state: dict, key: str, out: int, inp: int, k: int, gen: torch.Generator) -> None:
    state[key] = torch.randn(out, inp, k, k, generator=gen) * (2.0 / (inp * k * k)) ** 0.5


def resnet50_state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}
    _conv(state, "conv1.weight", 64, 3, 7, gen)
    _bn(state, "bn1", 64, gen)
    inp = 64
    for layer, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for i in range(blocks):
            p = f"layer{layer}.{i}"
            _conv(state, f"{p}.conv1.weight", width, inp, 1, gen)
            _bn(state, f"{p}.bn1", width, gen)
            _conv(state, f"{p}.conv2.weight", width, width, 3, gen)
            _bn(state, f"{p}.bn2", width, gen)
            _conv(state, f"{p}.conv3.weight", width * 4, width, 1, gen)
            _bn(state, f"{p}.bn3", width * 4, gen)
            if i == 0:
                _conv(state, f"{p}.downsample.0.weight", width * 4, inp, 1, gen)
                _bn(state, f"{p}.downsample.1", width * 4, gen)
            inp = width * 4
    state["fc.weight"] = torch.randn(1000, 2048, generator=gen)
    state["fc.bias"] = torch.randn(1000, generator=gen)
    return state


def densenet121_state(old_keys: bool = False) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    state: dict[str, torch.Tensor] = {}
    _conv(state, "features.conv0.weight", 64, 3, 7, gen)
    _bn(state, "features.norm0", 64, gen)
    channels = 64
    for k, layers in enumerate((6, 12, 24, 16), start=1):
        for j in range(1, layers + 1):
            p = f"features.denseblock{k}.denselayer{j}"
            sep = "." if old_keys else ""
            _bn(state, f"{p}.norm{sep}1", channels, gen)
            _conv(state, f"{p}.conv{sep}1.weight", 128, channels, 1, gen)
            _bn(state, f"{p}.norm{sep}2", 128, gen)
            _conv(state, f"{p}.conv{sep}2.weight", 32, 128, 3, gen)
            channels += 32
        if k < 4:
            _bn(state, f"features.transition{k}.norm", channels, gen)
            _conv(state, f"features.transition{k}.conv.weight", channels // 2, channels, 1, gen)
            channels //= 2
    _bn(state, "features.norm5", channels, gen)
    state["classifier.weight"] = torch.randn(1000, channels, generator=gen)
    state["classifier.bias"] = torch.randn(1000, generator=gen)
    return state


def deploy_net(backbone_key: str, size: int) -> caffe.Net:
    bb = get_backbone(backbone_key)
    return caffe.Net(net_param=build_net(bb, "original", replace(bb.data, input_size=size), "deploy"),
                     phase=caffe.TEST)


def test_resnet50_tensors_land_in_kaiminghe_blobs(tmp_path):
    state = resnet50_state()
    torch.save(state, tmp_path / "resnet50.pth")
    model = tmp_path / "resnet50.caffemodel"
    assert main([str(tmp_path / "resnet50.pth"), str(model)]) == 0
    net = deploy_net("resnet", 64)
    net.copy_from(str(model))
    params = net.params
    np.testing.assert_array_equal(params["conv1"][0].data, state["conv1.weight"].numpy())
    np.testing.assert_array_equal(params["conv1"][1].data, 0)
    bn = params["bn_conv1"]
    np.testing.assert_array_equal(bn[0].data, state["bn1.running_mean"].numpy())
    np.testing.assert_array_equal(bn[1].data, state["bn1.running_var"].numpy())
    np.testing.assert_array_equal(bn[2].data, [1.0])
    np.testing.assert_array_equal(params["scale_conv1"][0].data, state["bn1.weight"].numpy())
    np.testing.assert_array_equal(params["scale_conv1"][1].data, state["bn1.bias"].numpy())
    pairs = {"res3a_branch2a": "layer2.0.conv1.weight", "res3a_branch1": "layer2.0.downsample.0.weight",
             "res4f_branch2b": "layer3.5.conv2.weight", "res5c_branch2c": "layer4.2.conv3.weight"}
    for layer, key in pairs.items():
        np.testing.assert_array_equal(params[layer][0].data, state[key].numpy())
    np.testing.assert_array_equal(params["bn5a_branch1"][1].data,
                                  state["layer4.0.downsample.1.running_var"].numpy())
    np.testing.assert_array_equal(params["scale4c_branch2a"][1].data, state["layer3.2.bn1.bias"].numpy())


def densenet_reference(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's DenseNet-121 feature extractor (eval mode) with F.* and the state_dict."""
    def bn_relu(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.relu(F.batch_norm(t, state[f"{p}.running_mean"], state[f"{p}.running_var"],
                                   state[f"{p}.weight"], state[f"{p}.bias"], False, 0.0, 1e-5))
    t = F.conv2d(x, state["features.conv0.weight"], stride=2, padding=3)
    t = F.max_pool2d(bn_relu(t, "features.norm0"), 3, 2, 1)
    for k, layers in enumerate((6, 12, 24, 16), start=1):
        for j in range(1, layers + 1):
            p = f"features.denseblock{k}.denselayer{j}"
            new = F.conv2d(bn_relu(t, f"{p}.norm1"), state[f"{p}.conv1.weight"])
            new = F.conv2d(bn_relu(new, f"{p}.norm2"), state[f"{p}.conv2.weight"], padding=1)
            t = torch.cat([t, new], 1)
        if k < 4:
            p = f"features.transition{k}"
            t = F.avg_pool2d(F.conv2d(bn_relu(t, f"{p}.norm"), state[f"{p}.conv.weight"]), 2, 2)
    return bn_relu(t, "features.norm5")


def test_densenet121_converted_net_computes_torchvision_features(tmp_path):
    """At 62x62 Caffe's ceil pooling and torch's floor pooling give the same sizes, so the whole
    feature extractor can be compared: every BN, Scale and convolution must sit in its place."""
    state = densenet121_state()
    model = tmp_path / "densenet.caffemodel"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "d.pth")
    assert main([str(tmp_path / "d.pth"), str(model), "--arch", "densenet121"]) == 0
    net = deploy_net("densenet", 62)
    net.copy_from(str(model))
    x = np.random.default_rng(0).standard_normal((1, 3, 62, 62)).astype(np.float32)
    net.forward(data=x)
    ours = net.blobs["conv5_blk/bn"].data
    with torch.no_grad():
        ref = densenet_reference(state, torch.from_numpy(x)).numpy()
    assert ours.shape == ref.shape == (1, 1024, 2, 2)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_old_densenet_key_names_convert_like_new_ones():
    new = convert(densenet121_state())
    old = convert(densenet121_state(old_keys=True))
    assert new == old


def test_incomplete_or_foreign_state_dicts_are_refused(tmp_path, capsys):
    state = resnet50_state()
    del state["layer3.1.bn2.running_var"]
    with pytest.raises(ConversionError, match="layer3.1.bn2.running_var"):
        convert(state)
    state = resnet50_state()
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match="layer5.0.conv1.weight"):
        convert(state)
    with pytest.raises(ConversionError, match="architecture"):
        convert({"encoder.weight": torch.zeros(2)})
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert main([str(tmp_path / "junk.pth"), str(tmp_path / "out.caffemodel")]) == 1
    err = capsys.readouterr().err
    assert "junk.pth" in err and "Traceback" not in err
    assert not (tmp_path / "out.caffemodel").exists()
