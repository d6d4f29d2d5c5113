"""Several models -> one: weighted averages, a weight search on a validation set, and a fit of the
weights that explain a given ensemble."""
from __future__ import annotations

import itertools
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy.optimize import nnls

from sse.fusion.errors import FusionError, FusionWarning

DISTRIBUTION_ATOL = 1e-3


def check_models(models: Sequence[np.ndarray], names: Sequence[str] | None = None,
                 scores: Collection[int] = (), strict: bool = False,
                 atol: float = DISTRIBUTION_ATOL) -> list[np.ndarray]:
    """Validate model outputs and return them as float64 arrays.

    Errors: no model, a model that is not 2-D, different row or column counts, NaN or infinity.
    Rows that are not probability distributions (a negative entry or a sum off 1 by more than
    ``atol``) give a FusionWarning, or a FusionError with ``strict``; models whose indices (0-based)
    are in ``scores`` hold scores, not probabilities, and are exempt."""
    if len(models) == 0:
        raise FusionError("no models to fuse")
    names = list(names) if names is not None else [f"model {i + 1}" for i in range(len(models))]
    arrays = [np.asarray(m, dtype=np.float64) for m in models]
    for name, a in zip(names, arrays):
        if a.ndim != 2:
            raise FusionError(f"{name}: expected a 2-D array (videos, classes), got shape {a.shape}")
    first = arrays[0]
    for name, a in zip(names[1:], arrays[1:]):
        if a.shape[0] != first.shape[0]:
            raise FusionError(f"{name} has {a.shape[0]} rows but {names[0]} has {first.shape[0]}: "
                              f"every model must score the same videos")
        if a.shape[1] != first.shape[1]:
            raise FusionError(f"{name} has {a.shape[1]} columns but {names[0]} has {first.shape[1]}")
    for name, a in zip(names, arrays):
        bad = ~np.isfinite(a).all(axis=1)
        if bad.any():
            raise FusionError(f"{name}: NaN or infinite value in row {int(np.argmax(bad)) + 1}")
    for i, (name, a) in enumerate(zip(names, arrays)):
        if i not in scores:
            _check_distribution(name, a, strict, atol)
    return arrays


def _check_distribution(name: str, a: np.ndarray, strict: bool, atol: float) -> None:
    bad = (a < 0).any(axis=1) | (np.abs(a.sum(axis=1) - 1.0) > atol)
    if not bad.any():
        return
    row = int(np.argmax(bad))
    message = (f"{name}: {int(bad.sum())} of {len(a)} rows are not probability distributions "
               f"(first: row {row + 1}, sum {a[row].sum():.6g}, min {a[row].min():.6g}); "
               f"mark the model as scores if that is expected")
    if strict:
        raise FusionError(message)
    warnings.warn(message, FusionWarning, stacklevel=3)


