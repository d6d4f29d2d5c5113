"""Command lines ``sse-fuse`` (frames -> videos, models -> ensemble, weight search and fit) and
``sse-evaluate`` (scores, confusion matrix, timelines).

What they hold in memory: every input matrix whole, as float64 (a frame-level matrix: 8 bytes per
value, 56 bytes per frame of 7 probabilities; a .mat is read by SciPy or h5py, a float32 one is
copied to float64 once), the frame list (its text read whole, then per row its frame name, video
name and line number: about 200 bytes a row, twice that while it is parsed, more than the row of
probabilities itself), and the video-level results (videos x 7). Neither reads images or databases:
a database of features goes through ``leveldb2mat`` first. Ten million frames (a hundred hours of
video at every frame) take 3-5 GB this way; split such a set by videos if that is too much."""
from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from sse.classes import CLASS_NAMES, DATASET_ORDERS
from sse.fusion import cliutil
from sse.fusion.errors import FusionError
from sse.fusion.evaluate import evaluate, save_confusion_png, save_timeline_png
from sse.fusion.formats import (atomic_write_text, read_frame_list, read_labels, read_matrix,
                                read_predictions, read_video_list, video_key, write_predictions)
from sse.fusion.frames import METHODS, aggregate_frames
from sse.fusion.models import fit_weights, fuse_models, search_weights

FUSE_EPILOG = f"""\
Inputs: each MODEL is a prediction file (one line per video, {len(CLASS_NAMES)} scores in the order
{' '.join(CLASS_NAMES)}), or with --frame-list a frame-level matrix (.mat from leveldb2mat, .npy)
whose rows --aggregate turns into one row per video of --video-list.

examples:
  # the EmotiW 2017 ensemble from its five model files (model 4 holds scores, not probabilities)
  sse-fuse 1_*.txt 2_*.txt 3_*.txt 4_*.txt 5_*.txt --weights 1,1,1,4,7 --scores 4 -o ensemble.txt
  # which non-negative weights explain an existing ensemble file?
  sse-fuse 1_*.txt 2_*.txt 3_*.txt 4_*.txt 5_*.txt --scores 4 --fit ensemble_model_predictions.txt
  # search weights on a validation set (grid of step 0.05), then write the validation fusion
  sse-fuse val_m1.txt val_m2.txt --video-list val_videos.txt --labels val_labels.txt --search --step 0.05
  # frame probabilities -> video predictions (mean over each video's frames)
  sse-fuse features.mat --frame-list frames.txt --video-list videos.txt -o predictions.txt
  # the face pipeline's frames.csv: one output row per video in the order of frames.csv
  sse-fuse features.mat --frame-list faces/val/frames.csv -o predictions.txt

File formats: video list = one name per line; frame list = '<frame> <video>' per row of the matrix;
labels = '<video> <class name or index>' per line. Videos match by name without folder and extension.
Memory: every input whole (a frame-level matrix as float64: 56 bytes a frame of 7 probabilities; the
frame list about 200 bytes a row, twice that while it is parsed) and the videos' results; no image or
database is read (a database of features goes through leveldb2mat first)."""

EVALUATE_EPILOG = """\
examples:
  sse-evaluate predictions.txt --video-list videos.txt --labels labels.txt --png confusion.png
  sse-evaluate features.mat --frame-list frames.txt --video-list videos.txt --labels labels.txt \\
      --json scores.json --timelines timelines/
Without --video-list the rows of PRED follow the order of the label file.
Memory: as sse-fuse, every input whole (a frame-level matrix as float64: 56 bytes a frame of 7
probabilities; the frame list about 200 bytes a row, twice that while it is parsed) and the videos'
results; --timelines draws one video at a time."""


def _fuse_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sse-fuse", epilog=FUSE_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Fuse frame-level and model-level emotion predictions into "
                                            "video predictions in the EmotiW submission format.")
    p.add_argument("models", nargs="+", metavar="MODEL", help="prediction file, or .mat/.npy with --frame-list")
    p.add_argument("-o", "--output", help="write the fused predictions here (EmotiW format, %%.5g)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--weights", help="comma-separated weights, one per model (default: equal); "
                                        "fractions allowed, e.g. 1/14; they are divided by their sum")
    mode.add_argument("--search", action="store_true", help="search the weights on --labels (simplex grid)")
    mode.add_argument("--fit", metavar="ENSEMBLE",
                      help="report the non-negative weights that best reproduce this ensemble file")
    _add_input_flags(p)
    _add_label_flags(p)
    s = p.add_argument_group("weight search")
    s.add_argument("--step", default="0.1", help="grid step on the simplex, e.g. 0.1, 0.05, 1/14 (default 0.1)")
    s.add_argument("--samples", type=int, help="use this many Dirichlet samples instead of the grid")
    s.add_argument("--seed", type=int, default=0, help="seed of the Dirichlet samples (default 0)")
    s.add_argument("--top", type=int, default=10, help="candidates listed in the report (default 10)")
    s.add_argument("--save-weights", metavar="FILE", help="write the chosen or fitted weights, one per line")
    p.add_argument("--scores", default="", metavar="N[,N]",
                   help="1-based indices of models whose rows are scores, not probabilities "
                        "(no distribution check)")
    p.add_argument("--strict", action="store_true",
                   help="a row that is not a probability distribution is an error, not a warning")
    cliutil.add_common_flags(p)
    return p


