"""Helpers to compare engine output with Caffe's golden arrays. A test file that reads golden cases
names them in a module-level ``GOLDEN_CASES`` tuple; test_golden_cases_read fails for any case in
tests/golden that no file names."""
from __future__ import annotations

import numpy as np


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """Max absolute error relative to the expected array's scale."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    scale = max(float(np.abs(expected).max()) if expected.size else 0.0, 1e-6)
    return float(np.abs(actual - expected).max() / scale) if expected.size else 0.0


def param_key(key: str) -> tuple[str, int]:
    """'layer:index' as used by the golden *_params.npz files."""
    layer, index = key.rsplit(":", 1)
    return layer, int(index)
