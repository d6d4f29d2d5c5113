"""An in-place Convolution that shrinks its blob (caffe/inplace.py) multiplies its weights by the
whole column buffer read with the output's geometry, most of which its im2col never writes; the
emulator leaves out the rows that only ever held the buffer's zero fill (issue 19: SSE-ResNet's
7x7 heads at batch 1) and must give what the product over every row gives, forward only (TEST)
and after a backward has written the whole buffer (TRAIN, second forward)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import caffe
from caffe import inplace
from caffe.inplace import InplaceReshapeWarning
from caffe.model_io import parse_net_text

NET = """name: "inplace_shrink"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } } }
layer { name: "pre" type: "Convolution" bottom: "data" top: "x"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "uniform" min: -0.3 max: 0.3 } } }
layer { name: "head" type: "Convolution" bottom: "x" top: "x"
  convolution_param { num_output: 8 kernel_size: 5 pad: 2 stride: 2
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "uniform" min: -0.3 max: 0.3 } } }
layer { name: "target" type: "Input" top: "target" input_param { shape { dim: 2 dim: 8 dim: 5 dim: 5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "x" bottom: "target" top: "loss" }
"""


def build(phase: int) -> caffe.Net:
    text = NET if phase == caffe.TRAIN else NET.split('layer { name: "target"')[0]
    caffe.set_random_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InplaceReshapeWarning)
        return caffe.Net(net_param=parse_net_text(text), phase=phase)


def every_row(em, geo) -> int:
    return geo["kdim"]


def passes(phase: int, monkeypatch, full: bool) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """The head's output over two forwards (a backward between them in TRAIN), and the rows
    multiplied at each (of the kernel_dim rows)."""
    with monkeypatch.context() as m:
        rows: list[tuple[int, int]] = []
        original = every_row if full else inplace._written_rows

        def spy(em, geo):
            rows.append((original(em, geo), geo["kdim"]))
            return rows[-1][0]
        m.setattr(inplace, "_written_rows", spy)
        net = build(phase)
        rng = np.random.default_rng(1)
        net.blobs["data"].data[...] = rng.standard_normal((2, 3, 9, 9))
        out = []
        for _ in range(2):
            net.forward()
            out.append(net.blobs["x"].data.copy())
            if phase == caffe.TRAIN:
                net.blobs["target"].data[...] = rng.standard_normal((2, 8, 5, 5))
                net.backward()
    return out, rows


@pytest.mark.parametrize("phase", [caffe.TEST, caffe.TRAIN])
def test_leaving_out_never_written_columns_gives_the_full_product(phase, monkeypatch) -> None:
    got, rows = passes(phase, monkeypatch, full=False)
    want, _ = passes(phase, monkeypatch, full=True)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # 6 channels of 5x5 read with 3x3 strided: 6*25*9 of the 6*25*25 cells, 54 of 150 rows
    assert rows[0] == (54, 150)
    if phase == caffe.TRAIN:  # the backward wrote the whole buffer: every row counts
        assert all(r == (150, 150) for r in rows[2:]), rows
    else:
        assert all(r == (54, 150) for r in rows), rows