def _add_input_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs")
    g.add_argument("--video-list", help="video names in output order (default with --frame-list: the "
                                        "videos in their order of first appearance in it)")
    g.add_argument("--frame-list", help="'<frame> <video>' per row of frame-level matrices")
    g.add_argument("--aggregate", choices=METHODS, default="mean",
                   help="frame -> video: mean (default), median, max, logmean (mean of log-probabilities), "
                        "topk (mean of the --top-k most confident frames)")
    g.add_argument("--top-k", type=int, default=5, help="frames used by --aggregate topk (default 5)")
    g.add_argument("--missing", choices=("error", "uniform"), default="error",
                   help="a video without frames: error (default) or the uniform distribution")
    g.add_argument("--var", help="variable of a .mat file (default: its only variable, or feats)")


def _add_label_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("labels")
    g.add_argument("--labels", help="'<video> <label>' per line; label = class name or index")
    g.add_argument("--label-order", choices=sorted(DATASET_ORDERS), default="sse",
                   help="meaning of integer labels (default sse: " + ",".join(CLASS_NAMES) + ")")


class _Inputs:
    """Model matrices at video level, with their names and the video order (None if unknown)."""

    def __init__(self, args: argparse.Namespace, paths: list[str]):
        self.videos = read_video_list(args.video_list) if args.video_list else None
        frames = read_frame_list(args.frame_list) if args.frame_list else None
        if frames is not None and self.videos is None:
            self.videos = list(dict.fromkeys(frames.videos))
        self.names = [Path(p).name for p in paths]
        self.frame_level: list[np.ndarray | None] = []
        self.models: list[np.ndarray] = []
        for path in paths:
            matrix = read_matrix(path, args.var)
            if frames is not None and Path(path).suffix.lower() in (".mat", ".npy"):
                self.frame_level.append(matrix)
                _, matrix = aggregate_frames(matrix, frames, self.videos, args.aggregate, args.top_k,
                                             args.missing)
            else:
                self.frame_level.append(None)
            if matrix.shape[1] != len(CLASS_NAMES):
                raise FusionError(f"{path}: {matrix.shape[1]} columns, expected {len(CLASS_NAMES)} "
                                  f"class scores per row ({' '.join(CLASS_NAMES)})")
            if self.videos is not None and len(matrix) != len(self.videos):
                raise FusionError(f"{path} has {len(matrix)} rows but {args.video_list} lists "
                                  f"{len(self.videos)} videos")
            self.models.append(matrix)
        self.frames = frames


def _parse_numbers(text: str, what: str) -> list[float]:
    try:
        return [float(Fraction(x.strip())) for x in text.split(",") if x.strip()]
    except (ValueError, ZeroDivisionError):
        raise FusionError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def _score_indices(text: str, count: int) -> set[int]:
    indices = set()
    for part in filter(None, (x.strip() for x in text.split(","))):
        if not part.isdigit() or not 1 <= int(part) <= count:
            raise FusionError(f"--scores: {part!r} is not a model number between 1 and {count}")
        indices.add(int(part) - 1)
    return indices


def _labels(args: argparse.Namespace, inputs: _Inputs) -> np.ndarray:
    if not args.labels:
        raise FusionError("--labels is required here")
    names, labels = read_labels(args.labels, inputs.videos, args.label_order)
    rows = len(inputs.models[0])
    if len(labels) != rows:
        raise FusionError(f"{args.labels} has {len(labels)} labels for {rows} videos")
    return labels


def _check_fuse_options(args: argparse.Namespace) -> float:
    """Refuse option values that cannot work (before any file is read); returns the grid step."""
    if args.samples is not None and args.samples < 1:
        raise FusionError(f"--samples must be at least 1, got {args.samples}")
    if args.top < 0:
        raise FusionError(f"--top must not be negative, got {args.top}")
    step = _parse_numbers(args.step, "--step")
    if len(step) != 1 or not 0 < step[0] <= 1:
        raise FusionError(f"--step must be one number in (0, 1] that divides 1 (e.g. 0.1, 0.05, 1/14), "
                          f"got {args.step!r}")
    return step[0]


