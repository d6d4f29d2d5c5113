"""RNN, LSTM and LSTMUnit against numpy references of Caffe's unrolled nets: forward with
multi-axis inputs, a static input, sequence cuts and exposed hidden state; gradients against the
same formulas differentiated by autograd in float64 (cont in {0, 1}, where Caffe's LSTMUnit
gradient is the exact one)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import caffe
from caffe.model_io import parse_net_text

RNG = np.random.default_rng(7)
T, N, H = 5, 3, 4


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _rnn_ref(w, x, cont, static=None, h0=None):
    """Numpy RNN: returns (outputs T x N x H, h_T)."""
    w_xh, b_h = w[0], w[1]
    rest = w[2:]
    w_s = None
    if static is not None:
        w_s, rest = rest[0], rest[1:]
    w_hh, w_ho, b_o = rest
    h = np.zeros((N, H)) if h0 is None else h0[0]
    out = []
    for t in range(T):
        pre = (h * cont[t][:, None]) @ w_hh.T + x[t].reshape(N, -1) @ w_xh.T + b_h
        if w_s is not None:
            pre = pre + static.reshape(N, -1) @ w_s.T
        h = np.tanh(pre)
        out.append(np.tanh(h @ w_ho.T + b_o))
    return np.stack(out), h[None]


def _lstm_ref(w, x, cont, static=None, h0=None, c0=None):
    """Numpy LSTM: returns (h for every step T x N x H, h_T, c_T)."""
    w_xc, b_c = w[0], w[1]
    rest = w[2:]
    w_s = None
    if static is not None:
        w_s, rest = rest[0], rest[1:]
    (w_hc,) = rest
    h = np.zeros((N, H)) if h0 is None else h0[0]
    c = np.zeros((N, H)) if c0 is None else c0[0]
    out = []
    for t in range(T):
        g = (h * cont[t][:, None]) @ w_hc.T + x[t].reshape(N, -1) @ w_xc.T + b_c
        if w_s is not None:
            g = g + static.reshape(N, -1) @ w_s.T
        i, f, o, gg = _sigmoid(g[:, :H]), _sigmoid(g[:, H:2 * H]), _sigmoid(g[:, 2 * H:3 * H]), \
            np.tanh(g[:, 3 * H:])
        c = cont[t][:, None] * f * c + i * gg
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out), h[None], c[None]


def _net(kind: str, static: bool, exposed: bool) -> caffe.Net:
    states = ["h0"] + (["c0"] if kind == "LSTM" else [])
    bottoms = ["x", "cont"] + (["xs"] if static else []) + (states if exposed else [])
    tops = ["y"] + ([s.replace("0", "T") for s in states] if exposed else [])
    text = (f'name: "r" force_backward: true\n'
            f'layer {{ name: "in" type: "Input" top: "x" top: "cont" top: "xs" top: "h0" top: "c0" '
            f'input_param {{ shape {{ dim: {T} dim: {N} dim: 2 dim: 3 }} shape {{ dim: {T} dim: {N} }} '
            f'shape {{ dim: {N} dim: 5 }} shape {{ dim: 1 dim: {N} dim: {H} }} '
            f'shape {{ dim: 1 dim: {N} dim: {H} }} }} }}\n'
            f'layer {{ name: "r" type: "{kind}" '
            + " ".join(f'bottom: "{b}"' for b in bottoms) + " "
            + " ".join(f'top: "{t}"' for t in tops)
            + f' recurrent_param {{ num_output: {H} expose_hidden: {str(exposed).lower()} '
            'weight_filler { type: "uniform" min: -0.5 max: 0.5 } '
            'bias_filler { type: "uniform" min: -0.5 max: 0.5 } } }\n')
    return caffe.Net(net_param=parse_net_text(text), phase=caffe.TRAIN)


def _inputs():
    cont = np.ones((T, N), np.float32)
    cont[0] = 0
    cont[2, 1] = 0
    return {"x": RNG.normal(size=(T, N, 2, 3)).astype(np.float32), "cont": cont,
            "xs": RNG.normal(size=(N, 5)).astype(np.float32),
            "h0": RNG.normal(size=(1, N, H)).astype(np.float32),
            "c0": RNG.normal(size=(1, N, H)).astype(np.float32)}


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("exposed", [False, True])
def test_recurrent_forward_matches_numpy_unrolled_net(kind, static, exposed):
    net = _net(kind, static, exposed)
    feed = _inputs()
    if not exposed:
        feed["cont"][0] = 1   # the carried state (zeros for a new net) is read at t = 0
    for name, value in feed.items():
        net.blobs[name].data[...] = value
    net.forward()
    w = [p.data.astype(np.float64) for p in net.params["r"]]
    h0 = feed["h0"] if exposed else None
    if kind == "RNN":
        y, h_t = _rnn_ref(w, feed["x"], feed["cont"], feed["xs"] if static else None, h0)
        finals = [h_t]
    else:
        y, h_t, c_t = _lstm_ref(w, feed["x"], feed["cont"], feed["xs"] if static else None, h0,
                                feed["c0"] if exposed else None)
        finals = [h_t, c_t]
    np.testing.assert_allclose(net.blobs["y"].data, y, rtol=1e-5, atol=1e-5)
    if exposed:
        for name, ref in zip(["hT", "cT"], finals):
            np.testing.assert_allclose(net.blobs[name].data, ref, rtol=1e-5, atol=1e-5)
    else:
        net.forward()  # the second forward starts from the first one's final state
        ref = (_rnn_ref(w, feed["x"], feed["cont"], feed["xs"] if static else None, finals[0])[0]
               if kind == "RNN" else
               _lstm_ref(w, feed["x"], feed["cont"], feed["xs"] if static else None, *finals)[0])
        np.testing.assert_allclose(net.blobs["y"].data, ref, rtol=1e-5, atol=1e-5)


def _torch_reference_loss(kind, weights, feed, static, exposed, top_diff):
    """The unrolled formulas in float64 autograd (independent of the engine's kernels)."""
    x = torch.tensor(feed["x"], dtype=torch.float64, requires_grad=True)
    xs = torch.tensor(feed["xs"], dtype=torch.float64, requires_grad=True)
    cont = torch.tensor(feed["cont"], dtype=torch.float64)
    w = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in weights]
    rest = w[3:] if static else w[2:]
    h = torch.tensor(feed["h0"][0], dtype=torch.float64) if exposed else torch.zeros(N, H, dtype=torch.float64)
    c = torch.tensor(feed["c0"][0], dtype=torch.float64) if exposed else torch.zeros(N, H, dtype=torch.float64)
    outs = []
    for t in range(T):
        pre = (h * cont[t][:, None]) @ rest[0].T + x[t].reshape(N, -1) @ w[0].T + w[1]
        if static:
            pre = pre + xs.reshape(N, -1) @ w[2].T
        if kind == "RNN":
            h = torch.tanh(pre)
            outs.append(torch.tanh(h @ rest[1].T + rest[2]))
        else:
            i, f, o, g = (torch.sigmoid(pre[:, :H]), torch.sigmoid(pre[:, H:2 * H]),
                          torch.sigmoid(pre[:, 2 * H:3 * H]), torch.tanh(pre[:, 3 * H:]))
            c = cont[t][:, None] * f * c + i * g
            h = o * torch.tanh(c)
            outs.append(h)
    (torch.stack(outs) * torch.tensor(top_diff, dtype=torch.float64)).sum().backward()
    return x.grad.numpy(), xs.grad, [p.grad.numpy() for p in w]


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
@pytest.mark.parametrize("static,exposed", [(False, False), (True, False), (False, True)])
def test_recurrent_gradients_match_the_unrolled_formulas(kind, static, exposed):
    net = _net(kind, static, exposed)
    feed = _inputs()
    for name, value in feed.items():
        net.blobs[name].data[...] = value
    net.forward()
    top_diff = RNG.normal(size=(T, N, H)).astype(np.float32)
    net.blobs["y"].diff[...] = top_diff
    if exposed:
        net.blobs["hT"].diff[...] = 1.0   # Caffe shares only the data of the final-state tops
    net.backward()
    weights = [p.data.copy() for p in net.params["r"]]
    dx, dxs, dw = _torch_reference_loss(kind, weights, feed, static, exposed, top_diff)
    np.testing.assert_allclose(net.blobs["x"].diff, dx, rtol=1e-4, atol=1e-5)
    if static:
        np.testing.assert_allclose(net.blobs["xs"].diff, dxs.numpy(), rtol=1e-4, atol=1e-5)
    for got, ref in zip(net.params["r"], dw):
        np.testing.assert_allclose(got.diff, ref, rtol=1e-4, atol=1e-5)
    assert not net.blobs["cont"].diff.any()
    if exposed:
        assert not net.blobs["h0"].diff.any()


