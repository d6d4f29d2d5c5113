"""bench/vs_bvlc_layers.py reads both engines' ``caffe time`` logs, takes per-layer medians over its
rounds and renders its tables from them only (and again from its JSON, ``--from-json``)."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import vs_bvlc_layers  # noqa: E402

BVLC_LOG = """I20261205 07:01:29.704 19256 caffe.cpp:403]       conv1\tforward: 6.6264 ms.
I20261205 07:01:29.704 19256 caffe.cpp:406]       conv1\tbackward: 3.5 ms.
I20261205 07:01:29.704 19256 caffe.cpp:403] conv1_1/scale\tforward: 1e-03 ms.
I20261205 07:01:29.704 19256 caffe.cpp:408] Average Forward pass: 1098.9 ms.
I20261205 07:01:29.704 19256 caffe.cpp:410] Average Backward pass: 1151.59 ms.
"""
SSE_LOG = """I1205 07:02:42.885155 19373 caffe.cpp:403]      conv1\tforward: 2.80468 ms.
I1205 07:02:42.885159 19373 caffe.cpp:411] Average Forward pass: 1300.94 ms.
"""


def test_both_engines_logs_are_read():
    b = vs_bvlc_layers.parse_time_log(BVLC_LOG)
    assert b["layers"] == {"conv1": {"forward": 6.6264, "backward": 3.5},
                           "conv1_1/scale": {"forward": 0.001}}
    assert b["totals"] == {"forward": 1098.9, "backward": 1151.59}
    s = vs_bvlc_layers.parse_time_log(SSE_LOG)
    assert s["layers"] == {"conv1": {"forward": 2.80468}} and s["totals"] == {"forward": 1300.94}


def test_rounds_give_per_layer_medians():
    logs = [{"layers": {"a": {"forward": v, "backward": 2 * v}}, "totals": {"forward": 10 * v}}
            for v in (3.0, 1.0, 2.0)]
    assert vs_bvlc_layers.median_log(logs) == {"layers": {"a": {"forward": 2.0, "backward": 4.0}},
                                               "totals": {"forward": 20.0}}


RUN = {
    "date": "2026-12-05 07:00 UTC", "command": "python bench/vs_bvlc_layers.py",
    "machine": {"cpu": "Some CPU", "cores": "2"}, "load_start": "1.00 / 1.00 / 1.00",
    "load_end": "2.00 / 2.00 / 2.00", "threads": 1,
    "works": {
        "resnet:infer1": {
            "types": {"big": "Convolution", "bn": "BatchNorm"}, "rounds": 3, "iterations": 5,
            "engines": {"bvlc": {"layers": {"big": {"forward": 200.0}, "bn": {"forward": 4.0},
                                            "big_split": {"forward": 1.0}},
                                 "totals": {"forward": 205.0}},
                        "sse": {"layers": {"big": {"forward": 100.0}, "bn": {"forward": 8.0},
                                           "big_split": {"forward": 0.0}},
                                "totals": {"forward": 108.0}},
                        "fast": {"layers": {"big": {"forward": 50.0}}, "totals": {"forward": 50.0}}}},
        "holonet:train": {
            "types": {"conv": "Convolution"}, "rounds": 3, "iterations": 1,
            "engines": {"bvlc": {"layers": {"conv": {"forward": 30.0, "backward": 60.0}},
                                 "totals": {"forward": 30.0, "backward": 60.0}},
                        "sse": {"layers": {"conv": {"forward": 10.0, "backward": 20.0}},
                                "totals": {"forward": 10.0, "backward": 20.0}}}}},
}


def test_tables_hold_the_ratios_of_the_medians():
    text = vs_bvlc_layers.render(RUN)
    assert "| big | Convolution | 200.0 | 100.0 | 2.00x | 50.0 | 4.00x |" in text
    assert "| bn | BatchNorm | 4.0 | 8.0 | 0.50x | - | - |" in text
    assert "| conv | Convolution | 30.0 | 60.0 | 10.0 | 20.0 | 3.00x |" in text
    assert "| Split | 1 | 1.0 | 0.0 | - | 0.0 | - |" in text
    assert "| Convolution | 1 | 90.0 | 30.0 | 3.00x |" in text
    assert "Some CPU" in text and "2.00 / 2.00 / 2.00" in text


def test_report_from_json_without_measuring(tmp_path):
    src = tmp_path / "run.json"
    src.write_text(json.dumps(RUN))
    out = tmp_path / "layers.md"
    subprocess.run([sys.executable, str(REPO / "bench" / "vs_bvlc_layers.py"), "--from-json",
                    str(src), "--out", str(out)], check=True, capture_output=True)
    assert out.read_text() == vs_bvlc_layers.render(RUN)
