"""bench/vs_bvlc_bounds counts the multiply-adds a net's forward and training step must do (the data
gradient only where Caffe's backward needs it) and turns a goal that asks for more than the core's
peak into a goal time below its lower bound."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import caffe  # noqa: E402
from caffe.model_io import parse_net_text  # noqa: E402

import vs_bvlc_bounds  # noqa: E402

NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } shape { dim: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def tiny_net() -> caffe.Net:
    return caffe.Net(net_param=parse_net_text(NET), phase=caffe.TRAIN)


def test_counts_forward_and_training_multiply_adds_of_convolutions_and_inner_products():
    work = vs_bvlc_bounds.count_work(tiny_net())
    conv = (4 * 3 * 3 * 3) * (4 * 4) * 2  # weights x output positions (stride 2: 4x4) x batch
    ip = (5 * 4 * 4 * 4) * 2
    assert work["forward"] == conv + ip
    # weight gradients of both; the data gradient of the inner product only (the input needs none)
    assert work["train"] == (conv + ip) + (conv + ip) + ip
    assert work["weight_bytes"] == 4 * (4 * 3 * 3 * 3 + 4 + 5 * 64 + 5)


def test_a_goal_beyond_the_peak_has_a_goal_time_below_its_bound():
    work = {"forward": 1e9, "train": 3e9, "weight_bytes": 100e6}
    bounds = vs_bvlc_bounds.bounds_for(work, work, peak=100e9, read=10e9)
    assert bounds["infer1"]["bound_s"] == pytest.approx(0.02)  # 2 GFLOP at 100 GFLOP/s
    assert bounds["infer1"]["read_s"] == pytest.approx(0.01)
    assert bounds["infer32"]["bound_s"] == pytest.approx(0.64)
    assert bounds["train"]["bound_s"] == pytest.approx(0.06)
    works = {name: dict(b, caffe_s=caffe_s, ours_s=None, goal=vs_bvlc_bounds.GOALS[name])
             for (name, b), caffe_s in zip(bounds.items(), (0.09, 3.0, 0.6))}
    run = {"date": "d", "command": "c", "cpu": "cpu", "cores": 2, "threads": 1, "torch": "t",
           "clock": "CPU time",
           "peak": 100e9, "peak_by_size": {"1024": 100e9}, "vs_bvlc": {"date": "v"},
           "nets": {"tiny": {"title": "Tiny", "weight_bytes": 100e6, "read_rate": 10e9,
                             "works": works}}}
    rows = {line.split(" | ")[1]: line.split(" | ")
            for line in vs_bvlc_bounds.render(run).splitlines() if line.startswith("| Tiny")}
    # batch 32: 3.0 s / 6 = 0.5 s < 0.64 s of arithmetic at the peak; batch 1: 0.03 s > 0.02 s
    assert rows["inference, batch 32"][9] == "0.78" and rows["inference, batch 32"][7] == "128 %"
    assert rows["inference, batch 1"][9] == "1.50"
    assert rows["training step, batch 32"][9] == "1.67"


def test_batch1_split_asks_the_rest_for_more_than_the_goal_when_both_engines_read_the_weights():
    # 25 ms in Caffe, 5 ms of it reading the weights from memory: at 3x (8.33 ms) the rest has
    # 3.33 ms against Caffe's 20 ms, a 6x speed-up; an engine at 9 ms does its rest 5x faster
    split = vs_bvlc_bounds.batch1_split(0.025, 3.0, 0.009, 100e6, 20e9)
    assert split["read_s"] == pytest.approx(0.005)
    assert split["caffe_rest_s"] == pytest.approx(0.020)
    assert split["goal_rest_s"] == pytest.approx(0.025 / 3 - 0.005)
    assert split["rest_needs"] == pytest.approx(6.0)
    assert split["ours_rest_speedup"] == pytest.approx(5.0)
    work = {"forward": 1e6, "train": 3e6, "weight_bytes": 100e6}
    bounds = vs_bvlc_bounds.bounds_for(work, work, peak=100e9, read=40e9)
    works = {"infer1": dict(bounds["infer1"], caffe_s=0.025, ours_s=0.009, goal=3.0)}
    run = {"date": "d", "command": "c", "cpu": "cpu", "cores": 2, "threads": 2, "torch": "t",
           "clock": "wall time", "peak": 100e9, "peak_by_size": {"1024": 100e9},
           "vs_bvlc": {"date": "v"},
           "nets": {"tiny": {"title": "Tiny", "weight_bytes": 100e6, "read_rate": 40e9,
                             "cold_read_rate": 20e9, "works": works}}}
    row = [line.split(" | ") for line in vs_bvlc_bounds.render(run).splitlines()
           if line.startswith("| Tiny | 100.0")][0]
    assert row[3] == "5.0" and row[8] == "6.00x" and row[10].rstrip(" |") == "5.00x"