def test_lstm_unit_forget_gate_is_scaled_by_cont_and_cut_at_zero():
    text = ('name: "u" force_backward: true\n'
            f'layer {{ name: "in" type: "Input" top: "c_prev" top: "x" top: "cont" input_param {{ '
            f'shape {{ dim: 1 dim: {N} dim: {H} }} shape {{ dim: 1 dim: {N} dim: {4 * H} }} '
            f'shape {{ dim: 1 dim: {N} }} }} }}\n'
            'layer { name: "u" type: "LSTMUnit" bottom: "c_prev" bottom: "x" bottom: "cont" '
            'top: "c" top: "h" }\n')
    net = caffe.Net(net_param=parse_net_text(text), phase=caffe.TRAIN)
    c_prev = RNG.normal(size=(1, N, H)).astype(np.float32)
    x = RNG.normal(size=(1, N, 4 * H)).astype(np.float32)
    cont = np.array([[0.0, 1.0, 0.5]], np.float32)
    net.forward(c_prev=c_prev, x=x, cont=cont)
    i, f, o, g = (_sigmoid(x[..., :H]), cont[..., None] * _sigmoid(x[..., H:2 * H]),
                  _sigmoid(x[..., 2 * H:3 * H]), np.tanh(x[..., 3 * H:]))
    c = f * c_prev + i * g
    np.testing.assert_allclose(net.blobs["c"].data, c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.blobs["h"].data, o * np.tanh(c), rtol=1e-5, atol=1e-6)
    dc = RNG.normal(size=c.shape).astype(np.float32)
    dh = RNG.normal(size=c.shape).astype(np.float32)
    net.blobs["c"].diff[...] = dc
    net.blobs["h"].diff[...] = dh
    net.backward()
    c_term = dc + dh * o * (1 - np.tanh(c) ** 2)
    np.testing.assert_allclose(net.blobs["c_prev"].diff, c_term * f, rtol=1e-5, atol=1e-6)
    dx = np.concatenate([c_term * g * i * (1 - i), c_term * c_prev * f * (1 - f),
                         dh * np.tanh(c) * o * (1 - o), c_term * i * (1 - g * g)], axis=-1)
    np.testing.assert_allclose(net.blobs["x"].diff, dx, rtol=1e-5, atol=1e-6)
    assert not net.blobs["cont"].diff.any()
