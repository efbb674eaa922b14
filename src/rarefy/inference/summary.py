"""Posterior summaries (median, 68% and 95% credible intervals) and the corner plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["credible_summary", "corner_plot"]


def credible_summary(samples: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per parameter: median, and the central 68% and 95% credible intervals (quantiles)."""
    out: dict[str, dict[str, Any]] = {}
    for name, x in samples.items():
        x = np.asarray(x, dtype=float).ravel()
        q = np.quantile(x, [0.025, 0.16, 0.5, 0.84, 0.975])
        out[name] = {"median": float(q[2]), "ci68": [float(q[1]), float(q[3])], "ci95": [float(q[0]), float(q[4])],
                     "mean": float(x.mean()), "std": float(x.std())}
    return out


def corner_plot(samples: np.ndarray, names: list[str], path: str | os.PathLike[str],
                truths: list[float] | None = None, ranges: list[tuple[float, float]] | None = None) -> Path:
    """Corner plot of (n, dim) ``samples`` written atomically to ``path`` (PNG)."""
    import corner
    from matplotlib.figure import Figure

    from ..report.figures import save_figure

    k = samples.shape[1]
    fig = corner.corner(samples, fig=Figure(figsize=(2.2 * k, 2.2 * k)), labels=names, quantiles=[0.16, 0.5, 0.84], show_titles=True, truths=truths,
                        range=ranges, title_fmt=".3g")
    return save_figure(fig, path, dpi=90, tight=False)
