"""Benchmark: rarefy's AR1 GP against emukit's linear multi-fidelity model (GPy).

Both fit RESuM's 3-fidelity LEGEND model (examples/legend/resum.yaml: LF CNP score ->
HF CNP score -> HF Ge-77 rate) on the same data, the same cross-validation folds (over
the HF runs, each held out with its paired rows) and the same number of optimisation
restarts, in the same process. emukit gets the same unit-cube inputs, the same
per-fidelity standardised outputs and the same kernel family (ARD Matérn-5/2); it
learns one Gaussian noise per fidelity (it cannot take per-point noise), rarefy uses
the per-point noise of the config.

Prints one JSON line: rarefy_fit_s, emukit_fit_s (mean seconds per fit),
rarefy_predict_s, emukit_predict_s (seconds to predict 1,000 designs), speedup
(emukit_fit_s / rarefy_fit_s), rarefy_cv_mse, emukit_cv_mse, and the paired bootstrap of
their difference over the held-out runs (mse_diff = rarefy − emukit, mse_diff_se,
p_rarefy_lower).

Both run single-threaded (BLAS via OMP/OPENBLAS/MKL_NUM_THREADS=1 unless already set, torch
via rarefy's own one-thread fits), so the ratio compares the algorithms, not thread counts on
a shared machine.

Run: ``pip install -e ".[bench]" && python benchmarks/mf_vs_emukit.py [--restarts 5] [--folds 10]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy/GPy load BLAS

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def emukit_fit_predict(train, test_x, probe_x, fidelities, space, restarts, seed):
    """Fit emukit's GPyLinearMultiFidelityModel.

    Returns the target fidelity's (mean, std) at ``test_x``, the fit time and the time to
    predict at ``probe_x`` (s).
    """
    from rarefy.optional import require

    GPy = require("GPy")
    require("emukit")  # one line naming the extra when the bench extra is missing
    from emukit.model_wrappers.gpy_model_wrappers import GPyMultiOutputWrapper
    from emukit.multi_fidelity.convert_lists_to_array import convert_x_list_to_array, convert_xy_lists_to_arrays
    from emukit.multi_fidelity.kernels import LinearMultiFidelityKernel
    from emukit.multi_fidelity.models import GPyLinearMultiFidelityModel

    frame = train.frame
    xs, ys, stats = [], [], []
    for f in fidelities:
        sub = frame[frame["fidelity"] == f]
        y = sub["rate"].to_numpy(float)
        m, s = y.mean(), (y.std(ddof=1) if len(y) > 1 else 1.0)
        stats.append((m, s))
        xs.append(space.to_unit(sub[space.names].to_numpy(float)))
        ys.append(((y - m) / s)[:, None])
    X, Y = convert_xy_lists_to_arrays(xs, ys)
    d = space.dim
    kernels = [GPy.kern.Matern52(d, ARD=True) for _ in fidelities]
    kernel = LinearMultiFidelityKernel(kernels)
    np.random.seed(seed)
    model = GPyLinearMultiFidelityModel(X, Y, kernel, n_fidelities=len(fidelities))
    wrapper = GPyMultiOutputWrapper(model, len(fidelities), n_optimization_restarts=restarts, verbose_optimization=False)
    t0 = time.perf_counter()
    wrapper.optimize()
    fit_s = time.perf_counter() - t0
    def at_target(x):
        xt = convert_x_list_to_array([space.to_unit(x)] * len(fidelities))
        return xt[xt[:, -1] == len(fidelities) - 1]

    mean, var = wrapper.predict(at_target(test_x))
    t0 = time.perf_counter()
    wrapper.predict(at_target(probe_x))
    pred_s = time.perf_counter() - t0
    m, s = stats[-1]
    # observed variance: emukit's predict includes the target fidelity's learned noise
    return mean[:, 0] * s + m, np.sqrt(var[:, 0]) * s, fit_s, pred_s


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "examples/legend/resum.yaml"))
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--folds", type=int, default=10)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)

    import rarefy
    from rarefy.jobs.fit import build_surrogate
    from rarefy.diagnostics.validation import design_groups, metrics

    cfg = rarefy.load_config(args.config)
    cfg.surrogate.restarts = args.restarts
    table = rarefy.load_rate_table(cfg)
    space = cfg.space.build()
    target = cfg.target
    groups = design_groups(table, target, cfg.cv_design_tolerance)
    target_idx = np.flatnonzero(table.frame["fidelity"].to_numpy() == target)
    folds = np.array_split(np.random.default_rng(cfg.seed).permutation(len(groups)), min(args.folds, len(groups)))
    probe = space.sample(1000, method="sobol", seed=1).to_numpy(float)

    res = {k: [] for k in ("r_fit", "e_fit", "r_pred", "e_pred")}
    y_all, r_mu, r_sd, e_mu, e_sd = [], [], [], [], []
    for fold in folds:
        hold = np.zeros(len(table), dtype=bool)
        for g in fold:
            hold |= groups[g]
        train = table.subset(mask=~hold)
        test = table.frame.iloc[target_idx[fold]]
        tx = test[space.names].to_numpy(float)
        y_all.append(test["rate"].to_numpy(float))

        sur = build_surrogate(cfg)
        t0 = time.perf_counter()
        sur.fit(train)
        res["r_fit"].append(time.perf_counter() - t0)
        mu, sd = sur.predict(tx, target, observed=True)
        r_mu.append(mu.numpy())
        r_sd.append(sd.numpy())
        t0 = time.perf_counter()
        sur.predict(probe, target)
        res["r_pred"].append(time.perf_counter() - t0)

        mu, sd, fit_s, pred_s = emukit_fit_predict(train, tx, probe, cfg.fidelity_names, space, args.restarts, cfg.seed)
        e_mu.append(mu)
        e_sd.append(sd)
        res["e_fit"].append(fit_s)
        res["e_pred"].append(pred_s)

    y = np.concatenate(y_all)
    r_m = metrics(y, np.concatenate(r_mu), np.concatenate(r_sd))
    e_m = metrics(y, np.concatenate(e_mu), np.concatenate(e_sd))
    # paired bootstrap over the held-out runs: is the MSE difference distinguishable from 0?
    diff = (np.concatenate(r_mu) - y) ** 2 - (np.concatenate(e_mu) - y) ** 2
    draws = np.random.default_rng(0).integers(0, len(diff), (4000, len(diff)))
    boot = diff[draws].mean(axis=1)
    out = {
        "rarefy_fit_s": round(float(np.mean(res["r_fit"])), 4),
        "emukit_fit_s": round(float(np.mean(res["e_fit"])), 4),
        "rarefy_predict_s": round(float(np.mean(res["r_pred"])), 5),
        "emukit_predict_s": round(float(np.mean(res["e_pred"])), 5),
        "speedup": round(float(np.mean(res["e_fit"]) / np.mean(res["r_fit"])), 2),
        "rarefy_cv_mse": r_m["mse"],
        "emukit_cv_mse": e_m["mse"],
        "mse_diff": float(diff.mean()),
        "mse_diff_se": float(boot.std(ddof=1)),
        "p_rarefy_lower": float(np.mean(boot < 0)),
        "rarefy_cv_coverage_2sigma": r_m["coverage_2sigma"],
        "emukit_cv_coverage_2sigma": e_m["coverage_2sigma"],
        "restarts": args.restarts,
        "folds": len(folds),
        "n_train_rows": len(table),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
