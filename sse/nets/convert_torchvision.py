"""Convert a torchvision ResNet-50 or DenseNet-121 ``state_dict`` (``.pth``) into a caffemodel with
the layer names of the SSE prototxts (KaimingHe's ResNet-50, the DenseNet-121 Caffe port), so
``caffe train --weights`` can start SSE-ResNet / SSE-DenseNet from ImageNet weights without the old
caffemodels.

    python -m sse.nets.convert_torchvision resnet50-0676ba61.pth models/ResNet-50-torchvision.caffemodel
    python -m sse.nets.convert_torchvision --arch densenet121 densenet121.pth models/DenseNet_121.caffemodel

Each PyTorch BatchNorm becomes a Caffe BatchNorm (running mean, running variance, scale factor 1)
plus a Scale (gamma, beta). The ImageNet classifiers (``fc``, ``classifier``) are not converted: the
SSE heads are new layers and keep their fillers. Caffe's conv1 of ResNet-50 has a bias, torchvision's
has none: it is written as zeros. torchvision's ResNet-50 is "v1.5" (stride 2 in the 3x3 convolution
of a stage's first unit) while the Caffe layout strides the first 1x1, so the converted ResNet is an
initialisation for fine-tuning, not a bit-exact ImageNet model; the DenseNet-121 layouts agree.
Nothing of torchvision is needed: the file is read with ``torch.load``.
"""
from __future__ import annotations

import argparse
import pickle
import re
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from caffe.errors import CaffeError
from caffe.model_io import array_to_blobproto, write_binary
from caffe.proto import caffe_pb2
from caffe.tools.cli_util import guarded

from .densenet import BLOCKS
from .resnet import STAGES

ARCHS = ("resnet50", "densenet121")
IGNORED = re.compile(r"(^fc\.|^classifier\.|num_batches_tracked$)")
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$")


class ConversionError(CaffeError, ValueError):
    """A state_dict that does not hold the expected torchvision architecture (names the key)."""


# A layer to write: (Caffe layer name, Caffe type, state_dict keys of its blobs in Caffe order).
Plan = list[tuple[str, str, list[str]]]


def _bn(plan: Plan, prefix: str, bn_name: str, scale_name: str) -> None:
    plan.append((bn_name, "BatchNorm", [f"{prefix}.running_mean", f"{prefix}.running_var", ""]))
    plan.append((scale_name, "Scale", [f"{prefix}.weight", f"{prefix}.bias"]))


def resnet50_plan() -> Plan:
    """torchvision ResNet-50 keys -> KaimingHe layer names (layer1..4 = res2..5, blocks a, b, ...)."""
    plan: Plan = [("conv1", "Convolution", ["conv1.weight", "zeros:conv1.weight"])]
    _bn(plan, "bn1", "bn_conv1", "scale_conv1")
    for index, (stage, (units, _, _, _)) in enumerate(STAGES.items(), start=1):
        for u in range(units):
            tag = f"{stage}{chr(ord('a') + u)}"
            src = f"layer{index}.{u}"
            if u == 0:
                plan.append((f"res{tag}_branch1", "Convolution", [f"{src}.downsample.0.weight"]))
                _bn(plan, f"{src}.downsample.1", f"bn{tag}_branch1", f"scale{tag}_branch1")
            for n, branch in enumerate(("2a", "2b", "2c"), start=1):
                plan.append((f"res{tag}_branch{branch}", "Convolution", [f"{src}.conv{n}.weight"]))
                _bn(plan, f"{src}.bn{n}", f"bn{tag}_branch{branch}", f"scale{tag}_branch{branch}")
    return plan


def densenet121_plan() -> Plan:
    """torchvision DenseNet-121 keys -> the Caffe port's names (denseblock k = conv{k+1}_*)."""
    plan: Plan = [("conv1", "Convolution", ["features.conv0.weight"])]
    _bn(plan, "features.norm0", "conv1/bn", "conv1/scale")
    for k, layers in enumerate(BLOCKS, start=1):
        block = k + 1
        for j in range(1, layers + 1):
            src, dst = f"features.denseblock{k}.denselayer{j}", f"conv{block}_{j}"
            for n, x in ((1, "x1"), (2, "x2")):
                _bn(plan, f"{src}.norm{n}", f"{dst}/{x}/bn", f"{dst}/{x}/scale")
                plan.append((f"{dst}/{x}", "Convolution", [f"{src}.conv{n}.weight"]))
        if k < len(BLOCKS):
            src, dst = f"features.transition{k}", f"conv{block}_blk"
            _bn(plan, f"{src}.norm", f"{dst}/bn", f"{dst}/scale")
            plan.append((dst, "Convolution", [f"{src}.conv.weight"]))
    _bn(plan, "features.norm5", "conv5_blk/bn", "conv5_blk/scale")
    return plan


