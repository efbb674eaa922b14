"""Static report of a surface loop (``loop.goal: surface``): one self-contained ``index.html`` and its PNGs.

:func:`surface_report` (``rarefy report RUN_DIR`` dispatches here for a surface run) reads
``result.json``, ``loop/iter-*.json``, ``rates.parquet``, ``surface.parquet``,
``loop/cv_predictions.csv`` and ``config.yaml`` and writes into ``RUN_DIR/report/``:

* ``index.html`` — provenance, the stopping rule and why the loop stopped, the result
  table (accuracy, cross-validated calibration, the exact check where the simulator knows
  its rate, compute per fidelity) and the plots;
* ``accuracy.png`` — the stopping metric after each round against the nominal CPU-hours
  spent, with the threshold;
* ``calibration.png`` — the cross-validation of the final surrogate over the target runs;
* ``map.png`` — the predicted target mean and σ over the two most influential parameters,
  the others at the design of median predicted rate;
* ``cost.png`` — nominal CPU-hours per fidelity, cumulative over the rounds.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.rundir import LOOP_DIR, RATES, REPORT_DIR, SURFACE, SURROGATE_DIR, denoised_base, read_loop_records, \
    read_result, read_runs, run_dir_lock
from ..errors import InputError
from ..io import read_parquet, write_text
from ..space import format_number
from .figures import save_figure, subplots
from .page import embed_png, html_table, report_page, run_config, with_unit

__all__ = ["surface_report"]


def _num(v: Any) -> str:
    return "-" if v is None else format_number(float(v))


def accuracy_plot(result: dict[str, Any], path: Path) -> Path:
    """The stopping metric per round against nominal CPU-hours spent (log axes), with the threshold."""
    metric, below = result["stop"]["metric"], result["stop"]["below"]
    hist = result.get("history") or []
    cost = np.array([h["cost_cpu_h"]["total"] for h in hist], dtype=float)
    val = np.array([h["accuracy"][metric] for h in hist], dtype=float)
    fig, ax = subplots(figsize=(7.0, 4.0))
    ok = np.isfinite(val) & (cost > 0)
    ax.plot(cost[ok], val[ok], "o-", color="tab:blue", label=f"{metric} before each round")
    ax.axhline(below, color="tab:red", ls="--", label=f"stop at {below:g}")
    if ok.any():
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("nominal compute spent [CPU-h]")
    ax.set_ylabel(f"{metric} [dimensionless]")
    ax.set_title(f"{result['target']} rate surface: accuracy against compute")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _rows(result: dict[str, Any], unit: str) -> list[tuple[str, str, str]]:
    stop, acc = result["stop"], result["accuracy"]
    rows = [("target fidelity", str(result["target"]), ""),
            ("stopping rule", f"{stop['metric']} ≤ {stop['below']:g} over {stop['designs']} Sobol designs", ""),
            ("stopped by", str(result["stopped"]), ""),
            ("RMS σ over the designs", _num(acc["rms_sigma"]), unit),
            ("range of the predicted mean (central 99% of the designs)", _num(acc["spread"]), unit),
            ("σ / spread", _num(acc["sigma_over_spread"]), ""),
            ("mean relative σ", _num(acc["rel_sigma"]), "")]
    cv = result.get("cv") or {}
    for key in ("coverage_1sigma", "coverage_2sigma", "coverage_3sigma"):
        if key in cv:
            rows.append((f"cross-validated {key.replace('_', ' ')}", _num(cv[key]), ""))
    if "mse" in cv:
        rows.append(("cross-validated RMSE", _num(float(np.sqrt(cv["mse"]))), unit))
    exact = result.get("exact")
    if exact:
        rows += [("RMSE against the simulator's exact rate", _num(exact["rmse"]), unit),
                 ("2σ coverage of the exact rate", _num(exact["coverage_2sigma"]), "")]
    for part, cost in (result.get("cost_cpu_h") or {}).items():
        rows.append((f"nominal compute ({part})", _num(cost), "CPU-h"))
    for fid, n in (result.get("runs") or {}).items():
        rows.append((f"runs ({fid})", str(n), "runs"))
    rows.append(("rounds", str(result.get("iterations", "")), ""))
    return rows


def surface_report(run_dir: str | os.PathLike[str]) -> Path:
    """Write ``RUN_DIR/report/index.html`` (self-contained) and its PNG plots for a surface loop; returns the path.

    The run directory's lock is held throughout.
    """
    run_dir = Path(run_dir)
    with run_dir_lock(run_dir, "rarefy report"):
        return _surface_report(run_dir)


def _surface_report(run_dir: Path) -> Path:
    from .calibration import calibration_plot
    from .surrogate_plots import cost_plot, influence, map_plot

    result = read_result(run_dir)
    records = read_loop_records(run_dir)
    rates = read_runs(run_dir)
    if rates is None:
        raise InputError(f"no {RATES}: the run directory holds no runs", file=run_dir)
    cfg = run_config(run_dir)
    target = str(result["target"])
    unit = cfg.fidelity(target).value_unit if cfg is not None and target in cfg.fidelity_names else ""
    out = run_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    parts = [f"<h2>Result</h2>{html_table(_rows(result, unit), ['quantity', 'value', 'unit'], numeric=[1])}",
             "<p>σ is the surrogate's latent 1σ of the target rate; compute is nominal CPU-hours (the fidelities' "
             "cost per event × events), the denoiser's at its wall time × threads.</p>"]
    accuracy_plot(result, out / "accuracy.png")
    parts.append("<h2>Accuracy against compute</h2>" + embed_png(out / "accuracy.png", "accuracy against compute"))
    cv_path = run_dir / LOOP_DIR / "cv_predictions.csv"
    if cv_path.exists():
        calibration_plot(pd.read_csv(cv_path), out / "calibration.png",
                         title=f"cross-validation over the {target} runs", unit=unit)
        parts.append("<h2>Calibration (cross-validation)</h2>" + embed_png(out / "calibration.png", "calibration"))
    surface = run_dir / SURFACE
    if (run_dir / SURROGATE_DIR / "model.json").exists() and surface.exists():
        from ..surrogate.factory import load_surrogate

        sur = load_surrogate(run_dir / SURROGATE_DIR)
        pred = read_parquet(surface)
        mid = pred.iloc[int(np.argsort(pred["mean"].to_numpy())[len(pred) // 2])]
        center = {n: float(mid[n]) for n in sur.space.names}
        infl = influence(sur, target, center)
        pair = sorted(infl, key=lambda n: -infl[n])[:2]
        if len(pair) == 2:
            sim_rows = rates[rates["fidelity"].astype(str) == target]
            map_plot(sur, target, center, pair, sim_rows, out / "map.png", value_unit=unit)
            where = ", ".join(f"{n} = {format_number(v)}" for n, v in center.items() if n not in pair)
            parts.append(f"<h2>The surface over its two most influential parameters</h2><p>Predicted "
                         f"{html.escape(with_unit(target, unit))} mean and σ; the other parameters at the design of "
                         f"median predicted rate ({html.escape(where)}).</p>" + embed_png(out / "map.png", "map"))
    sim_rows = rates[rates["fidelity"].astype(str).map(denoised_base).isna()]
    cost_plot(records, sim_rows, out / "cost.png")
    parts.append("<h2>Cost per fidelity</h2>" + embed_png(out / "cost.png", "cost per fidelity"))
    page = report_page(f"Rate surface: {run_dir.name}", "\n".join(parts), run_dir, result, cfg)
    return write_text(out / "index.html", page)
