"""Static report of a multi-objective run directory (:mod:`rarefy.jobs.pareto`): the Pareto front and its designs.

:func:`pareto_report` (also what ``rarefy report RUN_DIR`` writes for a multi-objective
run) reads ``result.json``, ``objectives.parquet`` and ``loop/iter-*.json`` and writes
into ``RUN_DIR/report/``:

* ``pareto.png`` — objective space (first two objectives): every simulated run with its
  ±1σ error bars, by fidelity and origin (initial design or loop); the estimated Pareto
  front (posterior means ± 1σ, line); the reference point;
* ``front_designs.png`` — each design parameter along the estimated front, against the
  first objective (one panel per parameter, over the parameter's whole range);
* ``hypervolume.png`` — the predicted front's hypervolume before each loop iteration;
* ``index.html`` — the front as a table (θ and objectives ± σ) and the plots.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.rundir import OBJECTIVES, REPORT_DIR, RESULT, read_config, read_loop_records, read_result
from ..errors import InputError
from ..io import read_parquet, write_text
from .figures import COLORS, save_figure, subplots

__all__ = ["pareto_report"]


def _label(obj: dict[str, Any]) -> str:
    unit = f" [{obj['unit']}]" if obj.get("unit") else ""
    return f"log10 {obj['name']}{unit}" if obj.get("log10") else f"{obj['name']}{unit}"


def _pareto_plot(result: dict[str, Any], frame: pd.DataFrame | None, path: Path) -> Path:
    o1, o2 = result["objectives"][:2]
    n1, n2 = o1["name"], o2["name"]
    fig, ax = subplots(figsize=(7.5, 5.2))
    if frame is not None and len(frame):
        origin = np.where(frame["run_id"].astype(str).str.startswith("loop-"), "loop", "initial")
        for f_i, fid in enumerate(dict.fromkeys(frame["fidelity"].astype(str))):
            for org, mk in (("initial", "o"), ("loop", "x")):
                sel = (frame["fidelity"].astype(str) == fid).to_numpy() & (origin == org)
                sel &= np.isfinite(frame[n1].to_numpy(float)) & np.isfinite(frame[n2].to_numpy(float))
                if sel.any():
                    ax.errorbar(frame.loc[sel, n1], frame.loc[sel, n2], xerr=np.sqrt(frame.loc[sel, f"{n1}_var"]),
                                yerr=np.sqrt(frame.loc[sel, f"{n2}_var"]), fmt=mk, ms=4, alpha=0.45, lw=0.6,
                                color=COLORS[f_i % len(COLORS)], label=f"{fid} runs ({org})")
    front = result["pareto_set"]
    if front:
        x = np.array([p["objectives"][n1]["mean"] for p in front])
        y = np.array([p["objectives"][n2]["mean"] for p in front])
        sx = np.array([p["objectives"][n1]["sigma"] for p in front])
        sy = np.array([p["objectives"][n2]["sigma"] for p in front])
        ax.errorbar(x, y, xerr=sx, yerr=sy, fmt="s-", color="tab:red", ms=5, capsize=2, lw=1.5,
                    label=f"estimated Pareto front ({result['fidelity']}, posterior mean ± 1σ)")
    ref = result.get("reference_point") or {}
    if n1 in ref and n2 in ref:
        ax.plot([ref[n1]], [ref[n2]], "k*", ms=12, label="hypervolume reference point")
    ax.set_xlabel(_label(o1) + " (minimised)")
    ax.set_ylabel(_label(o2) + " (minimised)")
    ax.set_title(f"Pareto front: hypervolume {result.get('hypervolume', float('nan')):.4g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def _bounds(run_dir: Path) -> dict[str, tuple[float, float]]:
    """Design-parameter bounds from the run directory's config (empty when it cannot be read)."""
    try:
        return {p.name: (p.low, p.high) for p in read_config(run_dir).space.build().parameters}
    except Exception:  # the plot is still useful without the ranges
        return {}


