"""The ResNet-50 trunk with the layer names of KaimingHe's Caffe model, and the backbone's
declaration as SSE-ResNet released it.

conv1 7x7/2 (64, with bias) -> bn_conv1, scale_conv1, conv1_relu -> MAX 3/2 (pool1); bottleneck
stages res2 (a-c, 64/256), res3 (a-d, 128/512), res4 (a-f, 256/1024), res5 (a-c, 512/2048); each
unit ``res{s}{u}``: ``_branch2a`` 1x1 (stride 2 in the first unit of stages 3-5), ``_branch2b`` 3x3,
``_branch2c`` 1x1, each with ``bn``/``scale`` layers, plus ``_branch1`` (projection) in the first
unit; Eltwise SUM, ReLU. The main head: AVE over the last map (7x7 at 224) ``pool5`` -> ``fc5``.

Branches tap res2c, res3d, res4f. The release's cascaded heads and its fused InnerProduct run in
place (top == bottom), and its layers have no ``param`` specs; both are kept.
"""
from __future__ import annotations

from caffe.net_spec import Top
from caffe.net_spec import layers as L

from .backbone import Backbone
from .common import MSRA, XAVIER, Builder, DataConfig, Feature, conv_out, pool_out
from .heads import HeadStyle

# stage -> (units, bottleneck width, output width, stride of the first unit)
STAGES = {2: (3, 64, 256, 1), 3: (4, 128, 512, 2), 4: (6, 256, 1024, 2), 5: (3, 512, 2048, 2)}


def _bn_scale(b: Builder, top: Top, bn: str, scale: str) -> Top:
    top = b.put(bn, L.BatchNorm(top, in_place=True, use_global_stats=b.global_stats))
    return b.put(scale, L.Scale(top, in_place=True, bias_term=True))


def _branch(b: Builder, unit: str, branch: str, bottom: Top, out: int, kernel: int, stride: int,
            relu: bool) -> Top:
    name = f"{unit}_branch{branch}"
    top = b.put(name, L.Convolution(bottom, num_output=out, bias_term=False, pad=(kernel - 1) // 2,
                                    kernel_size=kernel, stride=stride, weight_filler=MSRA))
    tag = unit[len("res"):] + f"_branch{branch}"
    top = _bn_scale(b, top, f"bn{tag}", f"scale{tag}")
    return b.put(f"{name}_relu", L.ReLU(top, in_place=True)) if relu else top


def bottleneck(b: Builder, unit: str, bottom: Top, mid: int, out: int, stride: int,
               project: bool) -> Top:
    """``res{s}{u}``: [branch1 projection], branch2a/2b/2c, Eltwise SUM, ReLU."""
    short = _branch(b, unit, "1", bottom, out, 1, stride, relu=False) if project else bottom
    top = _branch(b, unit, "2a", bottom, mid, 1, stride, relu=True)
    top = _branch(b, unit, "2b", top, mid, 3, 1, relu=True)
    top = _branch(b, unit, "2c", top, out, 1, 1, relu=False)
    top = b.put(unit, L.Eltwise(short, top))
    return b.put(f"{unit}_relu", L.ReLU(top, in_place=True))


def trunk(b: Builder, data: Top, channels: int, size: int) -> Feature:
    """conv1 ... res5c; taps the last unit of stages 2-4 (res2c, res3d, res4f)."""
    top = b.put("conv1", L.Convolution(data, num_output=64, pad=3, kernel_size=7, stride=2,
                                       weight_filler=MSRA))
    size = conv_out(size, 7, 2, 3)
    top = b.put("conv1_relu", L.ReLU(_bn_scale(b, top, "bn_conv1", "scale_conv1"), in_place=True))
    top = b.put("pool1", L.Pooling(top, pool="MAX", kernel_size=3, stride=2))
    size = pool_out(size, 3, 2)
    for stage, (units, mid, out, stride) in STAGES.items():
        for u in range(units):
            unit = f"res{stage}{chr(ord('a') + u)}"
            top = bottleneck(b, unit, top, mid, out, stride if u == 0 else 1, project=u == 0)
        size = conv_out(size, 1, stride)
        feature = b.tap(unit, Feature(top, out, size))
    return feature


def main_head(b: Builder, final: Feature, classes: int, with_loss: bool) -> Top:
    """AVE over the last map ``pool5`` -> ``fc5`` [-> ``loss``]."""
    top = b.put("pool5", L.Pooling(final.top, pool="AVE", kernel_size=final.size, stride=1))
    scores = b.put("fc5", L.InnerProduct(top, num_output=classes, weight_filler=XAVIER))
    if with_loss:
        b.loss("loss", scores)
    return scores


STYLE = HeadStyle(explicit_params=False, single_pool="AVE", single_pool_name="pool{s}_fused",
                  cascade_in_place=True, cascade_width=2048, concat_layer="Concat5",
                  concat_top="fc_concat", fused_name="fc_concat", fused_in_place=True,
                  final_loss="loss_all")

BACKBONE = Backbone(
    key="resnet", title="SSE-ResNet-50", folder="SSE-ResNet", file_base="SSE-resnet-50",
    net_name="SSE-ResNet-50", released="4conv-c+concat", trunk=trunk,
    taps={3: ("res3d", "res4f"), 4: ("res2c", "res3d", "res4f")},
    suffix=lambda tap: tap[len("res")], style=STYLE, main_head=main_head,
    data=DataConfig(input_size=224, channels=3, mirror=True,
                    mean_file="models/EmotiW2017/ResNet_mean.binaryproto",
                    train_source="examples/EmotiW2017/EmotiW2017_train_lmdb2_resize",
                    val_source="examples/EmotiW2017/EmotiW2017_lmdb_val4test",
                    test_list="data/Emoti2017/EmotiW_3_norm/test_file_list.txt",
                    train_batch=5, val_batch=29, test_batch=29),
    solver={"test_iter": 200, "test_interval": 1000, "base_lr": 0.001, "lr_policy": "step",
            "gamma": 0.3, "stepsize": 5000, "display": 500, "max_iter": 100000, "momentum": 0.9,
            "weight_decay": 0.0002, "snapshot": 1000, "random_seed": 0},
    snapshot_name="SSE_ResNet_50",
)
