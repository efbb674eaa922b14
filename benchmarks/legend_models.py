"""Model comparison on the real LEGEND data by leave-one-HF-run-out cross-validation.

Compares, on the same folds (each HF run held out together with every row at the same
design, e.g. its paired LF run and its HF CNP score):

- ``legend``: examples/legend/legend.yaml (rarefy's recommendation);
- ``resum``: examples/legend/resum.yaml (RESuM's three fidelities);
- variants of ``legend`` (kernel, ρ, nugget, log output) — the candidates it was chosen from;
- ``hf_only``: a single-fidelity GP on the HF runs alone (count noise + nugget);
- ``constant``: the mean of the training HF runs, σ = their standard deviation.

Prints one JSON line: per model the CV metrics and bootstrap standard errors.
Run: ``python benchmarks/legend_models.py [--restarts 3] [--quick]``
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
LEGEND = ROOT / "examples" / "legend"


def _cfg(name: str, restarts: int, **surrogate):
    from rarefy.config import config_from_dict

    raw = yaml.safe_load((LEGEND / name).read_text())
    raw["surrogate"].update(restarts=restarts, **surrogate)
    return raw


def variants(restarts: int, quick: bool) -> dict[str, dict]:
    base = _cfg("legend.yaml", restarts)
    out = {"legend": base, "resum": _cfg("resum.yaml", restarts)}
    hf_only = copy.deepcopy(base)
    hf_only["fidelities"] = [f for f in hf_only["fidelities"] if f["name"] == hf_only["target"]]
    out["hf_only"] = hf_only
    if not quick:
        kernel = "rbf" if base["surrogate"].get("kernel", "matern52") == "matern52" else "matern52"
        for label, over in ((f"legend_{kernel}", {"kernel": kernel}), ("legend_rho_linear", {"rho": "linear"}),
                            ("legend_no_nugget", {"nugget": False}), ("legend_log", {"output": "log"})):
            v = copy.deepcopy(base)
            v["surrogate"].update(over)
            out[label] = v
    return out


def constant_predictor(table, target: str, tolerance: float, seed: int):
    """LOO predictions of the training-HF mean, σ² = sample variance + the point's own noise."""
    from rarefy.diagnostics.validation import design_groups, bootstrap_metrics, metrics

    frame = table.frame
    groups = design_groups(table, target, tolerance)
    idx = np.flatnonzero(frame["fidelity"].to_numpy() == target)
    ys, mus, sds = [], [], []
    for g, i in enumerate(idx):
        keep = (frame["fidelity"].to_numpy() == target) & ~groups[g]
        train = frame["rate"].to_numpy()[keep]
        ys.append(frame["rate"].iloc[i])
        mus.append(train.mean())
        sds.append(np.sqrt(train.var(ddof=1) + frame["var"].iloc[i]))
    return metrics(ys, mus, sds), bootstrap_metrics(ys, mus, sds, seed=seed)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="only legend, resum, hf_only, constant")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)

    import rarefy
    from rarefy.config import config_from_dict
    from rarefy.jobs.fit import build_surrogate
    from rarefy.diagnostics.validation import cross_validate

    results: dict[str, dict] = {}
    sq_err: dict[str, np.ndarray] = {}
    for label, raw in variants(args.restarts, args.quick).items():
        cfg = config_from_dict(raw, base=LEGEND)
        table = rarefy.load_rate_table(cfg)
        t0 = time.perf_counter()
        cv = cross_validate(lambda: build_surrogate(cfg), table, cfg.target, seed=cfg.seed,
                            tolerance=cfg.cv_design_tolerance)
        pred = cv.predictions.sort_values(cfg.space.build().names)
        sq_err[label] = ((pred["rate"] - pred["mean"]) ** 2).to_numpy()
        results[label] = {**cv.metrics, "mse_se": cv.bootstrap["mse"]["se"],
                          "nll_se": cv.bootstrap["mean_nll"]["se"], "seconds": round(time.perf_counter() - t0, 1)}
        if label == "legend":
            m, boot = constant_predictor(table, cfg.target, cfg.cv_design_tolerance, cfg.seed)
            results["constant"] = {**m, "mse_se": boot["mse"]["se"], "nll_se": boot["mean_nll"]["se"], "seconds": 0.0}
        logging.getLogger(__name__).warning("%s: %s", label, results[label])
    # paired bootstrap: MSE(model) - MSE(hf_only) over the same held-out runs
    rng = np.random.default_rng(0)
    base = sq_err["hf_only"]
    draws = rng.integers(0, len(base), (2000, len(base)))
    for label, err in sq_err.items():
        diff = err[draws].mean(axis=1) - base[draws].mean(axis=1)
        results[label]["mse_minus_hf_only"] = float(err.mean() - base.mean())
        results[label]["mse_minus_hf_only_se"] = float(diff.std(ddof=1))
        results[label]["p_better_than_hf_only"] = float(np.mean(diff < 0))
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