def _fuse(args: argparse.Namespace) -> None:
    step = _check_fuse_options(args)
    inputs = _Inputs(args, args.models)
    scores = _score_indices(args.scores, len(inputs.models))
    if args.fit:
        ensemble = read_predictions(args.fit)
        fit = fit_weights(inputs.models, ensemble, names=inputs.names)
        print(fit.report(inputs.names))
        _save_weights(args.save_weights, fit.weights)
        return
    if args.search:
        search = search_weights(inputs.models, _labels(args, inputs),
                                step=step if args.samples is None else None,
                                samples=args.samples, seed=args.seed, names=inputs.names,
                                scores=scores, strict=args.strict)
        print(search.report(args.top))
        weights = search.weights
        _save_weights(args.save_weights, weights)
    else:
        weights = _parse_numbers(args.weights, "--weights") if args.weights else None
    fused = fuse_models(inputs.models, weights, names=inputs.names, scores=scores, strict=args.strict)
    if args.output:
        write_predictions(args.output, fused)
        print(f"{args.output}: {len(fused)} videos", file=sys.stderr)
    elif not args.search:
        raise FusionError("nothing to do: give -o OUTPUT, --search or --fit")


def _save_weights(path: str | None, weights: np.ndarray) -> None:
    if path:
        atomic_write_text(path, "".join(f"{w:.10g}\n" for w in weights))


def _evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sse-evaluate", epilog=EVALUATE_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Accuracy, per-class recall/precision/F1, macro-F1 and the "
                                            "confusion matrix of video predictions; timelines of frame "
                                            "probabilities.")
    p.add_argument("predictions", metavar="PRED",
                   help="prediction file, or a frame-level .mat/.npy with --frame-list")
    _add_input_flags(p)
    _add_label_flags(p)
    o = p.add_argument_group("outputs")
    o.add_argument("--png", help="confusion matrix picture")
    o.add_argument("--json", help="all numbers as JSON")
    o.add_argument("--timelines", metavar="DIR",
                   help="one PNG per video with its frame probabilities (needs --frame-list)")
    o.add_argument("--videos", help="comma-separated videos for --timelines (default: all)")
    cliutil.add_common_flags(p)
    return p


def _evaluate(args: argparse.Namespace) -> None:
    inputs = _Inputs(args, [args.predictions])
    if args.labels:
        result = evaluate(inputs.models[0], _labels(args, inputs))
        print(result.table())
        if args.png:
            save_confusion_png(result, args.png)
        if args.json:
            atomic_write_text(args.json, json.dumps(result.as_dict(), indent=1) + "\n")
    elif args.png or args.json:
        raise FusionError("--png and --json need --labels")
    if args.timelines:
        _timelines(args, inputs)
    elif not args.labels:
        raise FusionError("nothing to do: give --labels and/or --timelines")


def _timelines(args: argparse.Namespace, inputs: _Inputs) -> None:
    if inputs.frames is None or inputs.frame_level[0] is None:
        raise FusionError("--timelines needs a frame-level matrix and --frame-list")
    wanted = [v.strip() for v in args.videos.split(",")] if args.videos else list(inputs.videos)
    known = {video_key(v) for v in inputs.videos}
    for v in wanted:
        if video_key(v) not in known:
            raise FusionError(f"--videos: {v!r} is not in {args.video_list}")
    folder = Path(args.timelines)
    folder.mkdir(parents=True, exist_ok=True)
    frame_keys = np.array([video_key(v) for v in inputs.frames.videos])
    for video in wanted:
        rows = np.nonzero(frame_keys == video_key(video))[0]
        if len(rows) == 0:
            print(f"warning: {video}: no frames, no timeline", file=sys.stderr)
            continue
        indices = None if inputs.frames.indices is None else [inputs.frames.indices[r] for r in rows]
        save_timeline_png(inputs.frame_level[0][rows], folder / f"{video_key(video)}.png", title=video,
                          frame_indices=indices)
    print(f"{folder}: {len(wanted)} timelines", file=sys.stderr)


def fuse_main(argv: list[str] | None = None) -> int:
    """Entry point of ``sse-fuse``."""
    return cliutil.run(_fuse_parser(), _fuse, argv)


def evaluate_main(argv: list[str] | None = None) -> int:
    """Entry point of ``sse-evaluate``."""
    return cliutil.run(_evaluate_parser(), _evaluate, argv)
