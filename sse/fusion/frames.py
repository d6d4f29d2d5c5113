"""Frame -> video aggregation: one probability row per video from the rows of its frames."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from sse.fusion.errors import FusionError, FusionWarning
from sse.fusion.formats import FrameList, video_key

METHODS = ("mean", "median", "max", "logmean", "topk")
_LOG_FLOOR = 1e-30


def aggregate_frames(frame_probs: np.ndarray, frame_videos: Sequence[str] | FrameList,
                     videos: Sequence[str] | None = None, method: str = "mean", top_k: int = 5,
                     missing: str = "error") -> tuple[list[str], np.ndarray]:
    """Video-level probabilities from frame-level ones.

    ``frame_videos[i]`` names the video of row i of ``frame_probs`` (a FrameList or a sequence of
    names). ``videos`` fixes the output order (matched on ``video_key``, so '0001' matches '0001.avi');
    without it videos come in order of first appearance. A frame of a video not in ``videos`` is an
    error. A video with no frame is an error, or with ``missing='uniform'`` gets the uniform
    distribution and a warning.

    Methods: ``mean`` (default); ``median``, ``max`` per class; ``logmean`` (mean of log-probabilities,
    i.e. the normalised geometric mean); ``topk`` (mean of the ``top_k`` frames whose highest
    probability is largest). The per-class median, max and logmean are renormalised to sum to 1.
    """
    probs = np.asarray(frame_probs, dtype=np.float64)
    names = list(frame_videos.videos if isinstance(frame_videos, FrameList) else frame_videos)
    if probs.ndim != 2:
        raise FusionError(f"frame probabilities must be 2-D (frames, classes), got shape {probs.shape}")
    if len(names) != len(probs):
        raise FusionError(f"frame list has {len(names)} frames but the matrix has {len(probs)} rows")
    if method not in METHODS:
        raise FusionError(f"unknown aggregation method {method!r}; choose from {', '.join(METHODS)}")
    if missing not in ("error", "uniform"):
        raise FusionError(f"missing must be 'error' or 'uniform', got {missing!r}")
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        raise FusionError(f"NaN or infinite value in frame row {int(np.argmax(bad)) + 1} "
                          f"(video {names[int(np.argmax(bad))]!r})")

    order, index_of = _video_order(names, videos, frame_videos)
    groups = np.array([index_of[video_key(n)] for n in names], dtype=np.int64)
    counts = np.bincount(groups, minlength=len(order))
    out = np.empty((len(order), probs.shape[1]))
    empty = np.nonzero(counts == 0)[0]
    if len(empty) and missing == "error":
        raise FusionError(f"video {order[empty[0]]!r} has no frames ({len(empty)} videos without frames)")
    if len(empty):
        warnings.warn(f"{len(empty)} videos without frames get the uniform distribution "
                      f"(first: {order[empty[0]]!r})", FusionWarning, stacklevel=2)
        out[empty] = 1.0 / probs.shape[1]
    if method == "mean":
        sums = np.zeros_like(out)
        np.add.at(sums, groups, probs)
        filled = counts > 0
        out[filled] = sums[filled] / counts[filled, None]
        return order, out
    sort = np.argsort(groups, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for v in np.nonzero(counts)[0]:
        out[v] = _reduce(probs[sort[bounds[v]:bounds[v + 1]]], method, top_k, order[v])
    return order, out


def _video_order(names: list[str], videos: Sequence[str] | None,
                 frame_videos: Sequence[str] | FrameList) -> tuple[list[str], dict[str, int]]:
    if videos is None:
        order = list(dict.fromkeys(names))
        return order, {video_key(v): i for i, v in enumerate(order)}
    order = list(videos)
    index_of: dict[str, int] = {}
    for i, v in enumerate(order):
        key = video_key(v)
        if key in index_of:
            raise FusionError(f"video list names {v!r} twice (as {order[index_of[key]]!r} and {v!r})")
        index_of[key] = i
    for row, name in enumerate(names):
        if video_key(name) not in index_of:
            raise FusionError(f"{_where(frame_videos, row)}: frame of unknown video {name!r} "
                              f"(not in the video list)")
    return order, index_of


def _where(frame_videos: Sequence[str] | FrameList, row: int) -> str:
    if isinstance(frame_videos, FrameList) and frame_videos.line_numbers:
        return f"{frame_videos.source}:{frame_videos.line_numbers[row]}"
    return f"frame {row + 1}"


def _reduce(rows: np.ndarray, method: str, top_k: int, video: str) -> np.ndarray:
    if method == "median":
        return _normalise(np.median(rows, axis=0), video)
    if method == "max":
        return _normalise(rows.max(axis=0), video)
    if method == "logmean":
        if (rows < 0).any():
            raise FusionError(f"video {video!r}: negative score, logmean needs probabilities")
        logs = np.log(np.maximum(rows, _LOG_FLOOR)).mean(axis=0)
        geo = np.exp(logs - logs.max())
        return geo / geo.sum()
    if top_k < 1:
        raise FusionError(f"top_k must be at least 1, got {top_k}")
    confidence = rows.max(axis=1)
    best = np.argsort(-confidence, kind="stable")[:top_k]
    return rows[best].mean(axis=0)


def _normalise(row: np.ndarray, video: str) -> np.ndarray:
    total = row.sum()
    if total <= 0:
        raise FusionError(f"video {video!r}: aggregated scores sum to {total}, cannot normalise")
    return row / total
