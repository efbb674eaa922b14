"""A small finished closed-loop run directory, made by hand in about a second (no simulator, one quick fit).

It holds what :func:`rarefy.report.loop_report.loop_report` reads: ``config.yaml`` (parameters
with units, a ``value_unit``), ``rates.parquet`` (initial design, loop and verification runs),
a fitted ``surrogate/``, ``loop/iter-001.json``, ``loop/cv_predictions.csv`` and ``result.json``
with its provenance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from rarefy.config import config_from_dict
from rarefy.data.rates import RateTable
from rarefy.data.rundir import LOOP_DIR, RESULT, SURROGATE_DIR, write_config, write_rates
from rarefy.io import write_json
from rarefy.provenance import provenance
from rarefy.surrogate.factory import build_surrogate

UNITS = {"radius": "cm", "npanels": "", "angle": "deg"}
VALUE_UNIT = "1/neutron"
SEED = 5

RAW = {
    "name": "toy-loop", "seed": SEED,
    "space": {"parameters": {"radius": {"low": 10, "high": 50, "unit": "cm"},
                             "npanels": {"low": 1, "high": 9, "integer": True},
                             "angle": {"low": 0, "high": 90, "unit": "deg"}},
              "constraints": ["npanels * 5 <= radius + 20"]},
    "fidelities": [{"name": "lf", "value": "rate", "value_unit": VALUE_UNIT, "filter": {"fidelity": "lf"}},
                   {"name": "hf", "value": "rate", "value_unit": VALUE_UNIT, "filter": {"fidelity": "hf"}}],
    "target": "hf",
    "surrogate": {"kind": "ar1", "restarts": 1, "max_iter": 30},
}


def _rate(x: np.ndarray, fidelity: str) -> np.ndarray:
    r, n, a = x[:, 0], x[:, 1], x[:, 2]
    base = 2e-4 * (1 + ((r - 32) / 20) ** 2) * (1 + 0.05 * n) * (1 + 0.3 * np.cos(np.radians(a)))
    return base if fidelity == "lf" else 0.8 * base + 2e-5


def make_run_dir(run_dir: Path) -> Path:
    """Write the run directory (see the module docstring) and return it."""
    cfg = config_from_dict(RAW)
    space = cfg.space.build()
    write_config(run_dir, cfg)
    events = 20_000
    rows = []
    designs = space.sample(14, seed=1).to_numpy()
    plan = [(f"run-{i:05d}", "lf", designs[i]) for i in range(10)] + \
           [(f"run-{10 + i:05d}", "hf", designs[i]) for i in range(4)] + \
           [("loop-001-00", "lf", designs[10]), ("loop-001-01", "hf", designs[11])]
    theta_star = {"radius": 31.7, "npanels": 3.0, "angle": 84.2}
    star = np.array([[theta_star[n] for n in space.names]])
    plan.append(("verify-001-00", "hf", star[0]))
    for run_id, fid, x in plan:
        rate = float(_rate(x[None, :], fid)[0])
        k = int(round(rate * events))
        rows.append({**dict(zip(space.names, map(float, x))), "fidelity": fid, "rate": k / events,
                     "var": max(k, 1) / events**2, "k": k, "n": events, "run_id": run_id,
                     "cost_cpu_h": events * (3e-6 if fid == "lf" else 1.5e-4)})
    frame = pd.DataFrame(rows)
    write_rates(run_dir, frame, space)
    fit_rows = frame[~frame["run_id"].str.startswith("verify-")].reset_index(drop=True)
    sur = build_surrogate(cfg.surrogate, space, cfg.fidelity_names, seed=SEED).fit(RateTable(fit_rows, space))
    sur.save(run_dir / SURROGATE_DIR)
    record = {"iteration": 1, "spent_cpu_h": 12.6, "rows": 14, "rows_per_fidelity": {"lf": 10, "hf": 4},
              "predicted_optimum": {"theta": theta_star, "rate": 1.9e-4, "sigma": 2e-5},
              "proposals": [{"theta": dict(zip(space.names, map(float, designs[10]))), "fidelity": "lf",
                             "events": events, "cost_cpu_h": 0.06, "value": 3.1e-3},
                            {"theta": dict(zip(space.names, map(float, designs[11]))), "fidelity": "hf",
                             "events": events, "cost_cpu_h": 3.0, "value": 1.2e-3}],
              "seconds": 0.5}
    write_json(run_dir / LOOP_DIR / "iter-001.json", record)
    hf = fit_rows[fit_rows["fidelity"] == "hf"]
    rng = np.random.default_rng(0)
    observed = hf["rate"].to_numpy()
    cv = pd.DataFrame({"rate": observed, "mean": observed * (1 + rng.normal(0, 0.05, len(hf))), "sigma": 2e-5})
    (run_dir / LOOP_DIR).mkdir(exist_ok=True)
    cv.to_csv(run_dir / LOOP_DIR / "cv_predictions.csv", index=False)
    mean, sd = sur.predict(star, "hf")
    verified = frame[frame["run_id"] == "verify-001-00"].iloc[0]
    result = {
        "optimum": space.round_theta(theta_star), "target": "hf", "objective": "mean",
        "predicted_rate": float(mean[0]), "predicted_sigma": float(sd[0]),
        "verified_rate": float(verified["rate"]), "verified_sigma": float(np.sqrt(verified["k"])) / events,
        "verified_k": int(verified["k"]), "verified_n": events,
        "baseline_rate": 5e-4, "baseline_sigma": 0.0, "baseline_source": "config rate",
        "reduction": 1 - float(verified["rate"]) / 5e-4, "reduction_sigma": 0.02,
        "predicted_reduction": 0.6, "predicted_reduction_sigma": 0.05,
        "cost_cpu_h": {"lf": 0.66, "hf": 18.0, "total": 18.66}, "runs": {"lf": 11, "hf": 6}, "iterations": 1,
        "cv": {"n": 5, "mse": 1.2e-10, "coverage_1sigma": 0.6, "coverage_2sigma": 1.0},
        "provenance": provenance(cfg),
    }
    (run_dir / RESULT).write_text(json.dumps(result, indent=2))
    return run_dir
