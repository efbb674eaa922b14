"""Validation metrics of per-event probabilities: PR-AUC and expected calibration error."""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.metrics import average_precision_score

__all__ = ["pr_auc", "expected_calibration_error"]


def pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the precision–recall curve (average precision); NaN without both classes."""
    y = np.asarray(y) >= 0.5
    if y.all() or not y.any():
        return float("nan")
    return float(average_precision_score(y, np.asarray(p, dtype=np.float64)))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 15,
                               binning: Literal["mass", "width"] = "width") -> float:
    """ECE: Σ_b (n_b / n) |mean(y)_b − mean(p)_b| over ``bins`` bins of p; NaN when empty.

    ``binning="width"`` uses the bins [0, 1/B), …, [(B−1)/B, 1] of p (p clipped to [0, 1]);
    ``binning="mass"`` sorts the events by p (stable sort) and cuts them into ``bins``
    parts of equal count (sizes differ by at most one; ties may straddle a cut), which
    is what rare outcomes need: at 1e-4 imbalance almost every p falls in the first
    equal-width bin.
    """
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    n = len(y)
    if n == 0:
        return float("nan")
    if binning == "width":
        b = np.minimum((np.clip(p, 0.0, 1.0) * bins).astype(np.int64), bins - 1)
    elif binning == "mass":
        order = np.argsort(p, kind="stable")
        b = np.empty(n, np.int64)
        b[order] = (np.arange(n) * min(bins, n)) // n
    else:
        raise ValueError(f"binning must be 'mass' or 'width', got {binning!r}")
    sy = np.bincount(b, weights=y, minlength=bins)
    sp = np.bincount(b, weights=p, minlength=bins)
    return float(np.abs(sy - sp).sum() / n)
