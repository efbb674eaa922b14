"""Metrics of ``rarefy bench``: PR-AUC, ROC-AUC, precision at a recall, expected calibration error.

PR-AUC, ROC-AUC and the precision–recall curve come from scikit-learn
(``average_precision_score``, ``roc_auc_score``, ``precision_recall_curve``).

**Precision at recall r** is the best precision over the thresholds whose recall is at
least r (the usual interpolated operating point: one can always lower the threshold to
reach recall r, and takes the threshold that does so with the highest precision).

**Expected calibration error** (:func:`rarefy.denoise.metrics.expected_calibration_error`):
``ECE = Σ_b (n_b / n) · |mean(y)_b − mean(p)_b|`` over bins of the predicted
probability p. ``binning="mass"`` (the bench default) sorts the events by p (stable
sort) and cuts them into ``bins`` parts of equal count (sizes differ by at most one;
ties may straddle a cut): at 1e-4 imbalance almost every p is tiny, and equal-width
bins would put nearly all events in the first bin. ``binning="width"`` uses the bins
[0, 1/B), …, [(B−1)/B, 1] of p.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score

from ..denoise.metrics import expected_calibration_error, pr_auc

__all__ = ["pr_auc", "roc_auc", "precision_at_recall", "expected_calibration_error", "RECALLS", "bench_metrics"]

#: the recall operating points quoted by the reference work
RECALLS = (0.40, 0.48)


def _both(y: np.ndarray) -> bool:
    y = np.asarray(y) >= 0.5
    return bool(y.any() and not y.all())


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve; NaN without both classes."""
    if not _both(y):
        return float("nan")
    return float(roc_auc_score(np.asarray(y) >= 0.5, np.asarray(s, np.float64)))


def precision_at_recall(y: np.ndarray, s: np.ndarray, recall: float) -> float:
    """Highest precision among thresholds with recall ≥ ``recall``; NaN without both classes."""
    if not _both(y):
        return float("nan")
    prec, rec, _ = precision_recall_curve(np.asarray(y) >= 0.5, np.asarray(s, np.float64))
    ok = rec >= recall - 1e-12
    return float(prec[ok].max())


def bench_metrics(y: np.ndarray, score: np.ndarray, prob: np.ndarray | None, *, bins: int = 15,
                  binning: Literal["mass", "width"] = "mass") -> dict[str, float]:
    """The bench's ranking and calibration metrics of one backend on the test events.

    ``score`` ranks (any monotone score); ``prob`` are the probabilities for the ECE
    (None: ECE is NaN).
    """
    out = {"pr_auc": pr_auc(y, score), "roc_auc": roc_auc(y, score)}
    for r in RECALLS:
        out[f"precision_at_recall_{r:.2f}"] = precision_at_recall(y, score, r)
    out["ece"] = float("nan") if prob is None else expected_calibration_error(y, prob, bins, binning)
    return out
