"""pycaffe's ``caffe.coord_map``: how the spatial coordinates of one NetSpec top relate to those of
another, through the convolutions, poolings, deconvolutions and crops between them, and ``crop``,
which makes the Crop layer that aligns a top with a reference top (as the FCN nets do).

A map is ``(axis, a, b)``: a coordinate ``y`` of the first top corresponds to ``a * y + b`` in the
second, on every spatial axis after ``axis`` (``a`` and ``b`` are arrays when the layers give
per-axis kernel, stride or pad)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .net_spec import Top
from .net_spec import layers as L

# Layers whose tops keep their bottoms' spatial coordinates.
PASS_THROUGH = {
    "AbsVal", "BatchNorm", "Bias", "BNLL", "Clip", "Concat", "Dropout", "Eltwise", "ELU", "Exp",
    "Log", "LRN", "MVN", "Power", "PReLU", "ReLU", "Scale", "Sigmoid", "Softmax", "Split", "Swish",
    "TanH", "Threshold",
}
Map = tuple[int, Any, Any]


def _values(params: dict, name: str, default: int) -> np.ndarray | int:
    """A kernel/stride/pad/dilation parameter: its ``name_h``/``name_w`` pair, repeated values
    (an array when there are several) or the single value."""
    if f"{name}_h" in params or f"{name}_w" in params:
        return np.array([params.get(f"{name}_h", default), params.get(f"{name}_w", default)])
    value = params.get(name, default)
    if isinstance(value, (list, tuple)):
        return np.array(value) if len(value) > 1 else value[0]
    return value


def _conv_geometry(fn) -> tuple[int, Any, Any]:
    """(axis, stride, centre offset (d(k-1)/2 - pad)) of a Convolution, Deconvolution, Pooling
    or Im2col layer."""
    key = "pooling_param" if fn.type_name == "Pooling" else "convolution_param"
    params = dict(fn.params.get(key, {}), **{k: v for k, v in fn.params.items() if k != key})
    if params.get("global_pooling"):
        raise RuntimeError(f"global pooling ({fn.type_name}) has no spatial coordinate map")
    kernel = _values(params, "kernel_size" if "kernel_size" in params else "kernel", 1)
    stride = _values(params, "stride", 1)
    pad = _values(params, "pad", 0)
    dilation = _values(params, "dilation", 1)
    axis = params.get("axis", 1)
    return axis, stride, dilation * (np.asarray(kernel) - 1) / 2.0 - pad


def layer_map(fn) -> Map:
    """The map from a layer's top coordinates to its (mapped) bottom's."""
    if fn.type_name in ("Convolution", "Pooling", "Im2col"):
        axis, stride, offset = _conv_geometry(fn)
        return axis, stride, offset
    if fn.type_name == "Deconvolution":
        axis, stride, offset = _conv_geometry(fn)
        return axis, 1.0 / np.asarray(stride), -np.asarray(offset) / np.asarray(stride)
    if fn.type_name == "Crop":
        params = dict(fn.params.get("crop_param", {}), **fn.params)
        offset = params.get("offset", 0)
        if isinstance(offset, (list, tuple)):
            offset = np.array(offset) if len(offset) > 1 else offset[0]
        return params.get("axis", 2) - 1, 1, offset
    if fn.type_name in PASS_THROUGH:
        return 1, 1, 0
    raise RuntimeError(f"layer type {fn.type_name} is not spatially connected: no coordinate map")


def compose(outer: Map, inner: Map) -> Map:
    """The map ``outer`` followed by ``inner`` (y -> a_o y + b_o -> a_i (a_o y + b_o) + b_i)."""
    ax_o, a_o, b_o = outer
    ax_i, a_i, b_i = inner
    return min(ax_o, ax_i), np.multiply(a_i, a_o), np.add(np.multiply(a_i, b_o), b_i)


def inverse(coord_map: Map) -> Map:
    """The map the other way round."""
    ax, a, b = coord_map
    return ax, np.divide(1.0, a), -np.divide(b, a)


def _mapped_bottoms(top: Top) -> list[Top]:
    fn = top.fn
    if fn.type_name == "Crop":
        return [fn.inputs[0]]
    if fn.type_name in ("Convolution", "Deconvolution", "Pooling") and len(fn.inputs) > 1:
        return [fn.inputs[top.n]]
    return list(fn.inputs)


def _path_map(top_from: Top, top_to: Top) -> Map | None:
    """The map from ``top_from`` down to ``top_to`` (an ancestor), or None when it is not one."""
    if top_from is top_to:
        return 1, 1, 0
    for bottom in _mapped_bottoms(top_from):
        rest = _path_map(bottom, top_to)
        if rest is not None:
            return compose(layer_map(top_from.fn), rest)
    return None


def coord_map_from_to(top_from: Top, top_to: Top) -> Map:
    """The map from ``top_from``'s coordinates to ``top_to``'s, one being above the other in the
    NetSpec graph; RuntimeError when they are not spatially connected."""
    down = _path_map(top_from, top_to)
    if down is not None:
        return _simplify(down)
    up = _path_map(top_to, top_from)
    if up is not None:
        return _simplify(inverse(up))
    raise RuntimeError("could not compute a coordinate map: the tops are not connected by "
                       "spatial layers")


def _simplify(m: Map) -> Map:
    ax, a, b = m
    return ax, (a.item() if np.ndim(a) == 0 else a), (b.item() if np.ndim(b) == 0 else b)


def crop(top_from: Top, top_to: Top) -> Top:
    """A Crop layer that cuts ``top_from`` to align with ``top_to``: needs a scale of 1 and a
    non-negative, whole-pixel offset (AssertionError otherwise, as pycaffe)."""
    ax, a, b = coord_map_from_to(top_from, top_to)
    assert np.all(np.asarray(a) == 1), f"scale mismatch on crop (a = {a})"
    assert np.all(np.asarray(b) <= 0), f"cannot crop negative offset (b = {b})"
    assert np.all(np.round(b) == b), f"cannot crop noninteger offset (b = {b})"
    offset = [int(v) for v in np.atleast_1d(-np.round(b))]
    return L.Crop(top_from, top_to, crop_param=dict(axis=ax + 1, offset=offset))
