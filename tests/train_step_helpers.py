"""Shared by the tests of the solver step's fusions (in-place ReLU, ReLU + MAX pooling, CReLU
pair): nets built with a fusion kept or turned off, and the check that one step of each gives
exactly the same loss, blobs, gradients, parameters and BatchNorm statistics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import caffe
from caffe.model_io import parse_net_text
from inference_helpers import MODELS, randomize_weights, sse_train_net


def without(net: caffe.Net, fusion: str | None) -> caffe.Net:
    """``net`` with the fusion table ``fusion`` (a ``Net`` attribute such as ``_relu_over``)
    emptied, so that its layers run plain; unchanged when ``fusion`` is None."""
    if fusion is not None:
        setattr(net, fusion, {})
    return net


def train_net(text: str, off: str | None = None, seed: int = 3) -> caffe.Net:
    """The TRAIN net of prototxt ``text`` with random weights, the fusion ``off`` turned off."""
    caffe.set_random_seed(seed)
    net = caffe.Net(net_param=parse_net_text(text), phase=caffe.TRAIN)
    randomize_weights(net, seed)
    return without(net, off)


def sse_pair(key: str, fusion: str) -> tuple[caffe.Net, caffe.Net]:
    """An SSE TRAIN net (batch 2) with ``fusion`` and the same net without it."""
    nets = []
    for off in (None, fusion):
        net = sse_train_net(MODELS[key], 2, seed=5)
        randomize_weights(net, 5)
        nets.append(without(net, off))
    return nets[0], nets[1]


def feed(net: caffe.Net, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    net.blobs["data"].data[...] = rng.normal(0, 1, net.blobs["data"].data.shape)
    net.blobs["label"].data[...] = rng.integers(0, 5, net.blobs["label"].data.shape)


def _step(net: caffe.Net) -> float:
    for p in net.learnable_params:
        p.grad = None
    return net.forward_backward()


def assert_same_step(a: caffe.Net, b: caffe.Net, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Two steps of ``a`` and ``b`` on the same data give bit-equal results (or, given
    tolerances, results within them: a fusion that sums in another order)."""
    for seed in (0, 1):  # two steps: the BatchNorm statistics accumulate
        feed(a, seed)
        feed(b, seed)
        assert _step(a) == pytest.approx(_step(b), rel=rtol, abs=atol)
        for name in b.blobs:
            np.testing.assert_allclose(a.blobs[name].data, b.blobs[name].data, rtol=rtol,
                                       atol=atol, err_msg=name)
        for pa, pb in zip(a.learnable_params, b.learnable_params):
            assert (pa.grad is None) == (pb.grad is None)
            if pa.grad is not None:
                torch.testing.assert_close(pa.grad, pb.grad, rtol=rtol, atol=atol)
        for name in b.params:
            for ba, bb in zip(a.params[name], b.params[name]):
                np.testing.assert_allclose(ba.data, bb.data, rtol=rtol, atol=atol, err_msg=name)
