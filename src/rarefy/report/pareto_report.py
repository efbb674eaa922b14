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
* ``index.html`` — the whole report in one self-contained file (figures embedded, see
  :mod:`rarefy.report.page`): provenance and resolved config, the front as a table (θ and
  objectives ± σ, with units) and the plots.

Axes and tables carry units: each design parameter's ``unit`` and each objective's ``unit``.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.rundir import OBJECTIVES, REPORT_DIR, RESULT, read_loop_records, read_result
from ..errors import InputError
from ..io import read_parquet, write_text
from ..space import DesignSpace, format_number
from .figures import COLORS, save_figure, subplots
from .page import embed_png, html_table, report_page, run_config, with_unit

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


def _hv_unit(objectives: list[dict[str, Any]]) -> str:
    """Unit of the hypervolume: the product of the objectives' units (a log10 objective counts as dex)."""
    parts = ["dex" if o.get("log10") else o.get("unit", "") for o in objectives]
    return " × ".join(p for p in parts if p)


def _front_designs(result: dict[str, Any], path: Path, space: DesignSpace | None) -> Path:
    """Each design parameter along the front, over its whole range when the design space is known."""
    bounds = {p.name: (p.low, p.high) for p in space.parameters} if space is not None else {}
    units = {p.name: p.unit for p in space.parameters} if space is not None else {}
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
        ax.set_ylabel(with_unit(name, units.get(name, "")))
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
    ax.set_ylabel(with_unit("predicted hypervolume", _hv_unit(result["objectives"])))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def pareto_report(run_dir: str | os.PathLike[str]) -> Path:
    """Write ``RUN_DIR/report/index.html`` (self-contained) and its PNGs (pareto.png, front_designs.png,
    hypervolume.png); returns the HTML path."""
    run_dir = Path(run_dir)
    result = read_result(run_dir, "multi-objective")
    if "pareto_set" not in result:
        raise InputError(f"{RESULT} has no 'pareto_set': not a multi-objective run", file=run_dir)
    frame = read_parquet(run_dir / OBJECTIVES) if (run_dir / OBJECTIVES).exists() else None
    records = read_loop_records(run_dir, result.get("iterations"))
    cfg = run_config(run_dir)
    space = cfg.space.build() if cfg is not None else None
    out = run_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    _pareto_plot(result, frame, out / "pareto.png")
    _front_designs(result, out / "front_designs.png", space)
    _hv_plot(records, result, out / "hypervolume.png")
    objectives = result["objectives"]
    objs = [o["name"] for o in objectives]
    theta_names = list(result["pareto_set"][0]["theta"]) if result["pareto_set"] else []
    integer = {p.name: p.integer for p in space.parameters} if space is not None else {}
    units = {p.name: p.unit for p in space.parameters} if space is not None else {}
    head = [*(with_unit(n, units.get(n, "")) for n in theta_names), *(_label(o) for o in objectives)]
    rows = [[*(format_number(p["theta"][n], integer=integer.get(n, False)) for n in theta_names),
             *(f"{format_number(p['objectives'][n]['mean'])} ± {format_number(p['objectives'][n]['sigma'], 2)}"
               for n in objs)] for p in result["pareto_set"]]
    ref = result.get("reference_point") or {}
    summary = [("fidelity of the front", str(result.get("fidelity", "")), ""),
               ("acquisition", str(result.get("acquisition", "")), ""),
               ("hypervolume", format_number(result.get("hypervolume", float("nan"))), _hv_unit(objectives))]
    summary += [(f"reference point: {o['name']}" + (" (log10)" if o.get("log10") else ""),
                 format_number(ref[o["name"]]), "dex" if o.get("log10") else o.get("unit", ""))
                for o in objectives if o["name"] in ref]
    summary += [(f"nominal cost ({k})", format_number(v), "CPU-h") for k, v in (result.get("cost_cpu_h") or {}).items()]
    summary += [(f"runs ({k})", str(v), "runs") for k, v in (result.get("runs") or {}).items()]
    summary.append(("iterations", str(result.get("iterations", "")), ""))
    n = len(theta_names) + len(objs)
    body = f"""<h2>Result</h2>
{html_table(summary, ["quantity", "value", "unit"], numeric=[1])}
<h2>Pareto front</h2>{embed_png(out / "pareto.png", "Pareto front")}
<p>Every objective is minimised. Front points: non-dominated posterior means of the per-objective surrogates
at the fidelity {html.escape(str(result.get('fidelity')))}; ± is the posterior σ.</p>
<h2>Designs along the front</h2>{embed_png(out / "front_designs.png", "designs along the front")}
{html_table(rows, head, numeric=range(n))}
<h2>Hypervolume</h2>{embed_png(out / "hypervolume.png", "hypervolume")}"""
    page = report_page(f"Multi-objective run: {run_dir.name}", body, run_dir, result, cfg)
    return write_text(out / "index.html", page)
