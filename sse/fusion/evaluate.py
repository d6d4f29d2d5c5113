"""Evaluation of video predictions: accuracy, per-class recall and precision, macro-F1, the confusion
matrix as a table and a PNG, and per-video timelines of frame probabilities."""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sse.classes import CLASS_NAMES
from sse.fusion.errors import FusionError
from sse.fusion.formats import atomic_write


@dataclass
class Evaluation:
    """Scores of predictions against labels; ``confusion[t, p]`` counts videos of true class t
    predicted as p."""
    confusion: np.ndarray
    class_names: tuple[str, ...]

    @property
    def total(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.total)

    @property
    def support(self) -> np.ndarray:
        return self.confusion.sum(axis=1)

    @property
    def recall(self) -> np.ndarray:
        """Per class; NaN for a class with no video."""
        return _ratio(np.diag(self.confusion), self.support)

    @property
    def precision(self) -> np.ndarray:
        """Per class; NaN for a class never predicted."""
        return _ratio(np.diag(self.confusion), self.confusion.sum(axis=0))

    @property
    def f1(self) -> np.ndarray:
        """Per class; 0 where precision and recall are both 0 or undefined."""
        p, r = np.nan_to_num(self.precision), np.nan_to_num(self.recall)
        return _ratio(2 * p * r, p + r, empty=0.0)

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes that occur in the labels or the predictions."""
        present = (self.support > 0) | (self.confusion.sum(axis=0) > 0)
        return float(self.f1[present].mean())

    @property
    def mean_recall(self) -> float:
        """Unweighted mean of the per-class recall over classes with videos."""
        return float(np.nanmean(self.recall))

    def table(self) -> str:
        """Plain-text report: summary line, per-class scores, confusion matrix."""
        names = self.class_names
        width = max(8, max(len(n) for n in names))
        lines = [f"videos {self.total}  accuracy {self.accuracy:.4f}  macro-F1 {self.macro_f1:.4f}  "
                 f"mean recall {self.mean_recall:.4f}", "",
                 f"{'class':<{width}} {'support':>7} {'recall':>7} {'precision':>9} {'F1':>7}"]
        for i, n in enumerate(names):
            lines.append(f"{n:<{width}} {int(self.support[i]):>7} {_fmt(self.recall[i]):>7} "
                         f"{_fmt(self.precision[i]):>9} {_fmt(self.f1[i]):>7}")
        lines += ["", "confusion matrix (rows: true class, columns: predicted class)",
                  " " * width + " " + " ".join(f"{n[:7]:>7}" for n in names)]
        for i, n in enumerate(names):
            lines.append(f"{n:<{width}} " + " ".join(f"{int(c):>7}" for c in self.confusion[i]))
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"videos": self.total, "accuracy": self.accuracy, "macro_f1": self.macro_f1,
                "mean_recall": self.mean_recall, "class_names": list(self.class_names),
                "recall": _json_list(self.recall), "precision": _json_list(self.precision),
                "f1": _json_list(self.f1), "support": self.support.astype(int).tolist(),
                "confusion": self.confusion.astype(int).tolist()}


def evaluate(scores_or_predictions: np.ndarray, labels: Sequence[int] | np.ndarray,
             class_names: Sequence[str] = CLASS_NAMES) -> Evaluation:
    """Evaluate a score matrix (videos, classes; argmax is the prediction) or a vector of predicted
    class indices against true class indices."""
    labels = np.asarray(labels).ravel()
    pred = np.asarray(scores_or_predictions)
    num = len(class_names)
    if pred.ndim == 2:
        if pred.shape[1] != num:
            raise FusionError(f"scores have {pred.shape[1]} columns for {num} classes")
        if not np.isfinite(pred).all():
            raise FusionError(f"NaN or infinite score in row {int(np.argmax(~np.isfinite(pred).all(axis=1))) + 1}")
        pred = pred.argmax(axis=1)
    elif pred.ndim != 1:
        raise FusionError(f"expected scores (videos, classes) or predicted labels, got shape {pred.shape}")
    if len(pred) != len(labels):
        raise FusionError(f"{len(pred)} predictions for {len(labels)} labels")
    if len(labels) == 0:
        raise FusionError("nothing to evaluate")
    for what, v in (("label", labels), ("prediction", pred)):
        if not np.issubdtype(v.dtype, np.integer) or v.min() < 0 or v.max() >= num:
            raise FusionError(f"every {what} must be a class index in 0..{num - 1}")
    confusion = np.zeros((num, num), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    return Evaluation(confusion, tuple(class_names))


def save_confusion_png(evaluation: Evaluation, path: str | os.PathLike, title: str = "",
                       normalise: bool = True) -> None:
    """Confusion matrix as a heat map: colour = share of the true class (row-normalised) when
    ``normalise``, each cell labelled with its count and share."""
    plt = _pyplot()
    cm = evaluation.confusion
    shares = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    names = evaluation.class_names
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=120)
    image = ax.imshow(shares if normalise else cm, cmap="Blues", vmin=0, vmax=1 if normalise else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label="share of the true class" if normalise else "videos")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    dark = (shares if normalise else cm / max(cm.max(), 1)) > 0.5
    for t in range(len(names)):
        for p in range(len(names)):
            ax.text(p, t, f"{cm[t, p]}\n{shares[t, p]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if dark[t, p] else "black")
    ax.set_title(title or f"accuracy {evaluation.accuracy:.2%}, macro-F1 {evaluation.macro_f1:.3f} "
                          f"({evaluation.total} videos)")
    fig.tight_layout()
    _save(fig, path)


def save_timeline_png(frame_probs: np.ndarray, path: str | os.PathLike, title: str = "",
                      class_names: Sequence[str] = CLASS_NAMES,
                      frame_labels: Sequence[str] | None = None,
                      frame_indices: Sequence[int] | None = None, fps: float | None = None) -> None:
    """``timeline_figure`` written as a PNG."""
    _save(timeline_figure(frame_probs, title, class_names, frame_labels, frame_indices, fps), path)


TIMELINE_POINTS = 2000  # at most this many points per line (the axes are about 800 pixels wide)


def timeline_figure(frame_probs: np.ndarray, title: str = "", class_names: Sequence[str] = CLASS_NAMES,
                    frame_labels: Sequence[str] | None = None, frame_indices: Sequence[int] | None = None,
                    fps: float | None = None):
    """One video's class probabilities over its frames, one line per class, the per-frame argmax
    as a colour strip underneath (a matplotlib Figure). With ``frame_indices`` (the rows' frame
    numbers in the source video) the x axis is the source frame, or with ``fps`` too the time in
    seconds, and frames the pipeline did not see leave gaps in the lines. Beyond TIMELINE_POINTS
    frames (a long video) the lines and the strip show the mean of each run of frames."""
    plt = _pyplot()
    probs = np.asarray(frame_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(class_names) or len(probs) == 0:
        raise FusionError(f"timeline needs (frames, {len(class_names)}) probabilities, got shape {probs.shape}")
    colours = plt.get_cmap("tab10").colors
    fig, (ax, strip) = plt.subplots(2, 1, figsize=(9, 4.6), dpi=110, sharex=True,
                                    gridspec_kw={"height_ratios": [6, 0.5]})
    x, lines = _binned(*_timeline_axis(probs, frame_indices, fps), TIMELINE_POINTS)
    for c, name in enumerate(class_names):
        ax.plot(x, lines[:, c], color=colours[c], lw=1.6, marker="o" if len(x) < 40 else None,
                ms=3, label=name)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("probability")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    mean = probs.mean(axis=0)
    ax.set_title(title + (" - " if title else "") + f"{len(probs)} frames, mean: "
                 f"{class_names[int(mean.argmax())]} {mean.max():.2f}")
    valid = np.isfinite(lines[:, 0])
    rgb = np.ones((len(lines), 3))
    rgb[valid] = np.array(colours)[lines[valid].argmax(axis=1)]
    step = (x[1] - x[0]) if len(x) > 1 else 1.0
    strip.imshow(rgb[None], aspect="auto", extent=(x[0] - step / 2, x[-1] + step / 2, 0, 1),
                 interpolation="nearest")
    strip.set_yticks([])
    strip.set_ylabel("argmax", rotation=0, ha="right", va="center")
    strip.set_xlabel("time (s)" if frame_indices is not None and fps else
                     "source frame" if frame_indices is not None else "frame")
    if frame_labels is not None and len(frame_labels) <= 20 and frame_indices is None:
        strip.set_xticks(x, list(frame_labels), rotation=45, ha="right", fontsize=7)
    fig.tight_layout()
    return fig


def _binned(x: np.ndarray, lines: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` rows: runs of consecutive rows (the same number each, the last shorter)
    drawn as their mean over the rows that have values, at the run's mean x; NaN where a run has
    none (a gap). A long video's timeline is then drawn from as many points as the figure has
    pixels, not one per source frame (matplotlib's memory grows with the points)."""
    if len(x) <= points:
        return x, lines
    step = -(-len(x) // points)
    starts = np.arange(0, len(x), step)
    valid = np.isfinite(lines).all(axis=1)
    sums = np.add.reduceat(np.where(valid[:, None], lines, 0.0), starts, axis=0)
    counts = np.add.reduceat(valid.astype(np.int64), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    return np.add.reduceat(x, starts) / np.diff(np.append(starts, len(x))), means


def _timeline_axis(probs: np.ndarray, frame_indices: Sequence[int] | None,
                   fps: float | None) -> tuple[np.ndarray, np.ndarray]:
    """x values and the rows to draw: one per frame, or with ``frame_indices`` one per source frame
    from the first to the last, NaN where no row was given (a gap in the line)."""
    if frame_indices is None:
        return np.arange(len(probs), dtype=np.float64), probs
    index = np.asarray(frame_indices, dtype=np.int64)
    if index.shape != (len(probs),):
        raise FusionError(f"timeline: {len(index)} frame indices for {len(probs)} rows")
    first = int(index.min())
    lines = np.full((int(index.max()) - first + 1, probs.shape[1]), np.nan)
    lines[index - first] = probs
    x = np.arange(first, first + len(lines), dtype=np.float64)
    return (x / fps if fps else x), lines


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    _pyplot().close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = np.nan) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(num.shape, empty)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _fmt(x: float) -> str:
    return "-" if np.isnan(x) else f"{x:.4f}"


def _json_list(a: np.ndarray) -> list:
    return [None if np.isnan(v) else float(v) for v in a]
