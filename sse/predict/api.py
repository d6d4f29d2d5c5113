"""The whole path from Python, for notebooks: ``predict(paths)`` runs what ``sse-predict`` runs and
returns its tables.

    from sse.predict import predict
    result = predict(["clip.mp4", "photos/"], out="emotions")
    result.frames.head()            # one row per face, frame and model: the columns of predictions.csv
    result.people                   # one row per video and person: frames, seconds, dominant emotion
    result.timeline("clip", person=1)   # a matplotlib Figure of that person's emotions over time

The work and its files are sse-predict's (``out`` is its ``--out``; a rerun resumes), so a notebook
and the command line give the same numbers.
"""
from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from sse.classes import CLASS_NAMES

from .video import PREDICTIONS, SUMMARY


@dataclass
class Predictions:
    """What one run found: the per-frame table, the per-person table and the run's folder."""

    frames: "pandas.DataFrame"  # noqa: F821
    people: "pandas.DataFrame"  # noqa: F821
    out: Path
    failures: list[dict]
    primary: str

    def timeline(self, video: str | None = None, person: int = 1, model: str | None = None):
        """A matplotlib Figure of one person's class probabilities over the video's time (the
        primary model's, or ``model``'s); ``video`` may be omitted when the run had one."""
        from sse.fusion.evaluate import timeline_figure

        videos = sorted(self.frames["video"].unique())
        if video is None:
            if len(videos) != 1:
                raise ValueError(f"the run has {len(videos)} videos: name one of {', '.join(videos)}")
            video = videos[0]
        model = model or self.primary
        rows = self.frames[(self.frames["video"] == video) & (self.frames["person"] == person)
                           & (self.frames["model"] == model)].sort_values("frame")
        if rows.empty:
            raise ValueError(f"no frames of person {person} in video '{video}' by model '{model}' "
                             f"(videos: {', '.join(videos)})")
        summary = json.loads((self.out / video / SUMMARY).read_text(encoding="utf-8"))
        return timeline_figure(rows[list(CLASS_NAMES)].to_numpy(np.float64), title=f"{video} person {person} ({model})",
                               frame_indices=rows["frame"].to_list(), fps=summary.get("fps"))


def predict(paths: str | Path | Sequence[str | Path], out: str | Path = "sse_predictions",
            models: Sequence[str | Path | Sequence[str | Path]] | None = None, tta: str = "none",
            annotate: bool = False, jobs: int = 1, options: Sequence[str] = (), quiet: bool = True) -> Predictions:
    """Every face's emotions in the videos, photos or folders ``paths``, as sse-predict finds them.

    ``models``: model folders, ensemble files or (deploy, caffemodel, mean) triples (default: the
    shipped ones); ``options``: further sse-predict flags (e.g. ``["--stride", "2"]``); ``quiet``
    keeps its report off the notebook. Raises the tools' errors (ModelError, FacesError, ...)."""
    import pandas as pd

    from .cli import build_parser, run

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    argv = [str(p) for p in paths] + ["--out", str(out), "--tta", tta, "--jobs", str(jobs), "--no-progress"]
    for model in models or []:
        argv += ["--model", *([str(model)] if isinstance(model, (str, Path)) else [str(m) for m in model])]
    argv += ["--annotate"] if annotate else []
    args = build_parser().parse_args(argv + list(options))
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        run(args)
    out = Path(out)
    run_summary = json.loads((out / SUMMARY).read_text(encoding="utf-8"))
    frames = pd.read_csv(out / PREDICTIONS, dtype={"video": str, "source": str})
    people = pd.DataFrame([{"video": v["video"], "person": p["person"], "frames": p["frames"], "first": p["first"],
                            "last": p["last"], "seconds": p["seconds"], "dominant": p["dominant"],
                            **{c: p["mean"][c] for c in CLASS_NAMES}}
                           for v in run_summary["videos"] for p in v["people"]],
                          columns=["video", "person", "frames", "first", "last", "seconds", "dominant", *CLASS_NAMES])
    return Predictions(frames, people, out, run_summary["failures"], run_summary["settings"]["primary"])
