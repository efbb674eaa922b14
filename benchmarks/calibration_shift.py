"""Coverage of the AR1 GP's σ calibration settings under plain and shifted cross-validation.

    python benchmarks/calibration_shift.py --case legend     # examples/legend/legend.yaml, its 10 HF runs
    python benchmarks/calibration_shift.py --case bbh        # examples/bbh, the campaign-1 training runs
    python benchmarks/calibration_shift.py --case bbh-pce    # the same runs, infer.yaml's PCE (as fitted)

Only training data: LEGEND's 10 HF runs (with the LF runs), BBH's training split
(``split = train``: campaign 1 and the LF runs of campaign 2; the 20 held-out HF runs are
not read). Three outer cross-validations over the target (HF) runs, each run held out
with every row at its design (as ``rarefy fit --cv``):

- ``loo``: leave one HF run out;
- ``loco``: leave one cluster out, the HF designs split by k-means on the unit cube
  (:func:`rarefy.surrogate.ar1.design_clusters`) into 2, 3, 4 and 5 clusters in turn (every
  run is predicted once per partition, 4 times in all): the held-out runs sit outside the
  remaining runs' cloud, as a shifted test set does;
- ``extreme``: for each input and each side, the ⌈n/5⌉ HF runs with the highest (lowest)
  value held out together: extrapolation along one input, e.g. to thicker panels.

Each outer fold fits the surrogate once (hyperparameters by marginal likelihood on the
fold's training rows); every calibration setting's factor c on the target's latent σ is
then computed on that same fit and the fold's training rows only (``none``: 1; ``loo``;
``loco{K}_b{B}``: ``calibrate: loco`` with ``loco_clusters: K``, ``loco_bound: B``, whose
inner refits see only the fold's training rows), the mean being the same for all, and
scored on the fold's held-out runs: coverage at 1/2/3σ (σ² = latent variance × c² + nugget + the run's own noise
variance) and MSE. ``shift`` pools the two shifted schemes (``loco`` and ``extreme``) and
``chosen`` is the setting whose pooled coverage is nearest nominal (:func:`choose`).

The factors above are each fold's own, from fewer runs than the shipped model has (for
``loo`` they run larger). ``shift_at_full_factor`` scores the factor the model fitted on
*all* training runs actually uses (``factor_all_runs``) on the same pooled shifted
residuals: the coverage to expect of the shipped model under a shift like the folds'.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LOCO_CLUSTERS = (3, 5)
LOCO_BOUNDS = (0.0, 3.84)
SETTINGS = ["none", "loo"] + [f"loco{k}_b{b:g}" for k in LOCO_CLUSTERS for b in LOCO_BOUNDS]


def legend_case(restarts: int):
    import rarefy
    from rarefy.config import load_config
    from rarefy.surrogate.factory import build_surrogate

    cfg = load_config(ROOT / "examples" / "legend" / "legend.yaml")
    table = rarefy.load_rate_table(cfg)
    sc = cfg.surrogate.model_copy(update={"restarts": restarts, "calibrate": "none"})
    space = cfg.space.build()
    fids = [f.name for f in cfg.fidelities]
    return table, cfg.target, lambda: build_surrogate(sc, space, fids, seed=cfg.seed), cfg.cv_design_tolerance


def bbh_pce_case(restarts: int):
    """The BBH training runs with examples/bbh/infer.yaml's surrogate (Bayesian MF PCE, output: poisson)."""
    from rarefy.config import load_config
    from rarefy.surrogate.factory import build_surrogate

    table, target, _, tol = bbh_case(restarts)
    cfg = load_config(ROOT / "examples" / "bbh" / "infer.yaml")
    return table, target, lambda: build_surrogate(cfg.surrogate, table.space, ["lf", "hf"], seed=cfg.seed), tol


