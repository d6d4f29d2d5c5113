"""SSE-HoloNet and SSE-DenseNet-121 (the released 3conv-s + Concat forms) written directly as
PyTorch nn.Modules, the way one would without Caffe: BatchNorm+Scale as one affine
``nn.BatchNorm2d``, cross-entropy losses, ceil-mode pooling. They are the baseline that
bench_engine.py compares the prototxt-built nets against.

Every module knows the Caffe layer names it stands for (``caffe_params``), so the benchmark can
copy a Caffe net's weights in and check that both compute the same loss: the proof that the
architectures are the same."""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

CaffeParam = tuple[str, int, torch.Tensor]  # (Caffe layer name, blob index, tensor to fill)


class ConvBN(nn.Module):
    """Convolution + BatchNorm(+Scale, as affine) (+ ReLU); Caffe names ``conv``, ``bn``, ``scale``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0,
                 bias: bool = False, relu: bool = True, names: tuple[str, str, str] = ("", "", ""),
                 as_linear: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, bias=bias)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = relu
        self.names = names
        self.as_linear = as_linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.as_linear:  # the kernel covers the whole input: one matrix product
            w = self.conv.weight
            y = F.linear(x.flatten(1), w.flatten(1), self.conv.bias)[:, :, None, None]
        else:
            y = self.conv(x)
        y = self.bn(y)
        return F.relu(y) if self.relu else y

    def caffe_params(self) -> Iterator[CaffeParam]:
        conv, bn, scale = self.names
        yield conv, 0, self.conv.weight
        if self.conv.bias is not None:
            yield conv, 1, self.conv.bias
        yield scale, 0, self.bn.weight
        yield scale, 1, self.bn.bias


class CReLUConv(nn.Module):
    """HoloNet's CReLU unit: conv -> BN -> concat(x, 1 - x) -> per-channel affine -> ReLU."""

    def __init__(self, cin: int, cout: int, k: int, pad: int, prefix: str, scale_name: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, pad, bias=False)
        self.bn = nn.BatchNorm2d(cout, affine=False)
        self.weight = nn.Parameter(torch.ones(2 * cout))
        self.bias = nn.Parameter(torch.zeros(2 * cout))
        self.prefix, self.scale_name = prefix, scale_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        y = torch.cat([y, 1 - y], dim=1)
        return F.relu(torch.addcmul(self.bias[:, None, None], y, self.weight[:, None, None]))

    def caffe_params(self) -> Iterator[CaffeParam]:
        yield f"{self.prefix}/conv", 0, self.conv.weight
        yield self.scale_name, 0, self.weight
        yield self.scale_name, 1, self.bias


def _bn_names(prefix: str) -> tuple[str, str, str]:
    return f"{prefix}/conv", f"{prefix}/bn", f"{prefix}/bn_scale"


