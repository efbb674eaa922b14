"""Plots of a fitted surrogate around the optimum, and of a closed loop's spending, for the loop report.

* :func:`slices_plot` — the target prediction along each parameter through θ* (the other
  parameters at θ*), mean with ±1σ and ±2σ bands (latent σ, rate units), the simulated
  target-fidelity runs projected onto each axis (k/n with 1σ count error bars), infeasible
  stretches of each slice shaded grey;
* :func:`influence` — how much the predicted target mean moves along each slice
  (max − min over the feasible part), to pick the two most influential parameters;
* :func:`map_plot` — a 2-D map of the predicted target mean over two parameters (others at
  θ*), infeasible cells blank, the runs and θ* on top;
* :func:`cost_plot` — nominal CPU-hours spent per fidelity, cumulative over the iterations;
* :func:`acquisition_plot` — the acquisition value of every proposed run per iteration, by fidelity.

All functions write a PNG atomically and return its path; nothing here fits a model. Parameter
axes carry the parameters' units (from the surrogate's design space), rate axes ``value_unit``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .figures import COLORS, save_figure, subplots
from ..space import DesignSpace

__all__ = ["slices_plot", "influence", "map_plot", "cost_plot", "acquisition_plot"]


def _label(name: str, unit: str) -> str:
    return f"{name} [{unit}]" if unit else name


def _param_label(space: DesignSpace, name: str) -> str:
    return _label(name, space[name].unit)


def _star(space: DesignSpace, theta_star: dict[str, float]) -> np.ndarray:
    return np.array([float(theta_star[n]) for n in space.names])


def _slice(space: DesignSpace, x0: np.ndarray, j: int, n: int) -> np.ndarray:
    p = space.parameters[j]
    grid = np.linspace(p.low, p.high, n)
    if p.integer:
        grid = np.unique(np.round(grid))
    x = np.repeat(x0[None, :], len(grid), axis=0)
    x[:, j] = grid
    return x


def _predict(sur: Any, x: np.ndarray, target: str) -> tuple[np.ndarray, np.ndarray]:
    return sur.predict_numpy(x, target)


def influence(sur: Any, target: str, theta_star: dict[str, float], n: int = 64) -> dict[str, float]:
    """Range (max − min, rate units) of the predicted target mean along each slice through θ*, feasible part only."""
    space: DesignSpace = sur.space
    x0 = _star(space, theta_star)
    out = {}
    for j, name in enumerate(space.names):
        x = _slice(space, x0, j, n)
        m, _ = _predict(sur, x, target)
        ok = space.is_feasible(x)
        out[name] = float(np.ptp(m[ok])) if ok.sum() > 1 else 0.0
    return out


def slices_plot(sur: Any, target: str, theta_star: dict[str, float], runs: pd.DataFrame, path: Path,
                n: int = 120, value_unit: str = "") -> Path:
    """The target prediction (in ``value_unit``) along each parameter through θ* with ±1σ/±2σ bands and the
    simulated runs."""
    space: DesignSpace = sur.space
    x0 = _star(space, theta_star)
    d = space.dim
    cols = min(d, 3)
    rows = int(np.ceil(d / cols))
    fig, axes = subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False, sharey=True)
    tr = runs[runs["fidelity"].astype(str) == target]
    for j, name in enumerate(space.names):
        ax = axes[j // cols, j % cols]
        x = _slice(space, x0, j, n)
        m, s = _predict(sur, x, target)
        g = x[:, j]
        ax.fill_between(g, m - 2 * s, m + 2 * s, color="tab:blue", alpha=0.15, lw=0, label="±2σ")
        ax.fill_between(g, m - s, m + s, color="tab:blue", alpha=0.3, lw=0, label="±1σ")
        ax.plot(g, m, color="tab:blue", lw=1.5, label="predicted mean")
        bad = ~space.is_feasible(x)
        if bad.any():  # shade infeasible stretches of the slice
            step = (g[1] - g[0]) / 2 if len(g) > 1 else 0.5
            for gi in g[bad]:
                ax.axvspan(gi - step, gi + step, color="0.85", lw=0, zorder=0)
        if len(tr):
            k = tr["k"].to_numpy(float) if "k" in tr else None
            nn = tr["n"].to_numpy(float) if "n" in tr else None
            err = np.sqrt(np.maximum(k, 1.0)) / nn if k is not None and nn is not None else None
            ax.errorbar(tr[name].to_numpy(float), tr["rate"].to_numpy(float), yerr=err, fmt="o", ms=3, color="k",
                        alpha=0.35, elinewidth=0.6, label=f"{target} runs (projected)")
        ax.axvline(x0[j], color="tab:red", ls="--", lw=1, label="θ*")
        ax.set_xlabel(_param_label(space, name))
        if j % cols == 0:
            ax.set_ylabel(_label(f"{target} rate", value_unit))
    for j in range(d, rows * cols):
        axes[j // cols, j % cols].axis("off")
    h, lab = axes[0, 0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower right" if d < rows * cols else "upper right", fontsize=8)
    fig.suptitle(f"surrogate ({target}) along each parameter through θ*; grey: infeasible")
    fig.tight_layout()
    return save_figure(fig, path)


def map_plot(sur: Any, target: str, theta_star: dict[str, float], pair: Sequence[str], runs: pd.DataFrame,
             path: Path, n: int = 70, value_unit: str = "") -> Path:
    """Predicted target mean and σ (in ``value_unit``) over two parameters (the others at θ*); infeasible cells
    blank."""
    space: DesignSpace = sur.space
    x0 = _star(space, theta_star)
    a, b = (space.names.index(p) for p in pair)
    pa, pb = space.parameters[a], space.parameters[b]
    ga, gb = np.linspace(pa.low, pa.high, n), np.linspace(pb.low, pb.high, n)
    A, B = np.meshgrid(ga, gb)
    x = np.repeat(x0[None, :], A.size, axis=0)
    x[:, a], x[:, b] = A.ravel(), B.ravel()
    for j, p in enumerate(space.parameters):
        if p.integer:
            x[:, j] = np.round(x[:, j])
    m, s = _predict(sur, x, target)
    ok = space.is_feasible(x)
    M = np.where(ok, m, np.nan).reshape(A.shape)
    S = np.where(ok, s, np.nan).reshape(A.shape)
    fig, (ax, ax2) = subplots(1, 2, figsize=(11, 4.4))
    im = ax.pcolormesh(A, B, M, shading="auto", cmap="viridis")
    fig.colorbar(im, ax=ax, label=_label(f"predicted {target} rate", value_unit))
    im2 = ax2.pcolormesh(A, B, S, shading="auto", cmap="magma")
    fig.colorbar(im2, ax=ax2, label=_label(f"σ of the predicted {target} rate", value_unit))
    for axis, title in ((ax, "mean"), (ax2, "σ")):
        for i, (fid, grp) in enumerate(runs.groupby(runs["fidelity"].astype(str), sort=True)):
            axis.scatter(grp[pair[0]], grp[pair[1]], s=8, color=COLORS[i % len(COLORS)], edgecolor="w",
                         linewidth=0.3, label=fid)
        axis.plot(x0[a], x0[b], "*", color="tab:red", ms=14, mec="w", label="θ*")
        axis.set_xlabel(_param_label(space, pair[0]))
        axis.set_ylabel(_param_label(space, pair[1]))
        axis.set_title(f"{title} (other parameters at θ*; blank: infeasible)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


def cost_plot(records: list[dict[str, Any]], runs: pd.DataFrame, path: Path) -> Path:
    """Cumulative nominal CPU-hours per fidelity: initial design, after each iteration, and in total."""
    frame = runs.copy()
    rid = frame["run_id"].astype(str) if "run_id" in frame else pd.Series([""] * len(frame))
    it = np.zeros(len(frame), dtype=int)
    loop = rid.str.extract(r"^loop-(\d+)-")[0]
    it = np.where(loop.notna(), pd.to_numeric(loop, errors="coerce").fillna(0).astype(int), it)
    last = max([r.get("iteration", 0) for r in records] + [int(it.max()) if len(it) else 0])
    it = np.where(rid.str.match(r"^(verify|baseline)-"), last + 1, it)
    frame["_it"] = it
    cost = frame["cost_cpu_h"].astype(float).fillna(0.0) if "cost_cpu_h" in frame else pd.Series(0.0, frame.index)
    frame["_c"] = cost.to_numpy()
    table = frame.pivot_table(index="_it", columns="fidelity", values="_c", aggfunc="sum", fill_value=0.0)
    table = table.reindex(range(0, last + 2), fill_value=0.0).cumsum()
    fig, ax = subplots(figsize=(7, 3.8))
    bottom = np.zeros(len(table))
    labels = ["initial"] + [str(i) for i in range(1, last + 1)] + ["verify"]
    for i, fid in enumerate(table.columns):
        ax.bar(labels, table[fid].to_numpy(), bottom=bottom, color=COLORS[i % len(COLORS)], label=str(fid))
        bottom = bottom + table[fid].to_numpy()
    ax.set_xlabel("after iteration")
    ax.set_ylabel("nominal cost, cumulative [CPU-h]")
    ax.set_title("cost spent per fidelity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def acquisition_plot(records: list[dict[str, Any]], path: Path) -> Path:
    """Acquisition value of each proposed run per iteration (log scale where positive), by fidelity."""
    fig, ax = subplots(figsize=(7, 3.8))
    rows = [(r["iteration"], p.get("valued_as") or p["fidelity"], float(p.get("value", np.nan)), j)
            for r in records for j, p in enumerate(r.get("proposals", []))]
    frame = pd.DataFrame(rows, columns=["iteration", "fidelity", "value", "j"])
    for i, (fid, grp) in enumerate(frame.groupby("fidelity", sort=True)):
        ax.scatter(grp["iteration"] + 0.05 * grp["j"], grp["value"], s=18, color=COLORS[i % len(COLORS)], label=fid)
    if len(frame) and (frame["value"] > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("iteration (batch order left to right)")
    ax.set_ylabel("acquisition value [a.u.]")
    ax.set_title("acquisition history (value per CPU-h when cost-aware)")
    if len(frame):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
