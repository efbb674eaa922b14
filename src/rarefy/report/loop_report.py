"""Static report of a closed-loop run directory: one self-contained ``index.html`` (and its PNG plots).

:func:`loop_report` (CLI: ``rarefy report RUN_DIR``; ``rarefy run`` writes it at the end)
reads ``result.json``, ``loop/iter-*.json``, ``rates.parquet`` and ``config.yaml`` and writes
into ``RUN_DIR/report/``:

* ``index.html`` — the whole report in one file that links to nothing (the figures are
  embedded as base64 PNGs, see :mod:`rarefy.report.page`): the provenance (rarefy version,
  seed, config sha256, time; the resolved config in a collapsible block), θ* as a table
  with units, the result table, the per-iteration table and the plots;
* the same figures as PNG files beside it, for slides and papers:
  ``convergence.png`` — the surrogate's predicted optimum (target rate ± 1σ) after each
  iteration, the final prediction and the verified rate, the baseline; the nominal
  CPU-hours spent on the second axis;
  ``designs.png`` — every simulated design in each pair of parameters, by fidelity and
  origin (initial design, loop, verification), with θ* marked;
  ``slices.png`` — the surrogate's target prediction along each parameter through θ*
  (±1σ, ±2σ, the simulated runs), ``map.png`` — a 2-D map over the two most influential
  parameters (see :mod:`rarefy.report.surrogate_plots`), from ``RUN_DIR/surrogate``;
  ``calibration.png`` — the loop's cross-validation (``loop/cv_predictions.csv``);
  ``acquisition.png`` — the acquisition value of every proposed run; ``cost.png`` — nominal
  CPU-hours per fidelity, cumulative over the iterations.

Axes and tables carry units: each design parameter's ``unit`` and the target fidelity's
``value_unit`` from the run's config.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.rundir import LOOP_DIR, RATES, REPORT_DIR, SURROGATE_DIR, denoised_base, read_loop_records, read_result, \
    read_runs, run_dir_lock
from ..errors import InputError
from ..io import write_text
from ..space import DesignSpace, format_number
from .figures import COLORS, save_figure, subplots
from .page import embed_png, html_table, report_page, run_config, unit_label, with_unit

__all__ = ["loop_report"]


def _convergence(result: dict[str, Any], records: list[dict[str, Any]], path: Path, unit: str = "") -> Path:
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
    ax.set_ylabel(with_unit(f"{result['target']} rate", unit))
    ax2 = ax.twinx()
    spent = [r.get("spent_cpu_h", np.nan) for r in records]
    if records:
        ax2.plot([r["iteration"] for r in records], spent, color="tab:green", alpha=0.5, lw=1)
    ax2.plot([final_x], [result["cost_cpu_h"]["total"]], "^", color="tab:green", alpha=0.6)
    ax2.set_ylabel("nominal cost spent [CPU-h]", color="tab:green")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("closed loop: predicted optimum per iteration")
    return save_figure(fig, path)


def _designs(rates: pd.DataFrame, names: list[str], theta_star: dict[str, float], path: Path,
             units: dict[str, str] | None = None) -> Path:
    units = units or {}
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
                ax.set_xlabel(with_unit(xj, units.get(xj, "")), fontsize=8)
            if j == 0:
                ax.set_ylabel(with_unit(yi, units.get(yi, "")), fontsize=8)
            ax.tick_params(labelsize=6)
    handles, labels = axes[0, 1].get_legend_handles_labels() if d > 1 else ([], [])
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.suptitle("simulated designs (red star: θ*)")
    return save_figure(fig, path)


def _num(v: Any) -> str:
    return "-" if v is None else format_number(float(v))


def _pm(value: Any, sigma: Any) -> str:
    """``value ± sigma`` (σ to 2 significant digits); ``-`` for a missing value."""
    if value is None:
        return "-"
    return f"{format_number(float(value))} ± {format_number(float(sigma), 2)}" if sigma is not None else _num(value)


def _percent(value: Any, sigma: Any) -> str:
    if value is None:
        return "-"
    return f"{100 * float(value):.1f} ± {100 * float(sigma or 0.0):.1f}"


def _result_rows(result: dict[str, Any], unit: str) -> list[tuple[str, str, str]]:
    """The result table: quantity, value, unit."""
    target = str(result.get("target"))
    rows = [("target fidelity", target, ""), ("objective", str(result.get("objective", "")), ""),
            (f"predicted {target} rate at θ*", _pm(result.get("predicted_rate"), result.get("predicted_sigma")), unit)]
    if result.get("verified_rate") is not None:
        counts = f"k = {result.get('verified_k')} of n = {result.get('verified_n')} events"
        rows.append((f"verified {target} rate at θ* ({counts})",
                     _pm(result["verified_rate"], result.get("verified_sigma")), unit))
    if result.get("expected_rate") is not None:
        rows.append(("simulator's exact rate at θ*", _num(result["expected_rate"]), unit))
    if result.get("baseline_rate"):
        rows.append((f"baseline rate ({result.get('baseline_source') or 'given'})",
                     _pm(result["baseline_rate"], result.get("baseline_sigma")), unit))
    if result.get("reduction") is not None:
        rows.append(("reduction vs baseline", _percent(result["reduction"], result.get("reduction_sigma")), "%"))
    if result.get("gain_confirmed") is not None:
        rows.append(("gain confirmed (verified reduction ≥ 2σ above zero)", "yes" if result["gain_confirmed"] else "no",
                     ""))
    ver = result.get("verification")
    if ver:
        needed = "-" if ver.get("needed") is None else str(ver["needed"])
        rows.append(("verification runs (needed for σ ≤ the target below)", f"{ver['runs']} ({needed})", "runs"))
        if ver.get("reduction_sigma_target") is not None:
            rows.append(("target σ of the verified reduction", _percent(ver["reduction_sigma_target"], 0.0)
                         .split(" ±")[0], "%"))
        if ver.get("limited_by"):
            rows.append(("verification limited by", str(ver["limited_by"]), ""))
        follow = ver.get("follow_up")
        if follow:
            rows.append(("second look: runs added to confirm the measured gain",
                         f"{follow['runs']} ({follow.get('reason', '')})", "runs"))
    if result.get("predicted_reduction") is not None:
        rows.append(("predicted reduction vs baseline",
                     _percent(result["predicted_reduction"], result.get("predicted_reduction_sigma")), "%"))
    for fid, cost in (result.get("cost_cpu_h") or {}).items():
        rows.append((f"nominal cost ({fid})", _num(cost), "CPU-h"))
    for fid, n in (result.get("runs") or {}).items():
        rows.append((f"runs ({fid})", str(n), "runs"))
    rows.append(("iterations", str(result.get("iterations", "")), ""))
    return rows


def _cv_unit(metric: str, unit: str) -> str:
    """Unit of a cross-validation metric: (rate unit)² for mean squared errors, the rate unit for root ones."""
    if not unit:
        return ""
    if metric in ("rmse", "mae"):
        return unit
    if metric == "mse":
        return f"({unit})²"
    return ""


def _surrogate_sections(run_dir: Path, result: dict[str, Any], records: list[dict[str, Any]], rates: pd.DataFrame,
                        out: Path, unit: str = "") -> str:
    """Slices through θ*, the 2-D map, CV calibration, acquisition history and cost plots, as HTML."""
    from .calibration import calibration_plot
    from .surrogate_plots import acquisition_plot, cost_plot, influence, map_plot, slices_plot

    parts = []
    sim_rows = rates[rates["fidelity"].astype(str).map(lambda f: denoised_base(f) is None).astype(bool)]
    target = str(result.get("target"))
    if (run_dir / SURROGATE_DIR / "model.json").exists():
        from ..surrogate.factory import load_surrogate

        sur = load_surrogate(run_dir / SURROGATE_DIR)
        fit_rows = rates[~rates["run_id"].astype(str).str.match(r"^(verify|baseline)-")] if "run_id" in rates else rates
        slices_plot(sur, target, result["optimum"], fit_rows, out / "slices.png", value_unit=unit)
        parts.append("<h2>Surrogate through θ*</h2>" + embed_png(out / "slices.png", "slices through θ*"))
        infl = influence(sur, target, result["optimum"])
        pair = sorted(infl, key=lambda n: -infl[n])[:2]
        if len(pair) == 2:
            map_plot(sur, target, result["optimum"], pair, fit_rows, out / "map.png", value_unit=unit)
            ranked = [(n, format_number(v, 3), unit) for n, v in sorted(infl.items(), key=lambda kv: -kv[1])]
            parts.append(f"<h2>The two most influential parameters</h2><p>Range of the predicted "
                         f"{html.escape(target)} mean along each slice through θ* (feasible part):</p>"
                         + html_table(ranked, ["parameter", "range of the predicted mean", "unit"], numeric=[1])
                         + embed_png(out / "map.png", "2-D map of the two most influential parameters"))
    cv_path = run_dir / LOOP_DIR / "cv_predictions.csv"
    if cv_path.exists():
        pred = pd.read_csv(cv_path)
        calibration_plot(pred, out / "calibration.png", title=f"cross-validation over the {target} runs", unit=unit)
        cv = result.get("cv") or {}
        table = html_table([(k, _num(v) if isinstance(v, (int, float)) else str(v), _cv_unit(k, unit))
                            for k, v in cv.items()], ["metric", "value", "unit"], numeric=[1]) if cv else ""
        parts.append("<h2>Calibration (cross-validation)</h2>" + table
                     + embed_png(out / "calibration.png", "calibration"))
    if records:
        acquisition_plot(records, out / "acquisition.png")
        parts.append("<h2>Acquisition history</h2>" + embed_png(out / "acquisition.png", "acquisition history"))
    cost_plot(records, sim_rows, out / "cost.png")
    parts.append("<h2>Cost per fidelity</h2>" + embed_png(out / "cost.png", "cost per fidelity"))
    return "\n".join(parts)


def _space(run_dir: Path, cfg: Any) -> DesignSpace | None:
    """The run's design space (units, integer parameters) from its config or its saved surrogate; None without."""
    if cfg is not None:
        return cfg.space.build()
    model = run_dir / SURROGATE_DIR / "model.json"
    if model.exists():
        import json

        spec = json.loads(model.read_text()).get("space")
        if spec:
            return DesignSpace.from_dict(spec)
    return None


