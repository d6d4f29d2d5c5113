"""Which layers and bottoms Caffe's backward visits, and where its implicit Split layers sit.

Caffe inserts a Split layer right after every blob version that feeds several layers: each consumer
gets its own top (and diff), and the Split sums those diffs into the blob's diff when the backward
reaches it. At ``Net::Init`` Caffe also decides which layers need backward (a bottom that needs it,
or a parameter with ``lr_mult != 0``), drops the layers that contribute to no loss, and with
``force_backward`` makes every layer and every bottom that allows it run. This module computes the
same from the layers' bottom and top names, without creating the Split blobs: ``Net`` keeps a diff
per split consumer instead."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Mapping, Sequence

Version = tuple[int, int]  # (producer layer index, top index): one version of a blob
Consumer = tuple[int, int]  # (consumer layer index, bottom index)


@dataclass
class LayerSpec:
    """What the plan needs to know of one layer."""

    bottoms: list[str]
    tops: list[str]
    loss_tops: list[bool]
    param_need: bool
    allow_force: list[bool]


@dataclass
class BackwardPlan:
    """``layer_need[i]`` and ``bottom_need[i][j]`` as Caffe's ``layer_need_backward_`` and
    ``bottom_need_backward_``; ``splits`` maps each blob version that feeds several layers to its
    consumers, ``split_need`` whether that Split runs backward, ``split_of`` each such consumer to
    the version it reads."""

    layer_need: list[bool]
    bottom_need: list[list[bool]]
    splits: dict[Version, list[Consumer]] = field(default_factory=dict)
    split_need: dict[Version, bool] = field(default_factory=dict)
    split_of: dict[Consumer, Version] = field(default_factory=dict)


@dataclass
class _Node:
    bottoms: list[object]
    tops: list[object]
    loss_tops: list[bool]
    param_need: bool
    allow_force: list[bool]
    split: Version | None = None


def plan_backward(layers: list[LayerSpec], force_backward: bool) -> BackwardPlan:
    """Caffe's ``Net::Init`` backward bookkeeping for ``layers`` (in net order)."""
    current: dict[str, Version] = {}
    consumers: dict[Version, list[Consumer]] = {}
    read: dict[Consumer, Version] = {}
    for i, spec in enumerate(layers):
        for j, b in enumerate(spec.bottoms):
            if b in current:
                consumers.setdefault(current[b], []).append((i, j))
                read[(i, j)] = current[b]
        for k, t in enumerate(spec.tops):
            current[t] = (i, k)
    splits = {v: c for v, c in consumers.items() if len(c) > 1}
    split_of = {c: read[c] for c in read if read[c] in splits}
    nodes = _caffe_order(layers, splits, split_of)
    layer_need, bottom_need = _need_backward(nodes, force_backward)
    plan = BackwardPlan([], [], splits, {}, split_of)
    for node, need, bneed in zip(nodes, layer_need, bottom_need):
        if node.split is not None:
            plan.split_need[node.split] = need
        else:
            plan.layer_need.append(need)
            plan.bottom_need.append(bneed)
    return plan


def _caffe_order(layers: list[LayerSpec], splits: dict[Version, list[Consumer]],
                 split_of: dict[Consumer, Version]) -> list[_Node]:
    """The layers with Caffe's Split layers after the producers, blob keys renamed as InsertSplits
    does: a consumer of a split version reads its own split top."""
    nodes = []
    for i, spec in enumerate(layers):
        bottoms = [("split", split_of[(i, j)], (i, j)) if (i, j) in split_of else b
                   for j, b in enumerate(spec.bottoms)]
        nodes.append(_Node(bottoms, list(spec.tops), list(spec.loss_tops), spec.param_need,
                           list(spec.allow_force)))
        for k, t in enumerate(spec.tops):
            users = splits.get((i, k))
            if users:
                nodes.append(_Node([t], [("split", (i, k), c) for c in users], [False] * len(users),
                                   False, [True], split=(i, k)))
    return nodes


def _need_backward(nodes: list[_Node], force_backward: bool) -> tuple[list[bool], list[list[bool]]]:
    blob_need: dict[object, bool] = {}
    layer_need, bottom_need = [], []
    for node in nodes:
        bneed = [blob_need.get(b, False) for b in node.bottoms]
        need = any(bneed) or node.param_need
        if need:
            for t in node.tops:
                blob_need[t] = True
        layer_need.append(need)
        bottom_need.append(bneed)
    under_loss: set[object] = set()
    skip: set[object] = set()
    for n in range(len(nodes) - 1, -1, -1):
        node = nodes[n]
        contributes, skip_down = False, True
        for t, is_loss in zip(node.tops, node.loss_tops):
            if is_loss or t in under_loss:
                contributes = True
            if t not in skip:
                skip_down = False
            if contributes and not skip_down:
                break
        if layer_need[n] and skip_down:
            layer_need[n] = False
            bottom_need[n] = [False] * len(node.bottoms)
        if not contributes:
            layer_need[n] = False
        for j, b in enumerate(node.bottoms):
            if contributes:
                under_loss.add(b)
            else:
                bottom_need[n][j] = False
            if not bottom_need[n][j]:
                skip.add(b)
    if force_backward:
        for n, node in enumerate(nodes):
            layer_need[n] = True
            bottom_need[n] = [need or allow for need, allow in zip(bottom_need[n], node.allow_force)]
    return layer_need, bottom_need


def concat_chains(concats: Mapping[int, tuple[Hashable, Sequence[Hashable]]]) -> list[list[int]]:
    """The chains among ``concats`` (a Concat's position -> its top and its bottoms) in which each
    Concat's first bottom is the previous one's top, and no other of its bottoms (a DenseNet
    block): a Concat whose top starts several others ends its chain. Each chain in order, two
    Concats at least; chains in the order of their first Concat."""
    by_top = {top: i for i, (top, _) in concats.items()}
    successors: dict[int, list[int]] = {}
    for i, (_, bottoms) in concats.items():
        if bottoms[0] in by_top and bottoms[0] not in bottoms[1:]:
            successors.setdefault(by_top[bottoms[0]], []).append(i)
    nxt = {i: ks[0] for i, ks in successors.items() if len(ks) == 1}
    chains = []
    for start in sorted(set(nxt) - set(nxt.values())):
        chain = [start]
        while chain[-1] in nxt:
            chain.append(nxt[chain[-1]])
        chains.append(chain)
    return chains
