"""pycaffe's ``caffe.draw``: a NetParameter as a graph (pydot), each layer a box naming its type and
main parameters, each blob an octagon, edges from bottoms to layers to tops; rendered by Graphviz's
``dot`` (Debian's ``graphviz``). ``python/draw_net.py``'s calls: ``draw_net_to_file(net, file,
rankdir, phase, display_lrm)``."""
from __future__ import annotations

import os
from pathlib import Path

import pydot

from .atomic import atomic_path
from .proto import caffe_pb2

LAYER_STYLE = {"shape": "record", "fillcolor": "#6495ED", "style": "filled"}
NEURON_LAYER_STYLE = {"shape": "record", "fillcolor": "#90EE90", "style": "filled"}
BLOB_STYLE = {"shape": "octagon", "fillcolor": "#E0E0E0", "style": "filled"}
LAYER_COLORS = {"Convolution": "#FF5050", "Deconvolution": "#FF5050", "Pooling": "#FF9900",
                "InnerProduct": "#CC33FF"}
LEARNING_TYPES = ("Convolution", "Deconvolution", "InnerProduct")


def get_pooling_types_dict() -> dict[int, str]:
    """PoolingParameter's pool enum values by number ({0: 'MAX', 1: 'AVE', 2: 'STOCHASTIC'})."""
    enum = caffe_pb2.PoolingParameter.PoolMethod
    return {enum.Value(name): name for name in enum.keys()}


def get_edge_label(layer) -> str | None:
    """What an edge out of ``layer`` says: the batch size of a data layer, the output count of a
    convolution or inner product."""
    if layer.type == "Data":
        return f"Batch {layer.data_param.batch_size}"
    if layer.type in ("Convolution", "Deconvolution"):
        return str(layer.convolution_param.num_output)
    if layer.type == "InnerProduct":
        return str(layer.inner_product_param.num_output)
    return None


def get_layer_lr_mult(layer) -> tuple[float, float] | None:
    """(weight lr_mult, bias lr_mult) of a learning layer, 1 where not given; None otherwise."""
    if layer.type not in LEARNING_TYPES:
        return None
    mults = [p.lr_mult for p in layer.param] + [1.0] * 2
    return float(mults[0]), float(mults[1])


def _spatial(values, h: int, w: int, has_hw: bool, default: int) -> str:
    if has_hw:
        return f"{h}x{w}" if h != w else str(h)
    values = list(values) or [default]
    return "x".join(str(v) for v in values) if len(set(values)) > 1 else str(values[0])


def get_layer_label(layer, rankdir: str, display_lrm: bool = False) -> str:
    """A layer's node label: name, type and, for convolution and pooling, kernel, stride, pad."""
    sep = r"\n" if rankdir in ("TB", "BT") else " "
    parts = [layer.name, f"({layer.type})"]
    if layer.type in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        parts.append(f"kernel size: {_spatial(p.kernel_size, p.kernel_h, p.kernel_w, p.HasField('kernel_h'), 1)}")
        parts.append(f"stride: {_spatial(p.stride, p.stride_h, p.stride_w, p.HasField('stride_h'), 1)}")
        parts.append(f"pad: {_spatial(p.pad, p.pad_h, p.pad_w, p.HasField('pad_h'), 0)}")
    elif layer.type == "Pooling":
        p = layer.pooling_param
        parts.append(f"pool: {get_pooling_types_dict()[p.pool]}")
        kernel = f"{p.kernel_h}x{p.kernel_w}" if p.HasField("kernel_h") else str(p.kernel_size)
        parts.append("global" if p.global_pooling else f"kernel size: {kernel}")
        parts.append(f"stride: {p.stride}")
        parts.append(f"pad: {p.pad}")
    if display_lrm:
        mults = get_layer_lr_mult(layer)
        if mults is not None and any(mults):
            parts.append(f"lr mult: {mults[0]:g}, {mults[1]:g}")
    return f'"{sep.join(parts)}"'


def choose_color_by_layertype(layertype: str) -> str:
    return LAYER_COLORS.get(layertype, "#6495ED")


def _included(layer, phase: int | None) -> bool:
    if phase is None:
        return True
    if len(layer.include):
        return any(not r.HasField("phase") or r.phase == phase for r in layer.include)
    return not any(r.HasField("phase") and r.phase == phase for r in layer.exclude)


def get_pydot_graph(caffe_net, rankdir: str, label_edges: bool = True, phase: int | None = None,
                    display_lrm: bool = False) -> pydot.Dot:
    """The graph of ``caffe_net`` (a NetParameter); ``phase`` (caffe.TRAIN / TEST) keeps only the
    layers of that phase, None keeps all."""
    graph = pydot.Dot(caffe_net.name if caffe_net.name else "Net", graph_type="digraph",
                      rankdir=rankdir, compound="true")
    blob_nodes: dict[str, pydot.Node] = {}
    edges: list[tuple[str, str, str | None]] = []
    for layer in caffe_net.layer:
        if not _included(layer, phase):
            continue
        node_name = f"{layer.name}_{layer.type}"
        is_neuron = len(layer.bottom) == 1 and len(layer.top) == 1 and layer.bottom[0] == layer.top[0]
        style = dict(NEURON_LAYER_STYLE if is_neuron else LAYER_STYLE)
        if not is_neuron:
            style["fillcolor"] = choose_color_by_layertype(layer.type)
        graph.add_node(pydot.Node(_quote(node_name), label=get_layer_label(layer, rankdir, display_lrm),
                                  **style))
        for bottom in layer.bottom:
            blob_nodes.setdefault(bottom, pydot.Node(_quote(f"{bottom}_blob"), label=_quote(bottom),
                                                     **BLOB_STYLE))
            edges.append((f"{bottom}_blob", node_name, None))
        label = get_edge_label(layer) if label_edges else None
        for top in layer.top:
            blob_nodes.setdefault(top, pydot.Node(_quote(f"{top}_blob"), label=_quote(top),
                                                  **BLOB_STYLE))
            edges.append((node_name, f"{top}_blob", label))
    for node in blob_nodes.values():
        graph.add_node(node)
    for src, dst, label in edges:
        attrs = {"label": _quote(label)} if label else {}
        graph.add_edge(pydot.Edge(_quote(src), _quote(dst), **attrs))
    return graph


def _quote(text: str) -> str:
    return '"' + str(text).replace('"', r"\"") + '"'


def draw_net(caffe_net, rankdir: str, ext: str = "png", phase: int | None = None,
             display_lrm: bool = False) -> bytes:
    """The graph rendered by Graphviz in format ``ext`` (png, pdf, svg, ...), as bytes."""
    return get_pydot_graph(caffe_net, rankdir, phase=phase, display_lrm=display_lrm).create(format=ext)


def draw_net_to_file(caffe_net, filename: str | os.PathLike, rankdir: str = "LR",
                     phase: int | None = None, display_lrm: bool = False) -> None:
    """Render to ``filename`` in the format its extension names (atomically)."""
    ext = Path(filename).suffix.lstrip(".") or "png"
    data = draw_net(caffe_net, rankdir, ext, phase, display_lrm)
    with atomic_path(filename) as tmp:
        Path(tmp).write_bytes(data)
