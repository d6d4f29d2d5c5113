"""Supervised scoring branches and their fusion.

A branch taps a trunk feature map and turns it into a score vector under its own SoftmaxWithLoss:

* the single full-map head ("-s", as released in SSE-HoloNet and SSE-DenseNet): pool 2/2, one
  convolution whose kernel covers the whole pooled map (1024 outputs), BatchNorm + Scale + ReLU, a
  1x1 convolution to the score width, AVE 1x1, Flatten;
* the cascaded head ("-c", as released in SSE-ResNet): chained 7x7 stride-2 convolutions (each with
  BatchNorm + Scale + ReLU) whose widths double up to the backbone's cascade width, until the map
  is as small as the deepest branch's, then AVE over the whole map and an InnerProduct to the score
  width.

Fusion: Concat of the score vectors into an InnerProduct to the classes, or their element-wise SUM.
How a backbone's release spelled these layers (names, explicit ``param`` specs, in-place layers) is
its ``HeadStyle``.
"""
from __future__ import annotations

from dataclasses import dataclass

from caffe.net_spec import Top
from caffe.net_spec import layers as L

from .common import (BIAS_01, BN_FROZEN_PARAMS, MSRA, XAVIER, Builder, Feature, conv_out,
                     param_specs, pool_out)

CASCADE_KERNEL, CASCADE_STRIDE, CASCADE_PAD = 7, 2, 3


@dataclass(frozen=True)
class HeadStyle:
    """How a backbone's release writes its heads and fusion.

    ``explicit_params``: the HoloNet/DenseNet release gives every head layer ``param`` specs (bias
    at lr_mult 2, BatchNorm frozen) and ``use_global_stats``; the ResNet release gives neither.
    ``single_pool``/``single_pool_name``: the -s head's pooling (``{s}`` = branch suffix).
    ``cascade_in_place``: the ResNet release runs its cascade in place on one blob ``{tap}_new``.
    """

    explicit_params: bool
    single_pool: str
    single_pool_name: str
    cascade_in_place: bool
    cascade_width: int
    concat_layer: str
    concat_top: str
    fused_name: str
    fused_in_place: bool
    final_loss: str
    eltwise_name: str = "fc_fused"
    hidden: int = 1024


def cascade_steps(size: int, target: int) -> int:
    """How many 7x7 stride-2 convolutions bring a ``size`` map down to ``target`` (at least one)."""
    steps = 1
    size = conv_out(size, CASCADE_KERNEL, CASCADE_STRIDE, CASCADE_PAD)
    while size > target:
        size = conv_out(size, CASCADE_KERNEL, CASCADE_STRIDE, CASCADE_PAD)
        steps += 1
    return steps


def cascade_target(deepest_size: int) -> int:
    """The map size every cascade ends at: one stride-2 step below the deepest branch's map."""
    return conv_out(deepest_size, CASCADE_KERNEL, CASCADE_STRIDE, CASCADE_PAD)


def _bn_scale_relu(b: Builder, style: HeadStyle, top: Top, bn: str, scale: str, relu: str) -> Top:
    bn_kwargs: dict = {"use_global_stats": b.global_stats}
    scale_kwargs: dict = {"bias_term": True}
    if style.explicit_params:
        bn_kwargs["param"] = BN_FROZEN_PARAMS
        scale_kwargs["param"] = param_specs(1, 0, 1, 0)
    top = b.put(bn, L.BatchNorm(top, in_place=True, **bn_kwargs))
    top = b.put(scale, L.Scale(top, in_place=True, **scale_kwargs))
    return b.put(relu, L.ReLU(top, in_place=True))


def _conv_kwargs(style: HeadStyle, bias_spec: bool = True) -> dict:
    kwargs: dict = {"weight_filler": XAVIER, "bias_filler": BIAS_01}
    if style.explicit_params:
        kwargs["param"] = param_specs(1, 1, 2, 0) if bias_spec else param_specs(1, 1)
    return kwargs