def normalise_weights(weights: Sequence[float], count: int) -> np.ndarray:
    """Weights as an array summing to 1; their number must be ``count``, each finite and
    non-negative (a negative weight would give negative probabilities), their sum positive."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.size != count:
        raise FusionError(f"{w.size} weights given for {count} models")
    if not np.all(np.isfinite(w)):
        raise FusionError(f"weights must be finite numbers, got {w.tolist()}")
    if (w < 0).any():
        raise FusionError(f"weights must not be negative, got {w.tolist()}")
    total = w.sum()
    if not total > 0:
        raise FusionError(f"weights must sum to a positive number, got sum {total:g} for {w.tolist()}")
    return w / total


def fuse_models(models: Sequence[np.ndarray], weights: Sequence[float] | None = None, *,
                names: Sequence[str] | None = None, scores: Collection[int] = (),
                strict: bool = False) -> np.ndarray:
    """Weighted average ``sum_i w_i * models[i] / sum_i w_i`` (equal weights by default).

    ``models`` are arrays (videos, classes) over the same videos; see check_models for the checks."""
    arrays = check_models(models, names, scores, strict)
    w = normalise_weights(np.ones(len(arrays)) if weights is None else weights, len(arrays))
    return np.tensordot(w, np.stack(arrays), axes=1)


@dataclass
class WeightFit:
    """Non-negative weights that best explain an ensemble from its models (least squares)."""
    weights: np.ndarray
    residual_norm: float
    rms: float
    max_abs: float

    @property
    def normalised(self) -> np.ndarray:
        return self.weights / self.weights.sum() if self.weights.sum() > 0 else self.weights

    def report(self, names: Sequence[str] | None = None) -> str:
        names = list(names) if names is not None else [f"model {i + 1}" for i in range(len(self.weights))]
        width = max(len(n) for n in names)
        lines = [f"{'model':<{width}}  {'weight':>10}  {'normalised':>10}  nearest fraction"]
        for n, w, v in zip(names, self.weights, self.normalised):
            lines.append(f"{n:<{width}}  {w:10.6f}  {v:10.6f}  {Fraction(float(v)).limit_denominator(100)}")
        lines.append(f"sum of weights {self.weights.sum():.6f}")
        lines.append(f"residual: L2 norm {self.residual_norm:.3g}, RMS {self.rms:.3g}, "
                     f"max |error| {self.max_abs:.3g}")
        return "\n".join(lines)


def fit_weights(models: Sequence[np.ndarray], ensemble: np.ndarray, *,
                names: Sequence[str] | None = None) -> WeightFit:
    """Solve min ||sum_i w_i models[i] - ensemble|| over w >= 0 (scipy.optimize.nnls), all entries
    of all rows stacked. The weights are not rescaled: their sum tells whether the ensemble is an
    average (sum 1) or something else."""
    arrays = check_models(list(models) + [ensemble],
                          (list(names) if names is not None else [f"model {i + 1}" for i in range(len(models))])
                          + ["ensemble"], scores=range(len(models) + 1))
    design = np.stack([a.ravel() for a in arrays[:-1]], axis=1)
    target = arrays[-1].ravel()
    w, norm = nnls(design, target)
    residual = design @ w - target
    return WeightFit(w, float(norm), float(np.sqrt(np.mean(residual ** 2))), float(np.abs(residual).max()))


@dataclass
class WeightSearch:
    """Every candidate weight vector with its validation accuracy, the chosen one, and an honest
    estimate of the chosen one's accuracy on unseen videos (leave-one-out over the whole search)."""
    candidates: np.ndarray
    accuracies: np.ndarray
    chosen: int
    loo_accuracy: float
    model_accuracies: np.ndarray
    method: str
    names: list[str] = field(default_factory=list)

    @property
    def weights(self) -> np.ndarray:
        return self.candidates[self.chosen]

    @property
    def accuracy(self) -> float:
        return float(self.accuracies[self.chosen])

    def report(self, top: int = 10) -> str:
        names = self.names or [f"model {i + 1}" for i in range(self.candidates.shape[1])]
        best = self.accuracies.max()
        lines = [f"searched {len(self.candidates)} weight vectors ({self.method}); "
                 f"{int((self.accuracies == best).sum())} reach the best validation accuracy {best:.4f}",
                 "single models: " + ", ".join(f"{n} {a:.4f}" for n, a in zip(names, self.model_accuracies)),
                 f"top {min(top, len(self.candidates))} candidates (validation accuracy: weights "
                 f"{' '.join(names)}):"]
        order = np.lexsort((np.arange(len(self.accuracies)), -self.accuracies))
        for i in order[:top]:
            mark = "  <- chosen" if i == self.chosen else ""
            lines.append(f"  {self.accuracies[i]:.4f}: " + " ".join(f"{w:.3f}" for w in self.candidates[i]) + mark)
        lines.append("chosen weights: " + " ".join(f"{w:.4f}" for w in self.weights)
                     + f", validation accuracy {self.accuracy:.4f}")
        lines.append(f"leave-one-out accuracy of the whole search (estimate for unseen videos): "
                     f"{self.loo_accuracy:.4f} (optimism {self.accuracy - self.loo_accuracy:+.4f})")
        return "\n".join(lines)


