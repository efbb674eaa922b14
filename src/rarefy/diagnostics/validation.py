"""Validation of surrogate predictions: coverage, MSE, NLL, cross-validation, bootstrap.

Coverage at kσ is the fraction of points with ``|y − μ| < kσ``, where σ² is the
predictive variance of the target fidelity (latent variance plus the fidelity's learned
nugget) plus the data point's own noise variance (zero if the data carry none).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..data.rates import RateTable

log = logging.getLogger(__name__)

__all__ = ["design_groups", "metrics", "bootstrap_metrics", "cross_validate", "CVResult", "predict_table", "surface_accuracy"]

METRIC_KEYS = ("n", "coverage_1sigma", "coverage_2sigma", "coverage_3sigma", "mse", "mean_nll")


def metrics(y: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """Coverage at 1/2/3σ, mean squared error and mean Gaussian negative log-likelihood.

    ``y``, ``mean`` and ``sigma`` are in the rate's units; ``sigma`` is the total
    predictive standard deviation (model plus the point's own noise).
    """
    y, mean, sigma = (np.asarray(a, dtype=float) for a in (y, mean, sigma))
    sigma = np.maximum(sigma, 1e-300)
    z = np.abs(y - mean) / sigma
    nll = 0.5 * np.log(2 * np.pi * sigma**2) + 0.5 * z**2
    return {
        "n": int(len(y)),
        "coverage_1sigma": float(np.mean(z < 1)),
        "coverage_2sigma": float(np.mean(z < 2)),
        "coverage_3sigma": float(np.mean(z < 3)),
        "mse": float(np.mean((y - mean) ** 2)),
        "mean_nll": float(np.mean(nll)),
    }


def bootstrap_metrics(y: np.ndarray, mean: np.ndarray, sigma: np.ndarray, n_boot: int = 2000,
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """Bootstrap (resampling points) standard errors and 68% intervals of every metric."""
    rng = np.random.default_rng(seed)
    y, mean, sigma = (np.asarray(a, dtype=float) for a in (y, mean, sigma))
    n = len(y)
    draws = {k: [] for k in METRIC_KEYS if k != "n"}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        m = metrics(y[idx], mean[idx], sigma[idx])
        for k in draws:
            draws[k].append(m[k])
    out = {}
    for k, v in draws.items():
        v = np.asarray(v)
        out[k] = {"se": float(v.std(ddof=1)), "q16": float(np.quantile(v, 0.16)), "q84": float(np.quantile(v, 0.84))}
    return out


def predict_table(surrogate, table: RateTable, fidelity: str) -> pd.DataFrame:
    """Predictions of ``fidelity`` at the table's designs with total σ (model + own noise)."""
    frame = table.frame
    mean, std = surrogate.predict(frame[table.space.names], fidelity, observed=True, noise_var=frame["var"].to_numpy())
    out = frame[[*table.space.names, "rate", "var"]].copy()
    out["mean"] = mean.detach().numpy()
    out["sigma"] = std.detach().numpy()
    return out


@dataclass
class CVResult:
    """Per-point out-of-fold predictions of the target fidelity, and their metrics."""

    predictions: pd.DataFrame
    metrics: dict[str, float]
    bootstrap: dict[str, dict[str, float]]


def design_groups(table: RateTable, target: str, tolerance: float) -> list[np.ndarray]:
    """For each target row, the mask of rows to hold out with it.

    A target run is held out together with every row of the same run (``run_id``) and
    every row whose design lies within ``tolerance`` (fraction of each parameter's range)
    of it, so cross-validation never sees a paired low-fidelity run at a held-out design.
    """
    frame = table.frame
    u = table.space.to_unit(frame[table.space.names].to_numpy(float))
    runs = frame["run_id"].to_numpy() if "run_id" in frame.columns else np.arange(len(frame)).astype(str)
    target_idx = np.flatnonzero(frame["fidelity"].to_numpy() == target)
    groups = []
    for i in target_idx:
        near = np.all(np.abs(u - u[i]) <= tolerance, axis=1)
        groups.append(near | (runs == runs[i]))
    return groups


def cross_validate(make_surrogate: Callable[[], object], table: RateTable, target: str, k: int | None = None,
                   seed: int = 0, tolerance: float = 0.01, progress: Callable[[int, int], None] | None = None) -> CVResult:
    """K-fold cross-validation over the runs of the ``target`` fidelity.

    Each fold holds out some target runs (with their paired rows, see
    :func:`design_groups`), fits a fresh surrogate from ``make_surrogate()`` on the rest
    of the table (all fidelities), and predicts the held-out target runs. ``k=None`` or
    ``k >= n_target`` is leave-one-out.
    """
    groups = design_groups(table, target, tolerance)
    n_t = len(groups)
    if n_t < 2:
        raise ValueError(f"cross-validation needs at least 2 runs of the target fidelity {target!r}, got {n_t}")
    k = n_t if k is None else min(k, n_t)
    if k < 2:
        raise ValueError("cross-validation needs k >= 2 folds")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_t)
    folds = np.array_split(order, k)
    target_idx = np.flatnonzero(table.frame["fidelity"].to_numpy() == target)
    preds = []
    for f, fold in enumerate(folds):
        hold = np.zeros(len(table), dtype=bool)
        for g in fold:
            hold |= groups[g]
        train = table.subset(mask=~hold)
        if (train.frame["fidelity"] == target).sum() == 0:
            raise ValueError("a cross-validation fold left no target runs to train on; use more folds")
        sur = make_surrogate().fit(train)
        test = table.subset(mask=np.isin(np.arange(len(table)), target_idx[fold]))
        p = predict_table(sur, test, target)
        p["fold"] = f
        preds.append(p)
        if progress is not None:
            progress(f + 1, k)
    pred = pd.concat(preds, ignore_index=True)
    m = metrics(pred["rate"], pred["mean"], pred["sigma"])
    boot = bootstrap_metrics(pred["rate"], pred["mean"], pred["sigma"], seed=seed)
    return CVResult(pred, m, boot)


def surface_accuracy(mean: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """How well a surrogate knows a rate surface, from its own prediction over many designs (no truth needed).

    ``mean``, ``sigma``: the predicted rate and its latent 1σ at each design [rate units].
    Returns ``rms_sigma`` (rate units), ``spread`` (rate units: the range of the mean over the
    central 99% of the designs, its 0.5th to 99.5th percentile, so that a few extreme designs
    do not set it; about the max − min over 200 random designs), ``sigma_over_spread`` =
    rms_sigma / spread (inf for a flat mean) and ``rel_sigma`` = the mean of σ/|mean|
    (dimensionless; inf where a mean is 0). With a calibrated σ, ``sigma_over_spread``
    estimates the surface's RMS error as a fraction of its range.
    """
    mean, sigma = np.asarray(mean, dtype=float), np.asarray(sigma, dtype=float)
    rms = float(np.sqrt(np.mean(sigma**2)))
    lo, hi = np.percentile(mean, [0.5, 99.5])
    spread = float(hi - lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = float(np.mean(np.where(mean != 0, sigma / np.abs(mean), np.inf)))
    return {"rms_sigma": rms, "spread": spread, "sigma_over_spread": rms / spread if spread > 0 else math.inf,
            "rel_sigma": rel}