def single_head(b: Builder, feature: Feature, s: str, width: int, style: HeadStyle,
                with_loss: bool = True) -> Top:
    """The -s branch on ``feature``; returns its flattened score vector ``flat_{s}``."""
    pooled = b.put(style.single_pool_name.format(s=s),
                   L.Pooling(feature.top, pool=style.single_pool, kernel_size=2, stride=2, pad=0))
    size = pool_out(feature.size, 2, 2)
    fc = f"conv_fc{s}"
    top = b.put(fc, L.Convolution(pooled, num_output=style.hidden, kernel_size=size, stride=1,
                                  **_conv_kwargs(style)))
    top = _bn_scale_relu(b, style, top, f"{fc}/bn", f"{fc}/bn_scale", f"{fc}/relu")
    top = b.put(f"{fc}_1", L.Convolution(top, num_output=width, kernel_size=1, stride=1,
                                         **_conv_kwargs(style, bias_spec=False)))
    top = b.put(f"pool_fc{s}_1", L.Pooling(top, pool="AVE", kernel_h=1, kernel_w=1, stride=1, pad=0))
    flat = b.put(f"flat_{s}", L.Flatten(top))
    if with_loss:
        b.loss(f"loss{s}", flat)
    return flat


def cascade_head(b: Builder, tap: str, feature: Feature, s: str, target: int, width: int,
                 style: HeadStyle, with_loss: bool = True) -> Top:
    """The -c branch on ``feature`` (trunk blob ``tap``); returns its score vector."""
    steps = cascade_steps(feature.size, target)
    widths = [style.cascade_width >> (steps - 1 - i) for i in range(steps)]
    top, size = feature.top, feature.size
    for i, out in enumerate(widths, start=1):
        conv_kwargs: dict = {"num_output": out, "kernel_size": CASCADE_KERNEL,
                             "stride": CASCADE_STRIDE, "pad": CASCADE_PAD, "weight_filler": MSRA}
        if style.explicit_params:
            conv_kwargs["param"] = param_specs(1, 1, 2, 0)
        if style.cascade_in_place:
            names = (f"{tap}_conv_{i}", f"{tap}_bn_{i}", f"{tap}_scale_{i}", f"{tap}_relu_{i}")
            if i == 1:
                top = b.put(f"{tap}_new", L.Convolution(top, name=names[0], **conv_kwargs))
            else:
                top = b.put(names[0], L.Convolution(top, in_place=True, **conv_kwargs))
        else:
            conv = f"conv_c{s}_{i}"
            names = (conv, f"{conv}/bn", f"{conv}/bn_scale", f"{conv}/relu")
            top = b.put(conv, L.Convolution(top, **conv_kwargs))
        top = _bn_scale_relu(b, style, top, *names[1:])
        size = conv_out(size, CASCADE_KERNEL, CASCADE_STRIDE, CASCADE_PAD)
    pool, fc = (f"pool{s}", f"fc{s}") if style.cascade_in_place else (f"pool_c{s}", f"fc_c{s}")
    top = b.put(pool, L.Pooling(top, pool="AVE", kernel_size=size, stride=1))
    ip_kwargs: dict = {"weight_filler": XAVIER}
    if style.explicit_params:
        ip_kwargs.update(param=param_specs(1, 1), bias_filler=BIAS_01)
    scores = b.put(fc, L.InnerProduct(top, num_output=width, **ip_kwargs))
    if with_loss:
        b.loss(f"loss{s}", scores)
    return scores


def fuse(b: Builder, scores: list[Top], fusion: str, style: HeadStyle, num_classes: int) -> Top:
    """Concat + InnerProduct to the classes, or element-wise SUM, of the score vectors."""
    if fusion == "eltwise":
        kwargs: dict = {"operation": "SUM"}
        if style.explicit_params:
            kwargs["coeff"] = [1] * len(scores)
        return b.put(style.eltwise_name, L.Eltwise(*scores, **kwargs))
    concat_kwargs: dict = {} if style.explicit_params else {"axis": 1}
    cat = b.put(style.concat_top, L.Concat(*scores, name=style.concat_layer, **concat_kwargs))
    ip_kwargs: dict = {"weight_filler": XAVIER}
    if style.explicit_params:
        ip_kwargs.update(param=param_specs(1, 1), bias_filler=BIAS_01)
    if style.fused_in_place:
        return b.put(f"{style.fused_name}/ip", L.InnerProduct(cat, in_place=True, name=style.fused_name,
                                                               num_output=num_classes, **ip_kwargs))
    return b.put(style.fused_name, L.InnerProduct(cat, num_output=num_classes, **ip_kwargs))