PLANS = {"resnet50": resnet50_plan, "densenet121": densenet121_plan}


def normalize_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DataParallel's ``module.`` and rename old DenseNet keys (``norm.1`` -> ``norm1``)."""
    out = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        out[_OLD_DENSENET_KEY.sub(r"\1\2", key)] = value
    return out


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth``: a state_dict, or a checkpoint holding one under state_dict/model."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise ConversionError(f"{path}: cannot read a PyTorch state_dict ({exc})") from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"{path}: expected a state_dict (a dict of tensors)")
    return normalize_keys(obj)


def detect_arch(state: dict[str, torch.Tensor]) -> str:
    if "layer1.0.conv1.weight" in state:
        return "resnet50"
    if "features.denseblock1.denselayer1.conv1.weight" in state:
        return "densenet121"
    raise ConversionError("cannot tell the architecture: no 'layer1.0.conv1.weight' (ResNet) nor "
                          "'features.denseblock1.denselayer1.conv1.weight' (DenseNet) key")


def _blob(state: dict[str, torch.Tensor], key: str, origin: str) -> np.ndarray:
    if key.startswith("zeros:"):
        return np.zeros(state[key[len("zeros:"):]].shape[:1], dtype=np.float32)
    if key not in state:
        raise ConversionError(f"{origin}: missing key '{key}'")
    return state[key].detach().to(torch.float32).cpu().numpy()


def convert(state: dict[str, torch.Tensor], arch: str | None = None,
            origin: str = "<state_dict>") -> caffe_pb2.NetParameter:
    """The caffemodel NetParameter of a torchvision state_dict; every non-classifier key is used."""
    state = normalize_keys(state)
    arch = arch or detect_arch(state)
    if arch not in PLANS:
        raise ConversionError(f"unknown architecture '{arch}' (one of {', '.join(ARCHS)})")
    net = caffe_pb2.NetParameter()
    net.name = {"resnet50": "ResNet-50", "densenet121": "DenseNet-121"}[arch]
    used: set[str] = set()
    for name, layer_type, keys in PLANS[arch]():
        layer = net.layer.add()
        layer.name, layer.type = name, layer_type
        for key in keys:
            if key == "":
                layer.blobs.append(array_to_blobproto(np.ones(1, dtype=np.float32)))
                continue
            layer.blobs.append(array_to_blobproto(_blob(state, key, origin)))
            used.add(key)
    unused = sorted(k for k in state if k not in used and not IGNORED.search(k))
    if unused:
        raise ConversionError(f"{origin}: {len(unused)} keys of the state_dict are not part of "
                              f"torchvision's {arch} (first: '{unused[0]}')")
    return net


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sse-convert-torchvision",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("pth", help="torchvision state_dict (.pth)")
    p.add_argument("caffemodel", help="output .caffemodel")
    p.add_argument("--arch", choices=ARCHS, help="default: detected from the keys")
    p.add_argument("--traceback", action="store_true", help="show the traceback of errors")
    args = p.parse_args(argv)
    return guarded("sse-convert-torchvision", lambda: _convert(args), args.traceback)


def _convert(args: argparse.Namespace) -> None:
    net = convert(load_state_dict(args.pth), args.arch, origin=args.pth)
    write_binary(net, args.caffemodel)
    layers = OrderedDict((l.type, 0) for l in net.layer)
    for layer in net.layer:
        layers[layer.type] += 1
    summary = ", ".join(f"{count} {kind}" for kind, count in layers.items())
    print(f"{args.caffemodel}: {net.name}, {len(net.layer)} layers ({summary})")


if __name__ == "__main__":
    sys.exit(main())
