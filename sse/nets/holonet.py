"""The HoloNet trunk as SSE-HoloNet released it, and the backbone's declaration.

conv1_1: 7x7 convolution to 8 + CReLU -> MAX 3/2; conv2_1, conv2_2: residual units (1x1 12 ->
3x3 12 + CReLU -> 1x1 32; projection shortcut on conv2_1); conv3_1 (stride 2), conv3_2: the same
with 16/16/48; conv4_1: an inception-residual unit (1x1 s2 -> 24; 1x1 s2 16 -> 3x3 32; 1x1 s2 12 ->
3x3 16 -> 3x3 16; MAX 3/2 -> 1x1 32; concatenated, 1x1 -> 64, plus a projection shortcut).

Quirks kept from the release: the CReLU "negation" is ``Power{scale -1, shift 1}`` = 1 - x, the
identity shortcut is ``Power{shift 1}`` = x + 1, branch heads have 14 (= 2 x classes) outputs in
the Concat forms. Every layer carries explicit ``param`` specs, as released.
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial

from caffe.net_spec import Top
from caffe.net_spec import layers as L

from .backbone import Backbone
from .common import (BIAS_01, BN_FROZEN_PARAMS, XAVIER, Builder, DataConfig, Feature, NetConfigError,
                     conv_out, pool_out, param_specs)
from .heads import HeadStyle

NEG = {"power": 1, "scale": -1, "shift": 1}
SHIFT = {"power": 1, "scale": 1, "shift": 1}
ELTWISE = {"operation": "SUM", "coeff": [1, 1]}


def _conv(b: Builder, key: str, bottom: Top, out: int, kernel: int, stride: int = 1,
          name: str | None = None, bias: bool = False) -> Top:
    kwargs: dict = {"num_output": out, "kernel_size": kernel, "stride": stride,
                    "pad": (kernel - 1) // 2, "weight_filler": XAVIER}
    if bias:
        kwargs.update(param=param_specs(1, 1, 2, 0), bias_filler=BIAS_01)
    else:
        kwargs.update(param=param_specs(1, 1), bias_term=False)
    if name is not None:
        kwargs["name"] = name
    return b.put(key, L.Convolution(bottom, **kwargs))


def _bn(b: Builder, name: str, top: Top) -> Top:
    return b.put(name, L.BatchNorm(top, in_place=True, param=BN_FROZEN_PARAMS,
                                   use_global_stats=b.global_stats))


def _scale(b: Builder, name: str, top: Top, bias_lr: float) -> Top:
    return b.put(name, L.Scale(top, in_place=True, param=param_specs(1, 0, bias_lr, 0), bias_term=True))


def conv_bn(b: Builder, unit: str, bottom: Top, out: int, kernel: int, stride: int = 1,
            relu: bool = True) -> Top:
    """``{unit}/conv`` (top ``{unit}``) -> ``/bn`` -> ``/bn_scale`` [-> ``/relu``], in place."""
    top = _conv(b, unit, bottom, out, kernel, stride, name=f"{unit}/conv")
    top = _scale(b, f"{unit}/bn_scale", _bn(b, f"{unit}/bn", top), 1)
    return b.put(f"{unit}/relu", L.ReLU(top, in_place=True)) if relu else top


def crelu(b: Builder, unit: str, bottom: Top, out: int, kernel: int, top_name: str) -> Top:
    """Convolution -> BatchNorm -> concat(x, 1 - x) -> Scale -> ReLU (2 x ``out`` channels)."""
    conv = _conv(b, f"{unit}/conv", bottom, out, kernel)
    conv = _bn(b, f"{unit}/bn", conv)
    neg = b.put(f"{unit}/neg", L.Power(conv, power_param=NEG))
    top = b.put(top_name, L.Concat(conv, neg, name=f"{unit}/concat"))
    top = _scale(b, f"{unit}/scale", top, 2)
    return b.put(f"{unit}/relu", L.ReLU(top, in_place=True))


def _projection(b: Builder, unit: str, bottom: Top, out: int, stride: int) -> Top:
    top = _conv(b, f"{unit}/proj", bottom, out, 1, stride, bias=True)
    return _scale(b, f"{unit}/proj_bn_scale", _bn(b, f"{unit}/proj_bn", top), 1)


def residual(b: Builder, unit: str, bottom: Top, mid: int, out: int, stride: int, project: bool) -> Top:
    """1x1 -> 3x3 CReLU -> 1x1, plus a projection (``/proj``) or the x + 1 shortcut (``/input``)."""
    top = conv_bn(b, f"{unit}/1", bottom, mid, 1, stride)
    top = crelu(b, f"{unit}/2", top, mid, 3, f"{unit}/2")
    top = conv_bn(b, f"{unit}/3", top, out, 1, relu=False)
    if project:
        short = _projection(b, unit, bottom, out, stride)
    else:
        short = b.put(f"{unit}/input", L.Power(bottom, power_param=SHIFT))
    return b.put(unit, L.Eltwise(top, short, eltwise_param=ELTWISE))


def inception_residual(b: Builder, unit: str, bottom: Top, size: int, width: int = 1) -> tuple[Top, int]:
    """conv4_1: four stride-2 paths concatenated (104 x ``width`` ch), 1x1 -> 64 x ``width``, plus a projection."""
    w = width
    inc = f"{unit}/incep"
    p0 = conv_bn(b, f"{inc}/0", bottom, 24 * w, 1, 2)
    p1 = conv_bn(b, f"{inc}/1_0", conv_bn(b, f"{inc}/1_reduce", bottom, 16 * w, 1, 2), 32 * w, 3)
    p2 = conv_bn(b, f"{inc}/2_reduce", bottom, 12 * w, 1, 2)
    p2 = conv_bn(b, f"{inc}/2_1", conv_bn(b, f"{inc}/2_0", p2, 16 * w, 3), 16 * w, 3)
    pool = b.put(f"{inc}/pool", L.Pooling(bottom, pool="MAX", kernel_size=3, stride=2, pad=0))
    p3 = conv_bn(b, f"{inc}/poolproj", pool, 32 * w, 1)
    conv_size, pool_size = conv_out(size, 1, 2), pool_out(size, 3, 2)
    if conv_size != pool_size:
        raise NetConfigError(f"HoloNet input size gives a {size}x{size} map at conv3_2, where the "
                             f"inception's stride-2 paths ({conv_size}) and its 3/2 pooling "
                             f"({pool_size}) disagree; use an input size that is a multiple of 8")
    top = b.put(inc, L.Concat(p0, p1, p2, p3))
    top = conv_bn(b, f"{unit}/out", top, 64 * w, 1, relu=False)
    short = _projection(b, unit, bottom, 64 * w, 2)
    return b.put(unit, L.Eltwise(top, short, eltwise_param=ELTWISE)), conv_size


def trunk(b: Builder, data: Top, channels: int, size: int, width: int = 1) -> Feature:
    """conv1_1 ... conv4_1; taps conv2_2, conv3_1, conv3_2, conv4_1. ``width`` multiplies every
    layer's channels (1: the released trunk)."""
    w = width
    top = crelu(b, "conv1_1", data, 8 * w, 7, "conv1_1")
    top = b.put("pool1", L.Pooling(top, pool="MAX", kernel_size=3, stride=2, pad=0))
    size = pool_out(size, 3, 2)
    top = residual(b, "conv2_1", top, 12 * w, 32 * w, 1, project=True)
    b.tap("conv2_1", Feature(top, 32 * w, size))
    top = residual(b, "conv2_2", top, 12 * w, 32 * w, 1, project=False)
    b.tap("conv2_2", Feature(top, 32 * w, size))
    top = residual(b, "conv3_1", top, 16 * w, 48 * w, 2, project=True)
    size = conv_out(size, 1, 2)
    b.tap("conv3_1", Feature(top, 48 * w, size))
    top = residual(b, "conv3_2", top, 16 * w, 48 * w, 1, project=False)
    b.tap("conv3_2", Feature(top, 48 * w, size))
    top, size = inception_residual(b, "conv4_1", top, size, w)
    return b.tap("conv4_1", Feature(top, 64 * w, size))


