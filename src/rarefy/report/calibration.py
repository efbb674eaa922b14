"""Calibration plot: observed rates against predicted rates, with error bars."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .figures import save_figure, subplots

__all__ = ["calibration_plot"]


def calibration_plot(pred: pd.DataFrame, path: str | os.PathLike[str], title: str = "", unit: str = "") -> Path:
    """Save observed (``rate``) against predicted (``mean`` ± ``sigma``), both in ``unit``, as a PNG, atomically.

    Left: the scatter with 1σ error bars (σ = model plus the point's own noise) and the
    diagonal. Right: the share of points inside ±kσ against the Gaussian expectation.
    """
    path = Path(path)
    y, mu, sd = (pred[c].to_numpy(float) for c in ("rate", "mean", "sigma"))
    fig, (ax, ax2) = subplots(1, 2, figsize=(10, 4.4), gridspec_kw={"width_ratios": [1.3, 1]})
    lo, hi = np.min([y, mu]), np.max([y, mu])
    pad = 0.05 * (hi - lo + 1e-300)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", lw=1, ls="--", label="y = x")
    z = np.abs(y - mu) / np.maximum(sd, 1e-300)
    colors = np.where(z < 1, "tab:green", np.where(z < 2, "tab:orange", "tab:red"))
    for c, lab in (("tab:green", "< 1σ"), ("tab:orange", "1–2σ"), ("tab:red", "> 2σ")):
        m = colors == c
        if m.any():
            ax.errorbar(mu[m], y[m], xerr=sd[m], fmt="o", ms=4, color=c, ecolor=c, alpha=0.8, capsize=2, label=lab)
    suffix = f" [{unit}]" if unit else ""
    ax.set_xlabel("predicted" + suffix)
    ax.set_ylabel("observed" + suffix)
    ax.set_title(title or "observed vs predicted")
    ax.legend(loc="upper left", fontsize=8)
    mse = float(np.mean((y - mu) ** 2))
    ax.text(0.98, 0.03, f"n = {len(y)}\nMSE = {mse:.3g}\n"
            f"within 1σ/2σ/3σ: {np.mean(z < 1):.0%} / {np.mean(z < 2):.0%} / {np.mean(z < 3):.0%}",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
            bbox={"boxstyle": "round", "fc": "white", "ec": "0.8"})
    ks = np.linspace(0, 3.5, 71)
    from scipy.stats import norm

    ax2.plot(ks, 2 * norm.cdf(ks) - 1, color="0.4", ls="--", label="ideal (Gaussian)")
    ax2.plot(ks, [(z < k).mean() for k in ks], color="tab:blue", label=f"observed (n={len(y)})")
    ax2.set_xlabel("k (interval ±kσ)")
    ax2.set_ylabel("coverage")
    ax2.set_ylim(0, 1.02)
    ax2.legend(loc="lower right", fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    return path
