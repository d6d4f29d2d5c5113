"""bench/vs_bvlc.py renders its report from its measurements only (and again from the JSON a run
leaves, ``--from-json``), with the ratios computed from the medians."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import vs_bvlc  # noqa: E402


def timing(ms: float) -> dict:
    return {"median": ms / 1000, "min": ms / 1000, "max": ms / 1000, "n": 3, "cpu_median": ms / 2000}


RUN = {
    "date": "2026-12-05 05:00 UTC", "command": "python bench/vs_bvlc.py --bvlc X",
    "machine": {"cpu": "Some CPU", "cores": "2"}, "load_start": "0.10 / 0.20 / 0.30",
    "load_end": "0.40 / 0.50 / 0.60", "note": None, "threads": 1,
    "engines": {"sse": {"engine": "this engine", "caffe": "/repo/caffe/__init__.py"},
                "bvlc": {"engine": "BVLC Caffe", "caffe": "/bvlc/python/caffe/__init__.py",
                         "blas": "OpenBLAS 0.3.21"}},
    "models": {"holonet": {"title": "SSE-HoloNet", "diff": {"plain1 vs bvlc": 1e-6},
                           "times": {"train": {"bvlc:train": timing(1800), "sse:train": timing(300)},
                                     "infer1": {"bvlc:infer1": timing(20), "sse:infer1": timing(10),
                                                "sse:fast1": timing(5)}}}},
}


def test_report_has_the_ratios_of_the_medians():
    text = vs_bvlc.render(RUN)
    assert "| SSE-HoloNet | training step, batch 32 (`solver.step(1)`) | 1800.0 | 300.0 | - | 6.00x | - |" in text
    assert "| SSE-HoloNet | inference, batch 1 | 20.0 | 10.0 | 5.0 | 2.00x | 4.00x |" in text
    assert "Some CPU" in text and "OpenBLAS 0.3.21" in text and "0.40 / 0.50 / 0.60" in text
    assert "plain1 vs bvlc 1.00e-06" in text


def test_report_without_a_build_says_so(tmp_path):
    run = dict(RUN, note="no BVLC Caffe build given (--bvlc): this engine timed alone",
               engines={"sse": RUN["engines"]["sse"]})
    text = vs_bvlc.render(run)
    assert "this engine timed alone" in text and "Without a BVLC build" in text


def test_report_from_json_without_measuring(tmp_path):
    src = tmp_path / "run.json"
    src.write_text(json.dumps(RUN))
    out = tmp_path / "vs.md"
    subprocess.run([sys.executable, str(REPO / "bench" / "vs_bvlc.py"), "--from-json", str(src),
                    "--out", str(out)], check=True, capture_output=True)
    assert out.read_text() == vs_bvlc.render(RUN)


def test_redo_forgets_only_the_works_measured_again():
    models = json.loads(json.dumps({
        "holonet": {"title": "SSE-HoloNet", "failed": {"bvlc:fast1": "x", "sse:train": "y"},
                    "diff": {"fast1 vs plain1": 0.0, "plain1 vs bvlc": 0.0, "fast32 vs bvlc": 0.0},
                    "times": {"train": {}, "infer1": {}, "infer32": {}}}}))
    vs_bvlc.forget_works(models, ["holonet:infer1"])
    entry = models["holonet"]
    assert set(entry["times"]) == {"train", "infer32"}
    assert entry["diff"] == {"fast32 vs bvlc": 0.0}
    assert entry["failed"] == {"sse:train": "y"}


def test_report_of_a_redo_names_what_was_measured_again():
    run = dict(RUN, redone=["SSE-HoloNet, inference, batch 1"],
               resumed=[{"date": "2026-12-04 05:00 UTC", "command": "python bench/vs_bvlc.py --old",
                         "load_start": "1", "load_end": "2"}])
    text = vs_bvlc.render(run)
    assert "Measured again in this run (`--redo`): SSE-HoloNet, inference, batch 1." in text
    assert "Earlier run: measured from 2026-12-04 05:00 UTC with `python bench/vs_bvlc.py --old`" in text
    assert "Resumed from a run cut short" not in text


def test_the_before_column_has_the_training_step_and_the_inference_mode():
    run = json.loads(json.dumps(RUN))
    run["engines"]["before"] = {"engine": "this engine at abc", "caffe": "/before/caffe/__init__.py"}
    times = run["models"]["holonet"]["times"]
    times["train"]["before:train"] = timing(360)
    times["infer1"]["before:fast1"] = timing(4)
    text = vs_bvlc.render(run)
    assert "| 1800.0 | 300.0 | - | 6.00x | - | 360.0 | 5.00x |" in text
    assert "| 20.0 | 10.0 | 5.0 | 2.00x | 4.00x | 4.0 | 5.00x |" in text


def test_a_generic_openblas_kernel_on_a_cpu_with_avx_is_named_with_the_fix(monkeypatch):
    """OpenBLAS falls back to its SSE3 kernel (Prescott) on a CPU model newer than it knows;
    the report must say so, with the OPENBLAS_CORETYPE that matches the CPU's vector units."""
    blas = "OpenBLAS 0.3.21 DYNAMIC_ARCH Prescott MAX_THREADS=64, kernel {}, 2 threads (/lib/x.so)"
    monkeypatch.setattr(vs_bvlc, "cpu_flags", lambda: {"sse3", "avx2", "avx512f"})
    assert "OPENBLAS_CORETYPE=SkylakeX" in vs_bvlc.generic_openblas(blas.format("Prescott"))
    assert vs_bvlc.generic_openblas(blas.format("SkylakeX")) is None
    monkeypatch.setattr(vs_bvlc, "cpu_flags", lambda: {"sse3", "avx2"})
    assert "OPENBLAS_CORETYPE=Haswell" in vs_bvlc.generic_openblas(blas.format("Prescott"))
    monkeypatch.setattr(vs_bvlc, "cpu_flags", lambda: {"sse3"})
    assert vs_bvlc.generic_openblas(blas.format("Prescott")) is None
