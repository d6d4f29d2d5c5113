"""The DenseNet-121 trunk with the layer names of the common DenseNet-121 Caffe port, and the
backbone's declaration as SSE-DenseNet released it.

conv1 7x7/2 (64) -> conv1/bn, conv1/scale, relu1 -> MAX 3/2 pad 1 (pool1); dense blocks of 6, 12,
24, 16 layers (``conv{b}_{i}/x1``: BN-Scale-ReLU-1x1 conv 128; ``/x2``: BN-Scale-ReLU-3x3 conv 32;
``concat_{b}_{i}``), transitions ``conv{b}_blk`` (BN-Scale-ReLU-1x1 conv halving the channels,
AVE 2/2 ``pool{b}``); conv5_blk BN-Scale-ReLU, global AVE ``pool5``; the main head ``emoti_fc6``
(1x1 convolution to the classes).

Branches tap ``conv2_blk``, ``conv3_blk``, ``conv4_blk`` (the transition convolutions' outputs).
The release writes their layers inside the last dense block (after concat_5_13 and concat_5_15);
the generator keeps that order so the released form matches layer for layer.
"""
from __future__ import annotations

from caffe.net_spec import Top
from caffe.net_spec import layers as L

from .backbone import Backbone
from .common import MSRA, XAVIER, Builder, DataConfig, Feature, conv_out, pool_out
from .heads import HeadStyle

BLOCKS = (6, 12, 24, 16)
GROWTH = 32
BOTTLENECK = 4 * GROWTH
BN_EPS = 1e-5


def _bn_scale_relu(b: Builder, bottom: Top, prefix: str, relu: str) -> Top:
    top = b.put(f"{prefix}/bn", L.BatchNorm(bottom, eps=BN_EPS))
    top = b.put(f"{prefix}/scale", L.Scale(top, in_place=True, bias_term=True))
    return b.put(relu, L.ReLU(top, in_place=True))


def _conv(b: Builder, name: str, bottom: Top, out: int, kernel: int, stride: int = 1,
          pad: int = 0) -> Top:
    kwargs: dict = {"num_output": out, "bias_term": False, "kernel_size": kernel,
                    "weight_filler": MSRA}
    if pad:
        kwargs["pad"] = pad
    if stride != 1:
        kwargs["stride"] = stride
    return b.put(name, L.Convolution(bottom, **kwargs))


def dense_layer(b: Builder, block: int, i: int, bottom: Top) -> Top:
    """``conv{block}_{i}``: BN-ReLU-1x1 (128), BN-ReLU-3x3 (32), concatenated to the input."""
    c = f"conv{block}_{i}"
    top = _bn_scale_relu(b, bottom, f"{c}/x1", f"relu{block}_{i}/x1")
    top = _conv(b, f"{c}/x1", top, BOTTLENECK, 1)
    top = _bn_scale_relu(b, top, f"{c}/x2", f"relu{block}_{i}/x2")
    top = _conv(b, f"{c}/x2", top, GROWTH, 3, pad=1)
    top = b.put(f"concat_{block}_{i}", L.Concat(bottom, top))
    b.point(f"concat_{block}_{i}")
    return top


def trunk(b: Builder, data: Top, channels: int, size: int) -> Feature:
    """conv1 ... conv5_blk/bn; taps conv2_blk, conv3_blk, conv4_blk."""
    top = _conv(b, "conv1", data, 64, 7, stride=2, pad=3)
    size = conv_out(size, 7, 2, 3)
    top = _bn_scale_relu(b, top, "conv1", "relu1")
    top = b.put("pool1", L.Pooling(top, pool="MAX", kernel_size=3, stride=2, pad=1))
    size = pool_out(size, 3, 2, 1)
    width = 64
    for block, layers in enumerate(BLOCKS, start=2):
        for i in range(1, layers + 1):
            top = dense_layer(b, block, i, top)
        width += layers * GROWTH
        if block == 5:
            break
        top = _bn_scale_relu(b, top, f"conv{block}_blk", f"relu{block}_blk")
        width //= 2
        top = _conv(b, f"conv{block}_blk", top, width, 1)
        b.tap(f"conv{block}_blk", Feature(top, width, size))
        top = b.put(f"pool{block}", L.Pooling(top, pool="AVE", kernel_size=2, stride=2))
        size = pool_out(size, 2, 2)
    top = _bn_scale_relu(b, top, "conv5_blk", "relu5_blk")
    return Feature(top, width, size)


def main_head(b: Builder, final: Feature, classes: int, with_loss: bool) -> Top:
    """Global AVE ``pool5`` -> 1x1 convolution ``emoti_fc6`` [-> ``loss6``] -> ``flat_6``."""
    top = b.put("pool5", L.Pooling(final.top, pool="AVE", global_pooling=True))
    scores = b.put("emoti_fc6", L.Convolution(top, num_output=classes, kernel_size=1,
                                              weight_filler=XAVIER))
    if with_loss:
        b.loss("loss6", scores)
    return b.put("flat_6", L.Flatten(scores))


STYLE = HeadStyle(explicit_params=True, single_pool="AVE", single_pool_name="pool{s}_fused",
                  cascade_in_place=False, cascade_width=1024, concat_layer="fc_cascade",
                  concat_top="fc_cascade", fused_name="fc_fused", fused_in_place=False,
                  final_loss="loss")

BACKBONE = Backbone(
    key="densenet", title="SSE-DenseNet-121", folder="SSE-DenseNet", file_base="SSE-densenet-121",
    net_name="SSE-DenseNet-121", released="3conv-s+concat", trunk=trunk,
    taps={3: ("conv3_blk", "conv4_blk"), 4: ("conv2_blk", "conv3_blk", "conv4_blk")},
    suffix=lambda tap: tap[len("conv"):-len("_blk")], style=STYLE, main_head=main_head,
    head_point={"conv2_blk": "concat_5_11", "conv3_blk": "concat_5_13", "conv4_blk": "concat_5_15"},
    data=DataConfig(input_size=128, channels=3, mean_value=(103.94, 116.78, 123.68),
                    train_source="data/Emoti2017/EmotiW_3_norm/EmotiW_3_norm_train_lmdb",
                    val_source="data/Emoti2017/EmotiW_3_norm/EmotiW_3_norm_val_lmdb",
                    test_list="data/Emoti2017/EmotiW_3_norm/test_file_list.txt",
                    train_batch=32, val_batch=32, test_batch=27),
    solver={"test_iter": 200, "test_interval": 500, "base_lr": 0.01, "lr_policy": "multistep",
            "gamma": 0.1, "stepsize": 20000, "display": 500, "max_iter": 70000, "momentum": 0.9,
            "weight_decay": 0.0001, "snapshot": 500},
    snapshot_name="SSE_DenseNet_121",
)
