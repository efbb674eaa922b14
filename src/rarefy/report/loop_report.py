"""Static report of a closed-loop run directory: PNG plots and one self-contained ``index.html``.

:func:`loop_report` (CLI: ``rarefy report RUN_DIR``; ``rarefy run`` writes it at the end)
reads ``result.json``, ``loop/iter-*.json`` and ``rates.parquet`` and writes into
``RUN_DIR/report/``:

* ``convergence.png`` — the surrogate's predicted optimum (target rate ± 1σ) after each
  iteration, the final prediction and the verified rate, the baseline; the nominal
  CPU-hours spent on the second axis;
* ``designs.png`` — every simulated design in each pair of parameters, by fidelity and
  origin (initial design, loop, verification), with θ* marked;
* ``slices.png`` — the surrogate's target prediction along each parameter through θ*
  (±1σ, ±2σ, the simulated runs), ``map.png`` — a 2-D map over the two most influential
  parameters (see :mod:`rarefy.report.surrogate_plots`), from ``RUN_DIR/surrogate``;
* ``calibration.png`` — the loop's cross-validation (``loop/cv_predictions.csv``);
* ``acquisition.png`` — the acquisition value of every proposed run; ``cost.png`` — nominal
  CPU-hours per fidelity, cumulative over the iterations;
* ``index.html`` — the result table, the per-iteration table and the plots (relative links).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.rundir import LOOP_DIR, RATES, REPORT_DIR, SURROGATE_DIR, read_loop_records, read_result, read_runs, \
    run_dir_lock
from ..errors import InputError
from ..io import write_text
from .figures import COLORS, save_figure, subplots

__all__ = ["loop_report"]




def _convergence(result: dict[str, Any], records: list[dict[str, Any]], path: Path) -> Path:
    fig, ax = subplots(figsize=(7.5, 4.2))
    it = [r["iteration"] for r in records if "predicted_optimum" in r]
    mu = np.array([r["predicted_optimum"]["rate"] for r in records if "predicted_optimum" in r])
    sd = np.array([r["predicted_optimum"]["sigma"] for r in records if "predicted_optimum" in r])
    if len(it):
        ax.errorbar(it, mu, yerr=sd, fmt="o-", color="tab:blue", capsize=3, label="predicted optimum (before the round)")
    final_x = (max(it) if it else 0) + 1
    ax.errorbar([final_x - 0.08], [result["predicted_rate"]], yerr=[result["predicted_sigma"]], fmt="s",
                color="tab:blue", capsize=3, label="final prediction at θ*")
    if result.get("verified_rate") is not None:
        ax.errorbar([final_x + 0.08], [result["verified_rate"]], yerr=[result["verified_sigma"]], fmt="D",
                    color="tab:red", capsize=3, label=f"verified ({result['target']} runs at θ*)")
    if result.get("expected_rate") is not None:
        ax.plot([final_x], [result["expected_rate"]], "k*", ms=10, label="simulator's exact rate at θ*")
    if result.get("baseline_rate"):
        ax.axhline(result["baseline_rate"], color="grey", ls="--", label="baseline")
    ax.set_xlabel("iteration (last: final)")
    ax.set_ylabel(f"{result['target']} rate")
    ax2 = ax.twinx()
    spent = [r.get("spent_cpu_h", np.nan) for r in records]
    if records:
        ax2.plot([r["iteration"] for r in records], spent, color="tab:green", alpha=0.5, lw=1)
    ax2.plot([final_x], [result["cost_cpu_h"]["total"]], "^", color="tab:green", alpha=0.6)
    ax2.set_ylabel("nominal CPU-h spent", color="tab:green")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("closed loop: predicted optimum per iteration")
    return save_figure(fig, path)


def _designs(rates: pd.DataFrame, names: list[str], theta_star: dict[str, float], path: Path) -> Path:
    d = len(names)
    fig, axes = subplots(d, d, figsize=(2.0 * d + 1, 2.0 * d + 1), squeeze=False)
    origin = np.where(rates["run_id"].astype(str).str.startswith("loop-"), "loop",
                      np.where(rates["run_id"].astype(str).str.match(r"^(verify|baseline)-"), "verification",
                               np.where(rates["run_id"].astype(str).str.startswith("ingest"), "ingested", "initial")))
    markers = {"initial": "o", "loop": "x", "verification": "D", "ingested": "+"}
    fids = list(dict.fromkeys(rates["fidelity"].astype(str)))
    for i, yi in enumerate(names):
        for j, xj in enumerate(names):
            ax = axes[i, j]
            if i == j:
                ax.hist(rates[xj], bins=15, color="0.7")
            else:
                for f_i, fid in enumerate(fids):
                    for org, mk in markers.items():
                        sel = (rates["fidelity"].astype(str) == fid).to_numpy() & (origin == org)
                        if sel.any():
                            ax.scatter(rates.loc[sel, xj], rates.loc[sel, yi], s=12, marker=mk,
                                       color=COLORS[f_i % len(COLORS)], label=f"{fid} {org}", alpha=0.8)
                ax.plot([theta_star[xj]], [theta_star[yi]], "r*", ms=11)
            if i == d - 1:
                ax.set_xlabel(xj, fontsize=8)
            if j == 0:
                ax.set_ylabel(yi, fontsize=8)
            ax.tick_params(labelsize=6)
    handles, labels = axes[0, 1].get_legend_handles_labels() if d > 1 else ([], [])
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.suptitle("simulated designs (red star: θ*)")
    return save_figure(fig, path)


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows) + "</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


def _surrogate_sections(run_dir: Path, result: dict[str, Any], records: list[dict[str, Any]], rates: pd.DataFrame,
                        out: Path) -> str:
    """Slices through θ*, the 2-D map, CV calibration, acquisition history and cost plots, as HTML."""
    from .calibration import calibration_plot
    from .surrogate_plots import acquisition_plot, cost_plot, influence, map_plot, slices_plot

    parts = []
    sim_rows = rates[~rates["fidelity"].astype(str).str.endswith("-cnp")]
    target = str(result.get("target"))
    if (run_dir / SURROGATE_DIR / "model.json").exists():
        from ..surrogate.factory import load_surrogate

        sur = load_surrogate(run_dir / SURROGATE_DIR)
        fit_rows = rates[~rates["run_id"].astype(str).str.match(r"^(verify|baseline)-")] if "run_id" in rates else rates
        slices_plot(sur, target, result["optimum"], fit_rows, out / "slices.png")
        parts.append('<h2>Surrogate through θ*</h2><img src="slices.png" alt="slices">')
        infl = influence(sur, target, result["optimum"])
        pair = sorted(infl, key=lambda n: -infl[n])[:2]
        if len(pair) == 2:
            map_plot(sur, target, result["optimum"], pair, fit_rows, out / "map.png")
            ranked = ", ".join(f"{n} {v:.3g}" for n, v in sorted(infl.items(), key=lambda kv: -kv[1]))
            parts.append(f'<h2>The two most influential parameters</h2><p>Range of the predicted {html.escape(target)} '
                         f'mean along each slice through θ* (feasible part): {html.escape(ranked)}.</p>'
                         '<img src="map.png" alt="2-D map">')
    cv_path = run_dir / LOOP_DIR / "cv_predictions.csv"
    if cv_path.exists():
        pred = pd.read_csv(cv_path)
        calibration_plot(pred, out / "calibration.png", title=f"cross-validation over the {target} runs")
        cv = result.get("cv") or {}
        parts.append("<h2>Calibration (cross-validation)</h2>" + (_table([(k, _fmt(v)) for k, v in cv.items()]) if cv
                                                                   else "") + '<img src="calibration.png" alt="calibration">')
    if records:
        acquisition_plot(records, out / "acquisition.png")
        parts.append('<h2>Acquisition history</h2><img src="acquisition.png" alt="acquisition history">')
    cost_plot(records, sim_rows, out / "cost.png")
    parts.append('<h2>Cost per fidelity</h2><img src="cost.png" alt="cost per fidelity">')
    return "\n".join(parts)


def loop_report(run_dir: str | os.PathLike[str]) -> Path:
    """Write ``RUN_DIR/report/`` (PNG plots + ``index.html``) for a closed-loop run; returns the HTML path.

    The run directory's lock is held throughout (a second process on it fails at once).
    """
    run_dir = Path(run_dir)
    with run_dir_lock(run_dir, "rarefy report"):
        return _loop_report(run_dir)


def _loop_report(run_dir: Path) -> Path:
    result = read_result(run_dir)
    if "pareto_set" in result:  # a multi-objective run
        from .pareto_report import pareto_report

        return pareto_report(run_dir)
    records = read_loop_records(run_dir, result.get("iterations"))
    rates = read_runs(run_dir)
    if rates is None:
        raise InputError(f"no {RATES}: the run directory holds no runs", file=run_dir)
    names = list(result["optimum"])
    out = run_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    _convergence(result, records, out / "convergence.png")
    _designs(rates, names, result["optimum"], out / "designs.png")
    surrogate_html = _surrogate_sections(run_dir, result, records, rates, out)
    keys = ["target", "objective", "predicted_rate", "predicted_sigma", "verified_rate", "verified_sigma",
            "expected_rate", "baseline_rate", "baseline_source", "reduction", "reduction_sigma",
            "predicted_reduction", "cost_cpu_h", "runs", "iterations"]
    summary = [("optimum θ*", _fmt(result["optimum"]))] + [(k, _fmt(result[k])) for k in keys if k in result]
    iters = "".join(
        f"<tr><td>{r['iteration']}</td><td>{r.get('spent_cpu_h', float('nan')):.4g}</td><td>{r.get('rows', '')}</td>"
        f"<td>{html.escape(', '.join(p['fidelity'] for p in r['proposals']))}</td>"
        f"<td>{r['predicted_optimum']['rate']:.4g} ± {r['predicted_optimum']['sigma']:.2g}</td></tr>"
        for r in records if "predicted_optimum" in r)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rarefy closed loop: {html.escape(run_dir.name)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}} img{{max-width:100%}}</style></head><body>
<h1>Closed loop: {html.escape(run_dir.name)}</h1>
<h2>Result</h2>{_table(summary)}
<p>Reduction = 1 − rate/baseline, from the verified rate when there is one; σ by the delta method.
Costs are nominal CPU-hours (the fidelities' cost per event × events).</p>
<h2>Iterations</h2>
<table><tr><th>iteration</th><th>CPU-h spent before</th><th>runs fitted</th><th>proposed runs</th>
<th>predicted optimum</th></tr>{iters}</table>
<h2>Convergence</h2><img src="convergence.png" alt="convergence">
{surrogate_html}
<h2>Designs</h2><img src="designs.png" alt="designs">
</body></html>
"""
    return write_text(out / "index.html", page)
