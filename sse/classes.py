"""The seven emotion classes in the toolkit's order, and mappings from other datasets' orders.

The order is AFEW's alphabetical one, which the EmotiW 2017 submission files follow:
column j of every probability matrix in this toolkit is ``CLASS_NAMES[j]``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
NUM_CLASSES = len(CLASS_NAMES)

# Label orders of other datasets, by label id.
DATASET_ORDERS: dict[str, tuple[str, ...]] = {
    "sse": CLASS_NAMES,
    "afew": CLASS_NAMES,
    "fer2013": ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"),
}

_ALIASES = {
    "anger": "Angry", "angry": "Angry",
    "disgust": "Disgust", "disgusted": "Disgust",
    "fear": "Fear", "fearful": "Fear", "afraid": "Fear",
    "happy": "Happy", "happiness": "Happy", "joy": "Happy",
    "neutral": "Neutral",
    "sad": "Sad", "sadness": "Sad",
    "surprise": "Surprise", "surprised": "Surprise",
}


def class_index(name: str) -> int:
    """Index in CLASS_NAMES of a class name, case-insensitive, common spellings accepted
    ('Anger', 'happiness', 'surprised', ...). Raises ValueError naming the unknown name."""
    canonical = _ALIASES.get(name.strip().lower())
    if canonical is None:
        raise ValueError(f"unknown emotion class {name!r}; expected one of {', '.join(CLASS_NAMES)}")
    return CLASS_NAMES.index(canonical)


def label_mapping(source_order: str | Sequence[str]) -> np.ndarray:
    """Array ``m`` with ``m[source_label] = toolkit_label``.

    ``source_order`` is a dataset name from DATASET_ORDERS (e.g. 'fer2013') or the class names of
    that dataset listed by label id."""
    names = _order(source_order)
    return np.array([class_index(n) for n in names], dtype=np.int64)


def reorder_columns(probs: np.ndarray, source_order: str | Sequence[str]) -> np.ndarray:
    """Columns of ``probs`` (one per class in ``source_order``) permuted into the toolkit's order."""
    mapping = label_mapping(source_order)
    probs = np.asarray(probs)
    if probs.shape[-1] != len(mapping):
        raise ValueError(f"expected {len(mapping)} columns in {source_order!r} order, got {probs.shape[-1]}")
    out = np.empty_like(probs)
    out[..., mapping] = probs
    return out


def _order(source_order: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(source_order, str):
        try:
            return DATASET_ORDERS[source_order.lower()]
        except KeyError:
            raise ValueError(f"unknown dataset order {source_order!r}; known: "
                             f"{', '.join(DATASET_ORDERS)}") from None
    names = tuple(source_order)
    indices = [class_index(n) for n in names]
    if sorted(indices) != list(range(NUM_CLASSES)):
        raise ValueError(f"class order {names} is not a permutation of {CLASS_NAMES}")
    return names
