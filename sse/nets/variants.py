"""The five forms of each backbone, as the project reads the paper's table, and the driver that
builds one (backbone, variant, stage) into a NetParameter.

* ``original``: the backbone with its plain classifier and one loss (HoloNet, which has no main
  head, takes the -s head on its last map, conv4_1, with class-count outputs);
* ``3conv-s+eltwise`` / ``3conv-s+concat``: three score vectors, from single full-map convolution
  heads (and the main head where the backbone has one), summed / concatenated into an InnerProduct;
* ``4conv-c+eltwise`` / ``4conv-c+concat``: four score vectors, from cascaded stride-2 convolution
  heads (and the main head).

Every score vector has its own SoftmaxWithLoss, and the fused one has the final loss; all weigh 1.
Eltwise needs equal widths, so HoloNet's branch heads are 14-wide (2 x classes, as released) only
in its Concat forms.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from caffe.net_spec import NetSpec
from caffe.proto import caffe_pb2

from . import densenet, holonet, resnet
from .backbone import Backbone
from .common import (STAGES, Builder, DataConfig, Feature, NetConfigError, data_layers, outputs,
                     test_phase_data_layer)
from .heads import cascade_head, cascade_target, fuse, single_head

BACKBONES: dict[str, Backbone] = {bb.key: bb for bb in (holonet.BACKBONE, densenet.BACKBONE,
                                                        resnet.BACKBONE)}


@dataclass(frozen=True)
class Variant:
    """One form of the paper's table: how many score vectors, which head, which fusion."""

    key: str
    scores: int
    head: str | None
    fusion: str | None

    @property
    def slug(self) -> str:
        """The form's name in file names: ``3conv-s_concat``."""
        return self.key.replace("+", "_")


VARIANTS: dict[str, Variant] = {v.key: v for v in (
    Variant("original", 1, None, None),
    Variant("3conv-s+eltwise", 3, "single", "eltwise"),
    Variant("3conv-s+concat", 3, "single", "concat"),
    Variant("4conv-c+eltwise", 4, "cascade", "eltwise"),
    Variant("4conv-c+concat", 4, "cascade", "concat"),
)}


def get_backbone(key: str) -> Backbone:
    if key not in BACKBONES:
        raise NetConfigError(f"unknown backbone '{key}' (one of {', '.join(BACKBONES)})")
    return BACKBONES[key]


def get_variant(key: str) -> Variant:
    if key not in VARIANTS:
        raise NetConfigError(f"unknown variant '{key}' (one of {', '.join(VARIANTS)})")
    return VARIANTS[key]


def net_name(backbone: Backbone, variant: Variant, stage: str) -> str:
    if variant.key == backbone.released:
        return f"{backbone.net_name}_{stage}"
    return f"{backbone.net_name}_{variant.slug}_{stage}"


def _trunk_sizes(backbone: Backbone, cfg: DataConfig) -> dict[str, int]:
    """The spatial size of every tap, from a throwaway build of the trunk."""
    b = Builder(NetSpec(), "deploy")
    data = data_layers(b, cfg)
    backbone.trunk(b, data, cfg.channels, cfg.input_size)
    return {name: f.size for name, f in b.features.items()}


def _plan_heads(b: Builder, backbone: Backbone, variant: Variant, cfg: DataConfig,
                taps: tuple[str, ...], scores: dict) -> None:
    """Register, at each branch's place in the trunk, the action that writes its head."""
    style = backbone.style
    original = variant.fusion is None
    width = cfg.num_classes if original else backbone.branch_width(cfg.num_classes, variant.fusion)
    target = 0
    if variant.head == "cascade":
        target = cascade_target(_trunk_sizes(backbone, cfg)[taps[-1]])

    def action_for(tap: str):
        def action(builder: Builder) -> None:
            feature: Feature = builder.features[tap]
            s = backbone.suffix(tap)
            if variant.head == "cascade":
                scores[tap] = cascade_head(builder, tap, feature, s, target, width, style)
            else:
                scores[tap] = single_head(builder, feature, s, width, style, with_loss=not original)
        return action

    for tap in taps:
        b.on_point.setdefault(backbone.head_point.get(tap, tap), []).append(action_for(tap))


def build_net(backbone: Backbone | str, variant: Variant | str, cfg: DataConfig | None = None,
              stage: str = "train", head_width: int | None = None) -> caffe_pb2.NetParameter:
    """The NetParameter of one form of a backbone in one stage (train, test or deploy).

    ``head_width`` replaces the width of the branch heads (the -s head's full-map convolution and
    the widest -c cascade convolution; 1024 for HoloNet and DenseNet, 2048 for ResNet as
    released), to size the heads for small inputs."""
    backbone = get_backbone(backbone) if isinstance(backbone, str) else backbone
    variant = get_variant(variant) if isinstance(variant, str) else variant
    if head_width is not None:
        if head_width < 1:
            raise NetConfigError(f"head_width must be >= 1, got {head_width}")
        backbone = replace(backbone, style=replace(backbone.style, hidden=head_width,
                                                   cascade_width=head_width))
    cfg = cfg or backbone.data
    cfg.check()
    if stage not in STAGES:
        raise NetConfigError(f"unknown stage '{stage}' (one of {', '.join(STAGES)})")
    original = variant.fusion is None
    if original:
        taps: tuple[str, ...] = (backbone.original_tap,) if backbone.original_tap else ()
    else:
        taps = backbone.taps[variant.scores]
    b = Builder(NetSpec(), stage)
    data = data_layers(b, cfg)
    scores: dict = {}
    _plan_heads(b, backbone, variant, cfg, taps, scores)
    final = backbone.trunk(b, data, cfg.channels, cfg.input_size)
    if b.on_point:
        raise NetConfigError(f"{backbone.key}: branch places never reached: {', '.join(b.on_point)}")
    ordered = [scores[tap] for tap in taps]
    if backbone.main_head is not None and not (original and taps):
        ordered.append(backbone.main_head(b, final, cfg.num_classes, not original))
    if original:
        outputs(b, ordered[0], "loss")
    else:
        outputs(b, fuse(b, ordered, variant.fusion, backbone.style, cfg.num_classes),
                backbone.style.final_loss)
    net = b.n.to_proto()
    net.name = net_name(backbone, variant, stage)
    if stage == "train":
        layers = list(net.layer)
        layers.insert(1, test_phase_data_layer(cfg))
        del net.layer[:]
        net.layer.extend(layers)
    return net