def _front_designs(result: dict[str, Any], path: Path, bounds: dict[str, tuple[float, float]]) -> Path:
    front = result["pareto_set"]
    o1 = result["objectives"][0]
    names = list(front[0]["theta"]) if front else []
    d = max(len(names), 1)
    ncol = min(d, 2)
    nrow = int(np.ceil(d / ncol))
    fig, axes = subplots(nrow, ncol, figsize=(5.2 * ncol, 3.0 * nrow), squeeze=False)
    x = np.array([p["objectives"][o1["name"]]["mean"] for p in front])
    for k, name in enumerate(names):
        ax = axes[k // ncol, k % ncol]
        ax.plot(x, [p["theta"][name] for p in front], "o-", color="tab:red")
        ax.set_ylabel(name)
        ax.set_xlabel(_label(o1))
        if name in bounds:  # the whole designer range, so that a parameter pinned at a bound shows as such
            lo, hi = bounds[name]
            pad = 0.04 * (hi - lo)
            ax.set_ylim(lo - pad, hi + pad)
            ax.axhspan(lo - pad, lo, color="0.9")
            ax.axhspan(hi, hi + pad, color="0.9")
        ax.grid(alpha=0.3)
    for k in range(len(names), nrow * ncol):
        axes[k // ncol, k % ncol].axis("off")
    fig.suptitle("design parameters along the estimated Pareto front")
    fig.tight_layout()
    return save_figure(fig, path)


def _hv_plot(records: list[dict[str, Any]], result: dict[str, Any], path: Path) -> Path:
    fig, ax = subplots(figsize=(6.5, 3.6))
    it = [r["iteration"] for r in records if "predicted_hypervolume" in r]
    hv = [r["predicted_hypervolume"] for r in records if "predicted_hypervolume" in r]
    if it:
        ax.plot(it, hv, "o-", label="before the iteration (its own reference point)")
    ax.plot([(max(it) if it else 0) + 1], [result.get("hypervolume", np.nan)], "s", color="tab:red", label="final")
    ax.set_xlabel("iteration (last: final)")
    ax.set_ylabel("predicted hypervolume")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def pareto_report(run_dir: str | os.PathLike[str]) -> Path:
    """Write ``RUN_DIR/report/`` (pareto.png, front_designs.png, hypervolume.png, index.html); returns the HTML path."""
    run_dir = Path(run_dir)
    result = read_result(run_dir, "multi-objective")
    if "pareto_set" not in result:
        raise InputError(f"{RESULT} has no 'pareto_set': not a multi-objective run", file=run_dir)
    frame = read_parquet(run_dir / OBJECTIVES) if (run_dir / OBJECTIVES).exists() else None
    records = read_loop_records(run_dir, result.get("iterations"))
    out = run_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    _pareto_plot(result, frame, out / "pareto.png")
    _front_designs(result, out / "front_designs.png", _bounds(run_dir))
    _hv_plot(records, result, out / "hypervolume.png")
    objs = [o["name"] for o in result["objectives"]]
    theta_names = list(result["pareto_set"][0]["theta"]) if result["pareto_set"] else []
    head = "".join(f"<th>{html.escape(n)}</th>" for n in [*theta_names, *objs])
    rows = "".join(
        "<tr>" + "".join(f"<td>{p['theta'][n]:.4g}</td>" for n in theta_names)
        + "".join(f"<td>{p['objectives'][n]['mean']:.4g} ± {p['objectives'][n]['sigma']:.2g}</td>" for n in objs)
        + "</tr>" for p in result["pareto_set"])
    summary = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(result[k]))}</td></tr>"
                      for k in ("fidelity", "acquisition", "hypervolume", "reference_point", "cost_cpu_h", "runs",
                                "iterations") if k in result)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rarefy multi-objective run: {html.escape(run_dir.name)}</title>
<style>body{{font-family:sans-serif;max-width:64em;margin:2em auto}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}} img{{max-width:100%}}</style></head><body>
<h1>Multi-objective run: {html.escape(run_dir.name)}</h1>
<table>{summary}</table>
<h2>Pareto front</h2><img src="pareto.png" alt="Pareto front">
<p>Every objective is minimised. Front points: non-dominated posterior means of the per-objective surrogates
at the fidelity {html.escape(str(result.get('fidelity')))}; ± is the posterior σ.</p>
<h2>Designs along the front</h2><img src="front_designs.png" alt="designs along the front">
<table><tr>{head}</tr>{rows}</table>
<h2>Hypervolume</h2><img src="hypervolume.png" alt="hypervolume">
</body></html>
"""
    return write_text(out / "index.html", page)
