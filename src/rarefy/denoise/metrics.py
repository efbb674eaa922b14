"""Validation metrics of per-event probabilities: PR-AUC and expected calibration error."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

__all__ = ["pr_auc", "expected_calibration_error"]


def pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the precision–recall curve (average precision); NaN without both classes."""
    y = np.asarray(y) >= 0.5
    if y.all() or not y.any():
        return float("nan")
    return float(average_precision_score(y, np.asarray(p, dtype=np.float64)))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """ECE: Σ_b (n_b / n) |mean(y)_b - mean(p)_b| over ``bins`` equal-width bins of p in [0, 1]."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if not len(y):
        return float("nan")
    b = np.minimum((p * bins).astype(np.int64), bins - 1)
    sy = np.bincount(b, weights=y, minlength=bins)
    sp = np.bincount(b, weights=p, minlength=bins)
    return float(np.abs(sy - sp).sum() / len(y))