STYLE = HeadStyle(explicit_params=True, single_pool="MAX", single_pool_name="pool{s}",
                  cascade_in_place=False, cascade_width=1024, concat_layer="fc_cascade",
                  concat_top="fc_cascade", fused_name="fc_fused", fused_in_place=False,
                  final_loss="loss")

BACKBONE = Backbone(
    key="holonet", title="SSE-HoloNet", folder="SSE-HoloNet", file_base="SSE_holonet",
    net_name="sse_holonet", released="3conv-s+concat", trunk=trunk,
    taps={3: ("conv3_1", "conv3_2", "conv4_1"), 4: ("conv2_2", "conv3_1", "conv3_2", "conv4_1")},
    suffix=lambda tap: tap[len("conv"):], style=STYLE, original_tap="conv4_1",
    branch_width=lambda classes, fusion: 2 * classes if fusion == "concat" else classes,
    data=DataConfig(input_size=128, channels=1,
                    mean_file="data/EmotiW_3_norm/EmotiW_3_norm_mean.binaryproto",
                    train_source="examples/EmotiW_3_norm/EmotiW_3_norm_train_lmdb",
                    val_source="examples/EmotiW_3_norm/EmotiW_3_norm_val_lmdb",
                    test_list="data/Emoti2017/EmotiW_3_norm/test_file_list.txt",
                    train_batch=128, val_batch=128, test_batch=128),
    solver={"test_iter": 200, "test_interval": 500, "base_lr": 0.01, "lr_policy": "step",
            "gamma": 0.3, "stepsize": 20000, "display": 500, "max_iter": 70000, "momentum": 0.9,
            "weight_decay": 0.0002, "snapshot": 500},
    snapshot_name="SSE_HoloNet",
)


def widened(width: int) -> Backbone:
    """SSE-HoloNet with every trunk layer ``width`` times as wide (heads unchanged): a stronger
    trunk for small inputs, e.g. the FER2013 models. Not in the registry of released backbones."""
    if width == 1:
        return BACKBONE
    if width < 1:
        raise NetConfigError(f"HoloNet trunk width must be a positive integer, not {width}")
    return replace(BACKBONE, key=f"holonet_x{width}", title=f"SSE-HoloNet x{width}",
                   net_name=f"sse_holonet_x{width}", trunk=partial(trunk, width=width))
