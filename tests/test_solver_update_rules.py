"""Each solver type against a hand-written numpy version of Caffe's formulas, over several steps
with a changing rate, lr_mult / decay_mult, L1 and L2 decay, clip_gradients and iter_size: a
linear layer with a Euclidean loss, whose gradient numpy computes exactly."""
from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

import caffe
from caffe.errors import SolverError

N, B, K, M = 12, 4, 5, 3  # samples, batch, inputs, outputs

NET = """name: "linear"
layer { name: "data" type: "HDF5Data" top: "data" top: "target"
  hdf5_data_param { source: "list.txt" batch_size: 4 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.3 }
    bias_filler { type: "constant" value: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N, K)).astype(np.float32)
    y = rng.normal(size=(N, M)).astype(np.float32)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["data"], f["target"] = x, y
    (tmp_path / "list.txt").write_text("d.h5\n")
    (tmp_path / "net.prototxt").write_text(NET)
    monkeypatch.chdir(tmp_path)
    return x, y


def make_solver(type_: str, extra: str = "", weight_decay: float = 0.01):
    text = (f'net: "net.prototxt" type: "{type_}" base_lr: 0.1 lr_policy: "step" gamma: 0.5 '
            f'stepsize: 2 max_iter: 8 display: 0 weight_decay: {weight_decay} random_seed: 5 {extra}')
    return caffe.get_solver(caffe.model_io.parse_solver_text(text))


def grads(w, b, x, y):
    """Euclidean loss 1/(2N) sum (xW^T + b - y)^2 and its gradients."""
    d = x @ w.T + b - y
    return d.T @ x / len(x), d.sum(0) / len(x)


def caffe_rate(k: int) -> float:
    return 0.1 * 0.5 ** (k // 2)


def reference(type_: str, w, b, x, y, steps: int, momentum=0.0, delta=1e-8, rms_decay=0.99,
              momentum2=0.999, regularization="L2", clip=-1.0, iter_size=1):
    w, b = w.astype(np.float64), b.astype(np.float64)
    params = [w, b]
    lr_mult, decay_mult = [1.0, 2.0], [1.0, 0.0]
    h = [np.zeros_like(p) for p in params]
    h2 = [np.zeros_like(p) for p in params]
    pos = 0
    for k in range(steps):
        g = [np.zeros_like(p) for p in params]
        for _ in range(iter_size):
            idx = [(pos + j) % N for j in range(B)]
            pos = (pos + B) % N
            gw, gb = grads(w, b, x[idx], y[idx])
            g[0] += gw
            g[1] += gb
        norm = math.sqrt(sum((gi ** 2).sum() for gi in g))
        if 0 <= clip < norm:
            g = [gi * clip / norm for gi in g]
        rate = caffe_rate(k)
        for i, p in enumerate(params):
            gi = g[i] / iter_size
            decay = 0.01 * decay_mult[i]
            gi = gi + decay * (p if regularization == "L2" else np.sign(p))
            lr = rate * lr_mult[i]
            if type_ == "SGD":
                h[i] = momentum * h[i] + lr * gi
                u = h[i]
            elif type_ == "Nesterov":
                prev = h[i].copy()
                h[i] = momentum * h[i] + lr * gi
                u = (1 + momentum) * h[i] - momentum * prev
            elif type_ == "AdaGrad":
                h[i] = h[i] + gi ** 2
                u = lr * gi / (np.sqrt(h[i]) + delta)
            elif type_ == "RMSProp":
                h[i] = rms_decay * h[i] + (1 - rms_decay) * gi ** 2
                u = lr * gi / (np.sqrt(h[i]) + delta)
            elif type_ == "AdaDelta":
                h[i] = momentum * h[i] + (1 - momentum) * gi ** 2
                s = gi * np.sqrt((h2[i] + delta) / (h[i] + delta))
                h2[i] = momentum * h2[i] + (1 - momentum) * s ** 2
                u = lr * s
            elif type_ == "Adam":
                t = k + 1
                h[i] = momentum * h[i] + (1 - momentum) * gi
                h2[i] = momentum2 * h2[i] + (1 - momentum2) * gi ** 2
                corr = math.sqrt(1 - momentum2 ** t) / (1 - momentum ** t)
                u = lr * corr * h[i] / (np.sqrt(h2[i]) + delta)
            p -= u
    return params, h, h2


def initial(solver):
    return solver.net.params["ip"][0].data.copy(), solver.net.params["ip"][1].data.copy()


CASES = [
    ("SGD", "momentum: 0.9", {"momentum": 0.9}),
    ("SGD", 'momentum: 0.9 regularization_type: "L1"', {"momentum": 0.9, "regularization": "L1"}),
    ("SGD", "momentum: 0.9 iter_size: 2", {"momentum": 0.9, "iter_size": 2}),
    ("SGD", "momentum: 0.5 clip_gradients: 0.2", {"momentum": 0.5, "clip": 0.2}),
    ("Nesterov", "momentum: 0.9", {"momentum": 0.9}),
    ("AdaGrad", "delta: 1e-6", {"delta": 1e-6}),
    ("RMSProp", "rms_decay: 0.9 delta: 1e-6", {"rms_decay": 0.9, "delta": 1e-6}),
    ("AdaDelta", "momentum: 0.95 delta: 1e-6", {"momentum": 0.95, "delta": 1e-6}),
    ("Adam", "momentum: 0.9 momentum2: 0.999 delta: 1e-8", {"momentum": 0.9}),
]


@pytest.mark.parametrize("type_,extra,kwargs", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_update_rule_matches_numpy_reference_of_caffe_formula(workdir, type_, extra, kwargs):
    x, y = workdir
    solver = make_solver(type_, extra)
    w0, b0 = initial(solver)
    steps = 7
    (w, b), h, h2 = reference(type_, w0, b0, x, y, steps, **kwargs)
    solver.step(steps)
    np.testing.assert_allclose(solver.net.params["ip"][0].data, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(solver.net.params["ip"][1].data, b, rtol=1e-5, atol=1e-6)
    assert len(solver.history) == (4 if type_ in ("AdaDelta", "Adam") else 2)
    np.testing.assert_allclose(solver.history[0].numpy(), h[0], rtol=1e-4, atol=1e-7)
    if type_ in ("AdaDelta", "Adam"):
        np.testing.assert_allclose(solver.history[2].numpy(), h2[0], rtol=1e-4, atol=1e-7)


def test_sgd_puts_the_rate_inside_the_momentum_unlike_torch_optim(workdir):
    x, y = workdir
    solver = make_solver("SGD", "momentum: 0.9", weight_decay=0)
    w0, _ = initial(solver)
    solver.step(4)
    # torch.optim.SGD: v = m*v + g; w -= lr*v. Differs once the rate halves at k = 2.
    w = w0.astype(np.float64)
    b = np.full(M, 0.1)
    v = [np.zeros_like(w), np.zeros_like(b)]
    for k in range(4):
        idx = [(k * B + j) % N for j in range(B)]
        gw, gb = grads(w, b, x[idx], y[idx])
        v = [0.9 * v[0] + gw, 0.9 * v[1] + gb]
        w = w - caffe_rate(k) * v[0]
        b = b - 2 * caffe_rate(k) * v[1]
    assert np.abs(solver.net.params["ip"][0].data - w).max() > 1e-4


@pytest.mark.parametrize("type_,extra,message", [
    ("AdaGrad", "momentum: 0.9", "Momentum cannot be used with AdaGrad"),
    ("RMSProp", "momentum: 0.9", "Momentum cannot be used with RMSProp"),
    ("RMSProp", "rms_decay: 1.5", "rms_decay should lie between 0 and 1"),
    ("Foo", "", "unknown solver type 'Foo'"),
])
def test_invalid_solver_settings_are_refused(workdir, type_, extra, message):
    with pytest.raises(SolverError, match=message):
        make_solver(type_, extra)


def test_typed_solver_classes_use_their_own_rule(workdir):
    text = 'net: "net.prototxt" type: "SGD" base_lr: 0.1 lr_policy: "fixed" display: 0'
    solver = caffe.AdamSolver(caffe.model_io.parse_solver_text(text))
    assert solver.rule.type == "Adam" and len(solver.history) == 4


def test_fused_sgd_step_equals_the_per_parameter_loop(workdir, monkeypatch):
    """L2-regularized SGD runs as PyTorch's fused CPU kernel (one pass per tensor), grouped by
    (rate, decay): within float32 rounding of the per-parameter loop, history included."""
    fused = make_solver("SGD", "momentum: 0.9")
    calls = []
    original = torch._fused_sgd_
    monkeypatch.setattr(torch, "_fused_sgd_", lambda *a, **k: calls.append(k) or original(*a, **k))
    fused.step(5)
    assert len(calls) == 5 * 2  # weights (lr_mult 1, decay_mult 1) and bias (2, 0): two groups
    monkeypatch.setattr(caffe.solvers.updates.SGD, "update_all", lambda self, *a: False)
    loop = make_solver("SGD", "momentum: 0.9")
    loop.step(5)
    for got, expected in zip(fused.net.params["ip"], loop.net.params["ip"]):
        np.testing.assert_allclose(got.data, expected.data, rtol=1e-6, atol=1e-7)
    for got, expected in zip(fused.history, loop.history):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-8)


def test_sgd_without_momentum_keeps_the_last_update_as_history(workdir):
    """Without momentum the fused kernel keeps no history; the loop runs and the history holds
    the last update (rate * diff), as Caffe's."""
    x, y = workdir
    solver = make_solver("SGD")
    w0, b0 = initial(solver)
    (w, b), h, _ = reference("SGD", w0, b0, x, y, 3)
    solver.step(3)
    np.testing.assert_allclose(solver.net.params["ip"][0].data, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(solver.history[0].numpy(), h[0], rtol=1e-4, atol=1e-7)
