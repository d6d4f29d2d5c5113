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


def test_only_engines_killed_for_memory_are_timed_again_alone():
    failed = {"sse:infer32": "the sse worker stopped (exit code -9) (SIGKILL: killed, most "
                             "likely for memory)",
              "sse:fast32": "the sse worker stopped (exit code 1)",
              "bvlc:infer32": "the bvlc worker stopped (exit code 1)"}
    calls = [("sse", "infer32"), ("bvlc", "infer32"), ("sse", "fast32")]
    assert vs_bvlc.killed_for_memory(failed, calls) == ["sse"]
    assert vs_bvlc.killed_for_memory({}, calls) == []


def test_report_names_the_calls_timed_alone_and_a_redo_forgets_them():
    run = json.loads(json.dumps(RUN))
    entry = run["models"]["holonet"]
    entry["alone"] = ["sse:infer1", "sse:fast1"]
    text = vs_bvlc.render(run)
    assert "Timed on their own" in text and "SSE-HoloNet, sse:infer1; SSE-HoloNet, sse:fast1" in text
    vs_bvlc.forget_works(run["models"], ["holonet:infer1"])
    assert entry["alone"] == [] and "Timed on their own" not in vs_bvlc.render(run)


class _FakeWorker:
    """A worker of vs_bvlc's protocol that holds nets per model; ``needs_alone``: its first
    forward is killed for memory while another engine holds a model (the worker then comes
    back empty, as a restarted one)."""

    def __init__(self, name: str, engines: dict, needs_alone: bool = False) -> None:
        self.name, self.engines, self.needs_alone = name, engines, needs_alone
        self.models: set[str] = set()

    def ask(self, cmd: str, model: str, **kw) -> dict:
        if cmd == "setup":
            self.models.add(model)
            return {"outputs": {"plain32": {"prob": [1.0, 2.0]}, "fast32": {"prob": [1.0, 2.0]}}}
        if model not in self.models:
            raise RuntimeError(f"the {self.name} worker stopped (exit code 1)")
        others = [w for w in self.engines.values() if w is not self and w.models]
        if cmd == "time" and self.needs_alone and others:
            self.models.clear()
            raise RuntimeError(f"the {self.name} worker stopped (exit code -9) (SIGKILL: "
                               "killed, most likely for memory)")
        if cmd == "free":
            self.models.discard(model)
            return {}
        return {"times": [0.5 if self.name == "bvlc" else 0.1], "cpu": [0.1]}


def test_an_engine_killed_for_memory_is_timed_alone_after_the_others_freed_their_nets():
    workers: dict = {}
    workers["sse"] = _FakeWorker("sse", workers, needs_alone=True)
    workers["bvlc"] = _FakeWorker("bvlc", workers)
    entry = {"title": "SSE-ResNet-50", "times": {}, "diff": {}, "failed": {}}
    vs_bvlc.measure_work(None, workers, lambda e: None, "resnet", {}, (3, 8, 8), "infer32", 3,
                         entry)
    times = entry["times"]["infer32"]
    assert {k: v["n"] for k, v in times.items()} == {"bvlc:infer32": 3, "sse:infer32": 3,
                                                     "sse:fast32": 3}
    assert entry["failed"] == {} and entry["alone"] == ["sse:infer32", "sse:fast32"]
    assert entry["diff"]["plain32 vs bvlc"] == 0.0