class HoloResidual(nn.Module):
    """1x1 reduce -> CReLU 3x3 -> 1x1 expand, plus a projection (conv+BN) or the x + 1 shortcut."""

    def __init__(self, name: str, cin: int, mid: int, cout: int, stride: int, project: bool) -> None:
        super().__init__()
        self.reduce = ConvBN(cin, mid, 1, stride, names=_bn_names(f"{name}/1"))
        self.crelu = CReLUConv(mid, mid, 3, 1, f"{name}/2", f"{name}/2/scale")
        self.expand = ConvBN(2 * mid, cout, 1, relu=False, names=_bn_names(f"{name}/3"))
        self.proj = (ConvBN(cin, cout, 1, stride, bias=True, relu=False,
                            names=(f"{name}/proj", f"{name}/proj_bn", f"{name}/proj_bn_scale"))
                     if project else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.proj(x) if self.proj is not None else x + 1
        return self.expand(self.crelu(self.reduce(x))) + shortcut


class HoloInception(nn.Module):
    """conv4_1: four stride-2 paths concatenated, 1x1 to 64, plus a projection shortcut."""

    def __init__(self, name: str = "conv4_1") -> None:
        super().__init__()
        p = f"{name}/incep"
        self.b0 = ConvBN(48, 24, 1, 2, names=_bn_names(f"{p}/0"))
        self.b1 = nn.Sequential(ConvBN(48, 16, 1, 2, names=_bn_names(f"{p}/1_reduce")),
                                ConvBN(16, 32, 3, 1, 1, names=_bn_names(f"{p}/1_0")))
        self.b2 = nn.Sequential(ConvBN(48, 12, 1, 2, names=_bn_names(f"{p}/2_reduce")),
                                ConvBN(12, 16, 3, 1, 1, names=_bn_names(f"{p}/2_0")),
                                ConvBN(16, 16, 3, 1, 1, names=_bn_names(f"{p}/2_1")))
        self.b3 = ConvBN(48, 32, 1, names=_bn_names(f"{p}/poolproj"))
        self.out = ConvBN(104, 64, 1, relu=False, names=_bn_names(f"{name}/out"))
        self.proj = ConvBN(48, 64, 1, 2, bias=True, relu=False,
                           names=(f"{name}/proj", f"{name}/proj_bn", f"{name}/proj_bn_scale"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool2d(x, 3, 2, ceil_mode=True)
        y = torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(pooled)], dim=1)
        return self.out(y) + self.proj(x)


class ScoringBranch(nn.Module):
    """Supervised scoring branch: pool 2/2 -> full-map conv to 1024 -> BN+ReLU -> 1x1 conv to
    ``classes`` -> AVE 1x1 -> flatten."""

    def __init__(self, cin: int, k: int, classes: int, pool: str, names: tuple[str, str],
                 as_linear: bool = False) -> None:
        super().__init__()
        fc, score = names
        self.pool = pool
        self.fc = ConvBN(cin, 1024, k, bias=True, names=(fc, f"{fc}/bn", f"{fc}/bn_scale"),
                         as_linear=as_linear)
        self.score = nn.Conv2d(1024, classes, 1)
        self.score_name = score

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = F.max_pool2d if self.pool == "MAX" else F.avg_pool2d
        y = self.score(self.fc(pool(x, 2, 2, ceil_mode=True)))
        return torch.flatten(F.avg_pool2d(y, 1), 1)

    def caffe_params(self) -> Iterator[CaffeParam]:
        yield from self.fc.caffe_params()
        yield self.score_name, 0, self.score.weight
        yield self.score_name, 1, self.score.bias


class SSEHoloNet(nn.Module):
    """SSE-HoloNet (3conv-s + Concat): 14-way branches at conv3_1, conv3_2 and conv4_1.
    ``full_map_as_linear``: compute the branches' full-map convolutions as matrix products."""

    def __init__(self, channels: int = 1, classes: int = 7, full_map_as_linear: bool = False
                 ) -> None:
        super().__init__()
        self.conv1 = CReLUConv(channels, 8, 7, 3, "conv1_1", "conv1_1/scale")
        self.conv2_1 = HoloResidual("conv2_1", 16, 12, 32, 1, True)
        self.conv2_2 = HoloResidual("conv2_2", 32, 12, 32, 1, False)
        self.conv3_1 = HoloResidual("conv3_1", 32, 16, 48, 2, True)
        self.conv3_2 = HoloResidual("conv3_2", 48, 16, 48, 1, False)
        self.conv4_1 = HoloInception()
        lin = full_map_as_linear
        self.branch3_1 = ScoringBranch(48, 16, 14, "MAX", ("conv_fc3_1", "conv_fc3_1_1"), lin)
        self.branch3_2 = ScoringBranch(48, 16, 14, "MAX", ("conv_fc3_2", "conv_fc3_2_1"), lin)
        self.branch4_1 = ScoringBranch(64, 8, 14, "MAX", ("conv_fc4_1", "conv_fc4_1_1"), lin)
        self.fused = nn.Linear(42, classes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four score tensors under a loss: three branches, then the fused scores."""
        x = F.max_pool2d(self.conv1(x), 3, 2, ceil_mode=True)
        x = self.conv2_2(self.conv2_1(x))
        c31 = self.conv3_1(x)
        c32 = self.conv3_2(c31)
        c41 = self.conv4_1(c32)
        scores = [self.branch3_1(c31), self.branch3_2(c32), self.branch4_1(c41)]
        return scores + [self.fused(torch.cat(scores, dim=1))]

    def caffe_params(self) -> Iterator[CaffeParam]:
        yield from _collect(self)
        yield "fc_fused", 0, self.fused.weight
        yield "fc_fused", 1, self.fused.bias


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 (128) -> BN-ReLU-3x3 (growth 32), concatenated to the input."""

    def __init__(self, cin: int, block: int, index: int) -> None:
        super().__init__()
        p = f"conv{block}_{index}"
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 128, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(128)
        self.conv2 = nn.Conv2d(128, 32, 3, 1, 1, bias=False)
        self.prefix = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.relu(self.bn1(x)))
        y = self.conv2(F.relu(self.bn2(y)))
        return torch.cat([x, y], dim=1)

    def caffe_params(self) -> Iterator[CaffeParam]:
        p = self.prefix
        yield f"{p}/x1/scale", 0, self.bn1.weight
        yield f"{p}/x1/scale", 1, self.bn1.bias
        yield f"{p}/x1", 0, self.conv1.weight
        yield f"{p}/x2/scale", 0, self.bn2.weight
        yield f"{p}/x2/scale", 1, self.bn2.bias
        yield f"{p}/x2", 0, self.conv2.weight


class Transition(nn.Module):
    """BN-ReLU-1x1 conv (the ``conv{b}_blk`` map the branches tap); the AVE 2/2 pool follows."""

    def __init__(self, cin: int, cout: int, block: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(self.bn(x)))

    def caffe_params(self) -> Iterator[CaffeParam]:
        b = self.block
        yield f"conv{b}_blk/scale", 0, self.bn.weight
        yield f"conv{b}_blk/scale", 1, self.bn.bias
        yield f"conv{b}_blk", 0, self.conv.weight


class SSEDenseNet121(nn.Module):
    """SSE-DenseNet-121 (3conv-s + Concat): branches at conv3_blk and conv4_blk plus the main head.
    ``full_map_as_linear``: compute the branches' full-map convolutions as matrix products."""

    def __init__(self, channels: int = 3, classes: int = 7, full_map_as_linear: bool = False
                 ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        c = 64
        self.blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for block, n in zip((2, 3, 4, 5), (6, 12, 24, 16)):
            layers = []
            for i in range(1, n + 1):
                layers.append(DenseLayer(c, block, i))
                c += 32
            self.blocks.append(nn.Sequential(*layers))
            if block < 5:
                self.transitions.append(Transition(c, c // 2, block))
                c //= 2
        self.bn5 = nn.BatchNorm2d(c)
        self.fc6 = nn.Conv2d(c, classes, 1)
        lin = full_map_as_linear
        self.branch3 = ScoringBranch(256, 9, classes, "AVE", ("conv_fc3", "conv_fc3_1"), lin)
        self.branch4 = ScoringBranch(512, 5, classes, "AVE", ("conv_fc4", "conv_fc4_1"), lin)
        self.fused = nn.Linear(3 * classes, classes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four score tensors under a loss: branch 3, branch 4, the main head, the fused one."""
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1, ceil_mode=True)
        taps = []
        for block, transition in zip(self.blocks, self.transitions):
            t = transition(block(x))
            taps.append(t)
            x = F.avg_pool2d(t, 2, 2, ceil_mode=True)
        x = F.relu(self.bn5(self.blocks[-1](x)))
        main = torch.flatten(self.fc6(F.adaptive_avg_pool2d(x, 1)), 1)
        scores = [self.branch3(taps[1]), self.branch4(taps[2]), main]
        return scores + [self.fused(torch.cat(scores, dim=1))]

    def caffe_params(self) -> Iterator[CaffeParam]:
        yield "conv1", 0, self.conv1.weight
        yield "conv1/scale", 0, self.bn1.weight
        yield "conv1/scale", 1, self.bn1.bias
        yield from _collect(self)
        yield "conv5_blk/scale", 0, self.bn5.weight
        yield "conv5_blk/scale", 1, self.bn5.bias
        yield "emoti_fc6", 0, self.fc6.weight
        yield "emoti_fc6", 1, self.fc6.bias
        yield "fc_fused", 0, self.fused.weight
        yield "fc_fused", 1, self.fused.bias


def _collect(model: nn.Module) -> Iterator[CaffeParam]:
    """The Caffe params of the outermost submodules that declare them."""
    for child in model.children():
        if hasattr(child, "caffe_params"):
            yield from child.caffe_params()
        else:
            yield from _collect(child)


def sse_loss(scores: list[torch.Tensor], label: torch.Tensor) -> torch.Tensor:
    """The sum of the softmax losses of every score tensor (all loss weights are 1)."""
    return sum(F.cross_entropy(s, label) for s in scores)


@torch.no_grad()
def load_from_caffe_net(model: nn.Module, net) -> int:
    """Copy the weights of a caffe.Net (by Caffe layer name) into ``model``; returns the number
    of tensors copied. A missing layer or a shape mismatch raises KeyError/ValueError."""
    count = 0
    for layer, index, target in model.caffe_params():
        source = net.layer_dict[layer].blobs[index].detach()
        if tuple(source.shape) != tuple(target.shape):
            source = source.reshape(target.shape)
        target.copy_(source)
        count += 1
    return count
