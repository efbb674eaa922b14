"""Figures of merit of an unfolded distribution against a known truth.

* **Per-bin coverage**: the fraction of bins whose truth probability p_b lies within
  ``k`` member standard deviations of the unfolded mean, |p̂_b − p_b| ≤ k·s_b. Calibrated
  Gaussian errors give 0.683 at k = 1. Pool it over pseudo-experiments to test calibration.
* **χ²/ndf** against a truth histogram with its own statistical error:
  Σ_b (p̂_b − p_b)² / (s_b² + t_b²) / B, with t_b the truth histogram's error (0 for an
  exact distribution) and B the number of bins compared (bins where both errors vanish are
  skipped).
* **Wasserstein-1 distance** of the unfolded (weighted, pooled over members) column to
  truth samples, :func:`scipy.stats.wasserstein_distance`, in the column's unit.
* **Moments**: the relative errors of the unfolded mean and width.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance

from .base import Unfolded

__all__ = ["coverage", "chi2_per_ndf", "wasserstein", "pooled", "moment_errors"]


def coverage(mean: np.ndarray, sd: np.ndarray, truth: np.ndarray, k: float = 1.0) -> float:
    """Fraction of bins with |mean − truth| ≤ k·sd (bins with sd = 0 count as covered only if exact)."""
    mean, sd, truth = map(np.asarray, (mean, sd, truth))
    return float(np.mean(np.abs(mean - truth) <= k * sd))


def chi2_per_ndf(mean: np.ndarray, sd: np.ndarray, truth: np.ndarray, truth_sd: np.ndarray | float = 0.0
                 ) -> float:
    """Σ (mean − truth)² / (sd² + truth_sd²) over bins with a non-zero error, divided by their number."""
    mean, sd, truth = map(np.asarray, (mean, sd, truth))
    var = sd ** 2 + np.broadcast_to(np.asarray(truth_sd, dtype=float), sd.shape) ** 2
    ok = var > 0
    if not ok.any():
        return float("nan")
    return float(np.sum((mean[ok] - truth[ok]) ** 2 / var[ok]) / ok.sum())


def pooled(result: Unfolded, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Column ``name`` of all members pooled, each member's weights normalised to sum to 1."""
    c = result.column(name)
    xs = np.concatenate([x[:, c] for x, _ in result.members])
    ws = np.concatenate([w / w.sum() for _, w in result.members])
    return xs, ws


def wasserstein(result: Unfolded, name: str, truth: np.ndarray, truth_weight: np.ndarray | None = None) -> float:
    """Wasserstein-1 distance between the pooled unfolded column and truth samples (column unit)."""
    xs, ws = pooled(result, name)
    return float(wasserstein_distance(xs, np.asarray(truth, dtype=float), ws, truth_weight))


def moment_errors(result: Unfolded, name: str, mean: float, width: float) -> dict[str, float]:
    """Relative errors (unfolded − truth) / |truth| of the mean and width of column ``name``."""
    m = result.moments(name)
    return {"mean": m["mean"], "width": m["width"], "mean_sd": m["mean_sd"], "width_sd": m["width_sd"],
            "mean_rel_error": (m["mean"] - mean) / abs(mean), "width_rel_error": (m["width"] - width) / abs(width)}