def loop_report(run_dir: str | os.PathLike[str]) -> Path:
    """Write ``RUN_DIR/report/index.html`` (self-contained) and its PNG plots for a closed-loop run; returns the
    HTML path. The run directory's lock is held throughout (a second process on it fails at once).
    """
    run_dir = Path(run_dir)
    with run_dir_lock(run_dir, "rarefy report"):
        return _loop_report(run_dir)


def _loop_report(run_dir: Path) -> Path:
    result = read_result(run_dir)
    if "pareto_set" in result:  # a multi-objective run
        from .pareto_report import pareto_report

        return pareto_report(run_dir)
    if result.get("goal") == "surface":  # a surface loop
        from .surface_report import surface_report

        return surface_report(run_dir)
    records = read_loop_records(run_dir, result.get("iterations"))
    rates = read_runs(run_dir)
    if rates is None:
        raise InputError(f"no {RATES}: the run directory holds no runs", file=run_dir)
    cfg = run_config(run_dir)
    space = _space(run_dir, cfg)
    target = str(result.get("target"))
    unit = ""
    if cfg is not None and target in cfg.fidelity_names:
        unit = cfg.fidelity(target).value_unit
    names = list(result["optimum"])
    units = {p.name: p.unit for p in space.parameters} if space is not None else {}
    out = run_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    _convergence(result, records, out / "convergence.png", unit)
    _designs(rates, names, result["optimum"], out / "designs.png", units)
    surrogate_html = _surrogate_sections(run_dir, result, records, rates, out, unit)
    if space is not None:
        theta = space.theta_rows(result["optimum"])
    else:
        theta = [(n, format_number(float(v)), "") for n, v in result["optimum"].items()]
    iters = [(str(r["iteration"]), _num(r.get("spent_cpu_h")), str(r.get("rows", "")),
              ", ".join(p["fidelity"] for p in r["proposals"]),
              _pm(r["predicted_optimum"]["rate"], r["predicted_optimum"]["sigma"]))
             for r in records if "predicted_optimum" in r]
    body = f"""<h2>Optimum θ*</h2>
{html_table(theta, ["parameter", "value", "unit"], numeric=[1])}
<h2>Result</h2>
{html_table(_result_rows(result, unit), ["quantity", "value", "unit"], numeric=[1])}
<p>Reduction = 1 − rate/baseline, from the verified rate when there is one; σ by the delta method.
Costs are nominal CPU-hours (the fidelities' cost per event × events).</p>
<h2>Iterations</h2>
{html_table(iters, ["iteration", "cost spent before [CPU-h]", "runs fitted", "proposed runs (fidelity)",
                    "predicted optimum" + unit_label(unit)], numeric=[0, 1, 2, 4])}
<h2>Convergence</h2>{embed_png(out / "convergence.png", "convergence")}
{surrogate_html}
<h2>Designs</h2>{embed_png(out / "designs.png", "simulated designs")}"""
    page = report_page(f"Closed loop: {run_dir.name}", body, run_dir, result, cfg)
    return write_text(out / "index.html", page)