def simplex_grid(count: int, step: float) -> np.ndarray:
    """All weight vectors of ``count`` non-negative multiples of ``step`` summing to 1."""
    parts = round(1.0 / step)
    if parts < 1 or abs(parts * step - 1.0) > 1e-9:
        raise FusionError(f"grid step must divide 1 (e.g. 0.1, 0.05, 0.25), got {step}")
    rows = []
    for bars in itertools.combinations(range(parts + count - 1), count - 1):
        edges = (-1,) + bars + (parts + count - 1,)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(count)])
    return np.array(rows, dtype=np.float64) / parts


def dirichlet_candidates(count: int, samples: int, seed: int = 0) -> np.ndarray:
    """``samples`` uniform draws on the simplex, plus the equal weights and each single model."""
    rng = np.random.default_rng(seed)
    fixed = np.vstack([np.full(count, 1.0 / count), np.eye(count)])
    return np.vstack([fixed, rng.dirichlet(np.ones(count), size=samples)])


def search_weights(models: Sequence[np.ndarray], labels: np.ndarray, *, step: float | None = 0.1,
                   samples: int | None = None, seed: int = 0, names: Sequence[str] | None = None,
                   scores: Collection[int] = (), strict: bool = False,
                   chunk: int = 256) -> WeightSearch:
    """Search weights over the simplex for the best validation accuracy.

    Candidates: a grid of step ``step`` (default), or ``samples`` Dirichlet draws when given.
    Ties in accuracy go to the candidate closest to equal weights. ``loo_accuracy`` reruns the
    whole search once per video with that video left out and scores the pick on it: the gap to the
    validation accuracy shows how much the search overfits."""
    arrays = check_models(models, names, scores, strict)
    labels = np.asarray(labels, dtype=np.int64).ravel()
    stack = np.stack(arrays)
    if labels.shape[0] != stack.shape[1]:
        raise FusionError(f"{labels.shape[0]} labels for {stack.shape[1]} videos")
    if labels.min() < 0 or labels.max() >= stack.shape[2]:
        raise FusionError(f"labels must lie in 0..{stack.shape[2] - 1}")
    if samples is not None:
        candidates, method = dirichlet_candidates(len(arrays), samples, seed), f"{samples} Dirichlet samples, seed {seed}"
    elif step is not None:
        candidates, method = simplex_grid(len(arrays), step), f"grid step {step:g}"
    else:
        raise FusionError("give a grid step or a number of samples")
    correct = np.empty((len(candidates), len(labels)), dtype=bool)
    for start in range(0, len(candidates), chunk):
        fused = np.tensordot(candidates[start:start + chunk], stack, axes=1)
        correct[start:start + chunk] = fused.argmax(axis=2) == labels
    counts = correct.sum(axis=1).astype(np.int64)
    preference = _preference(candidates)
    chosen = int(np.argmax(counts * len(candidates) + preference))
    loo = _leave_one_out(correct, counts, preference)
    model_accuracies = (stack.argmax(axis=2) == labels).mean(axis=1)
    return WeightSearch(candidates, counts / len(labels), chosen, loo, model_accuracies, method,
                        list(names) if names is not None else [])


def _preference(candidates: np.ndarray) -> np.ndarray:
    """Tie-break score, larger is better: rank by closeness to equal weights, then by index."""
    distance = np.linalg.norm(candidates - 1.0 / candidates.shape[1], axis=1)
    order = np.lexsort((np.arange(len(candidates)), distance))
    rank = np.empty(len(candidates), dtype=np.int64)
    rank[order] = np.arange(len(candidates))
    return len(candidates) - 1 - rank


def _leave_one_out(correct: np.ndarray, counts: np.ndarray, preference: np.ndarray,
                   chunk: int = 512) -> float:
    hits = 0
    k = len(counts)
    for start in range(0, correct.shape[1], chunk):
        held = correct[:, start:start + chunk]
        keys = (counts[:, None] - held) * k + preference[:, None]
        picks = np.argmax(keys, axis=0)
        hits += int(held[picks, np.arange(held.shape[1])].sum())
    return hits / correct.shape[1]
