"""Leave-one-HF-run-out comparison on examples/bbh: Bayesian MF PCE, AR1 GP, HF-only GP, LF-only GP.

    python benchmarks/bbh_models.py        # prints one JSON line: 1/2/3σ coverage and MSE per model

The PCE is the one examples/bbh/infer.yaml configures (count mode, degree chosen by CV).
The held-out table in docs/bbh_coverage.md comes from benchmarks/bbh_coverage.py; this
script is its leave-one-out complement on all HF runs of the example's data.

Each HF run is held out (with any run at the same design); the model is fitted on the
rest and predicts the held-out HF rate; σ = predictive std (with nugget) + the run's own
count noise. LF-only: a GP on the LF runs alone, its LF prediction scored against HF.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from rarefy.config import load_config
from rarefy.data.mapping import load_rate_table
from rarefy.surrogate import AR1Settings, AR1Surrogate
from rarefy.jobs.fit import build_surrogate
from rarefy.diagnostics.validation import cross_validate, metrics

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "bbh" / "infer.yaml"


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(CONFIG)
    space, table = cfg.space.build(), load_rate_table(cfg)
    out: dict[str, dict[str, float]] = {}
    makers = {
        "pce_mf": lambda: build_surrogate(cfg),
        "ar1_mf": lambda: AR1Surrogate(space, ["lf", "hf"], AR1Settings(restarts=3), seed=cfg.seed),
        "gp_hf_only": lambda: AR1Surrogate(space, ["hf"], AR1Settings(restarts=3), seed=cfg.seed),
    }
    for name, make in makers.items():
        cv = cross_validate(make, table, "hf", k=None, seed=cfg.seed, tolerance=cfg.cv_design_tolerance)
        out[name] = cv.metrics
    lf = AR1Surrogate(space, ["lf"], AR1Settings(restarts=3), seed=cfg.seed).fit(table.subset("lf"))
    hf = table.subset("hf").frame
    m, s = lf.predict(hf[space.names], "lf", observed=True, noise_var=hf["var"].to_numpy())
    out["gp_lf_only"] = metrics(hf["rate"], m.numpy(), s.numpy())
    print(json.dumps({"n_lf": int((table.frame.fidelity == "lf").sum()), "n_hf": len(hf), "models": out}))


if __name__ == "__main__":
    main()
