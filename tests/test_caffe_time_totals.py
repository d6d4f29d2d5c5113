"""``caffe time``'s totals time the pass the solver runs (the net's forward and one backward from
its loss), not the sum of layers timed one by one; the per-layer table stays."""
from __future__ import annotations

import re

import numpy as np
import pytest

import caffe
from caffe.tools import caffe_cli

NET = """name: "t"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 3 dim: 8 dim: 8 } shape { dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_totals_are_the_solver_pass_timed_once_per_iteration(tmp_path, monkeypatch, capfd):
    (tmp_path / "net.prototxt").write_text(NET)
    monkeypatch.chdir(tmp_path)
    passes = []
    original = caffe_cli.time_solver_pass

    def counted(net, device):
        forward_s, backward_s = original(net, device)
        passes.append((forward_s, backward_s))
        return forward_s, backward_s

    monkeypatch.setattr(caffe_cli, "time_solver_pass", counted)
    assert caffe_cli.main(["time", "--model=net.prototxt", "--iterations=3"]) == 0
    err = capfd.readouterr().err
    assert len(passes) == 3
    forward = float(re.search(r"Average Forward pass: ([\d.e+-]+) ms", err).group(1))
    backward = float(re.search(r"Average Backward pass: ([\d.e+-]+) ms", err).group(1))
    both = float(re.search(r"Average Forward-Backward: ([\d.e+-]+) ms", err).group(1))
    assert forward == pytest.approx(sum(f for f, _ in passes) / 3 * 1e3, rel=1e-3)
    assert backward == pytest.approx(sum(b for _, b in passes) / 3 * 1e3, rel=1e-3)
    assert both == pytest.approx(forward + backward, rel=1e-3)
    assert re.search(r"\s+conv\tbackward: [\d.e+-]+ ms\.", err)


def test_the_solver_pass_runs_the_forward_and_the_loss_backward(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    net = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TRAIN)
    net.blobs["data"].data[...] = np.random.default_rng(0).normal(size=(4, 3, 8, 8))
    net.blobs["label"].data[...] = [0, 1, 2, 0]
    forward_s, backward_s = caffe_cli.time_solver_pass(net, net.device)
    assert forward_s > 0 and backward_s > 0
    assert net.params["ip"][0].diff.any()


def test_no_layer_backward_pays_the_first_autograd_call_of_the_process(tmp_path):
    """In a fresh process the first autograd call given explicit gradients imports PyTorch's
    symbolic-shape helpers (sympy, 0.4 s or more); ``caffe time`` makes that call before the
    benchmark, so the loss layer (the first backward timed) shows its own microseconds."""
    import subprocess
    import sys
    (tmp_path / "net.prototxt").write_text(NET)
    r = subprocess.run([sys.executable, "-m", "caffe.tools.caffe_cli", "time",
                        "--model=net.prototxt", "--iterations=1"], cwd=tmp_path,
                       capture_output=True, text=True, check=True)
    loss = float(re.search(r"loss\tbackward: ([\d.e+-]+) ms", r.stderr).group(1))
    assert loss < 100.0, r.stderr