def bbh_case(restarts: int):
    from rarefy.config import load_config
    from rarefy.data.rates import RateTable
    from rarefy.surrogate import AR1Settings, AR1Surrogate

    ex = ROOT / "examples" / "bbh"
    cfg = load_config(ex / "infer.yaml")
    space = cfg.space.build()
    base = pd.read_parquet(ex / "data" / "rates.parquet").assign(split="train")
    extra = pd.read_parquet(ex / "data" / "rates_extra.parquet")
    frame = pd.concat([base, extra], ignore_index=True)
    frame = frame[frame["split"] == "train"]          # the held-out HF runs are never read
    cols = [*space.names, "fidelity", "rate", "var", "k", "n", "run_id"]
    table = RateTable(frame[cols].reset_index(drop=True), space)
    settings = AR1Settings(restarts=restarts, calibrate="none")   # bbh_coverage.py's ar1_mf
    return table, "hf", lambda: AR1Surrogate(space, ["lf", "hf"], settings, seed=cfg.seed), 0.01


def outer_folds(u: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Folds (indices into the target runs) of the three outer cross-validations."""
    from rarefy.surrogate.ar1 import design_clusters

    n, d = u.shape
    folds: dict[str, list[np.ndarray]] = {"loo": [np.array([i]) for i in range(n)], "loco": [], "extreme": []}
    for k in (2, 3, 4, 5):
        lab = design_clusters(u, k)
        folds["loco"] += [np.flatnonzero(lab == c) for c in np.unique(lab)]
    m = math.ceil(n / 5)
    for j in range(d):
        order = np.argsort(u[:, j], kind="stable")
        folds["extreme"] += [order[-m:], order[:m]]
    return folds


def fold_factors(sur, train, target: str) -> dict[str, float]:
    """The target's σ factor c under every setting, for a surrogate fitted (``calibrate: none``) on ``train``.

    ``loco{K}_b{B}``: ``calibrate: loco, loco_clusters: K, loco_bound: B``, i.e.
    max(c_loo, block_scale(loco_blocks, B)); the K refits are shared by both bounds.
    """
    from rarefy.surrogate.ar1 import block_scale

    out = {"none": 1.0}
    sur.recalibrate("loo")
    c_loo = float(sur.hyperparameters()[target]["calibration"])
    out["loo"] = c_loo
    for k in LOCO_CLUSTERS:
        sur.settings = replace(sur.settings, loco_clusters=k)
        blocks = sur.loco_blocks(train)
        for b in LOCO_BOUNDS:
            out[f"loco{k}_b{b:g}"] = max(c_loo, block_scale(blocks, bound=b))
    sur.recalibrate("none")
    return out


NOMINAL = {1: 0.6827, 2: 0.9545, 3: 0.9973}


def choose(out: dict) -> dict:
    """Pool the shifted schemes (``loco`` and ``extreme``) and pick the setting whose coverage is nearest nominal.

    Distance D = Σ_k |coverage_kσ − nominal_k| over k = 1, 2, 3 of the pooled predictions;
    ties (within 1e-9) go to the lower mean NLL. Adds ``shift`` (pooled metrics) and
    ``chosen`` to ``out``.
    """
    labels = [lab for lab in out["schemes"]["loco"] if lab != "folds"]
    pooled = {}
    for lab in labels:
        parts = [out["schemes"][sc][lab] for sc in ("loco", "extreme")]
        n = sum(p["n"] for p in parts)
        agg = {f"coverage_{k}sigma": sum(p["n"] * p[f"coverage_{k}sigma"] for p in parts) / n for k in (1, 2, 3)}
        agg["mse"] = sum(p["n"] * p["mse"] for p in parts) / n
        agg["mean_nll"] = sum(p["n"] * p["mean_nll"] for p in parts) / n
        agg["distance"] = sum(abs(agg[f"coverage_{k}sigma"] - NOMINAL[k]) for k in (1, 2, 3))
        agg["n"] = n
        pooled[lab] = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in agg.items()}
    out["shift"] = pooled
    out["chosen"] = min(labels, key=lambda lab: (round(pooled[lab]["distance"], 9), pooled[lab]["mean_nll"]))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=("legend", "bbh", "bbh-pce"), default="legend")
    ap.add_argument("--restarts", type=int, default=3)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    from rarefy.diagnostics.validation import metrics
    from rarefy.threads import torch_threads

    t0 = time.perf_counter()
    case = {"legend": legend_case, "bbh": bbh_case, "bbh-pce": bbh_pce_case}[args.case]
    table, target, make, tol = case(args.restarts)
    settings = SETTINGS if args.case != "bbh-pce" else ["as_fitted"]   # the PCE has no σ calibration
    frame = table.frame
    tidx = np.flatnonzero(frame["fidelity"].to_numpy() == target)
    u = np.asarray(table.space.to_unit(frame[table.space.names].to_numpy(float)))[tidx]
    allu = np.asarray(table.space.to_unit(frame[table.space.names].to_numpy(float)))
    runs = frame["run_id"].to_numpy() if "run_id" in frame.columns else np.arange(len(frame)).astype(str)
    # a held-out run takes every row of the same run or within tol of its design (as ``rarefy fit --cv``)
    groups = [np.all(np.abs(allu - allu[i]) <= tol, axis=1) | (runs == runs[i]) for i in tidx]
    out: dict = {"case": args.case, "n_target": len(tidx), "restarts": args.restarts, "schemes": {}}
    factors: dict[str, list[float]] = {lab: [] for lab in settings}
    parts: dict[str, list[np.ndarray]] = {"y": [], "m": [], "s": [], "n": []}   # shifted folds, latent σ
    for scheme, folds in outer_folds(u).items():
        rows = {lab: {"y": [], "m": [], "s": []} for lab in settings}
        for fold in folds:
            hold = np.zeros(len(table), dtype=bool)
            for g in fold:
                hold |= groups[g]
            train = table.subset(mask=~hold)
            sur = make()
            with torch_threads(1):
                sur.fit(train)
                c = fold_factors(sur, train, target) if settings is SETTINGS else {"as_fitted": 1.0}
            test = frame.iloc[tidx[fold]]
            if settings is not SETTINGS:
                m, s = sur.predict(test[table.space.names], target, observed=True, noise_var=test["var"].to_numpy())
                rows["as_fitted"]["y"] += test["rate"].tolist()
                rows["as_fitted"]["m"] += m.detach().numpy().tolist()
                rows["as_fitted"]["s"] += s.detach().numpy().tolist()
                factors["as_fitted"].append(1.0)
                continue
            m, s = sur.predict_numpy(test[table.space.names].to_numpy(float), target)   # latent σ, calibrate: none
            if scheme != "loo":
                parts["y"].append(test["rate"].to_numpy(float))
                parts["m"].append(np.asarray(m, float))
                parts["s"].append(np.asarray(s, float))
                parts["n"].append(sur.noise_variance(target) + test["var"].to_numpy(float))
            for lab in settings:
                r = rows[lab]
                r["y"] += test["rate"].tolist()
                r["m"] += m.tolist()
                r["s"] += np.sqrt((c[lab] * s) ** 2 + sur.noise_variance(target) + test["var"].to_numpy()).tolist()
                factors[lab].append(c[lab])
        out["schemes"][scheme] = {lab: {kk: round(v, 6) if isinstance(v, float) else v
                                        for kk, v in metrics(r["y"], r["m"], r["s"]).items()}
                                  for lab, r in rows.items()}
        out["schemes"][scheme]["folds"] = len(folds)
    out["median_factor"] = {lab: round(float(np.median(v)), 3) for lab, v in factors.items()}
    if settings is SETTINGS:
        full = make()
        with torch_threads(1):
            full.fit(table)
            out["factor_all_runs"] = {lab: round(v, 3) for lab, v in fold_factors(full, table, target).items()}
        y, m, s, n = (np.concatenate(parts[k]) for k in ("y", "m", "s", "n"))
        out["shift_at_full_factor"] = {}
        for lab, c in out["factor_all_runs"].items():
            met = metrics(y, m, np.sqrt((c * s) ** 2 + n))
            out["shift_at_full_factor"][lab] = {k: round(v, 4) if isinstance(v, float) else v for k, v in met.items()}
    choose(out)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
