"""CATHODE vs idealized AD, supervised, CWoLa hunting and ANODE on the synthetic bump hunt.

For each seed and signal fraction f (signal / background events over the whole m range)
one data set of :class:`rarefy.anomaly.data.BumpHunt` (defaults: 3 features, m in
[2, 6], SR [3.3, 3.7)) with ``--n-background`` background events is drawn, and every
method of :func:`rarefy.anomaly.compare.run_methods` scores one labelled SR test set
(200k background, 20k signal events); SIC at ε_S = 0.2 and max SIC (ε_B ≥ 50 test
background events, i.e. ε_B ≥ 2.5e-4) per method, and the optimal SIC of the exact
likelihood ratio. With f = 0 (``--null``) CATHODE's excess test: SR data events above the
99th percentile of the held-out flow samples' scores, against Binomial(N, 1 %).

Results per (seed, f) are cached as JSON in ``--cache`` so that a run can be resumed or
split over processes (``--seeds``); the last process prints the summary.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/cathode.py --seeds 101 102 103 104 105 --null

Prints one JSON line: per f and method the mean, std and per-seed values of both SICs,
the null test per seed and pooled, the acceptance checks, sizes and wall times.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np


def one(seed: int, f: float, n_background: int, curves: bool, flow_ensemble: int) -> dict:
    import torch

    from rarefy.anomaly.cathode import FlowSettings
    from rarefy.anomaly.compare import CompareSettings, run_methods
    from rarefy.anomaly.data import BumpHunt

    torch.set_num_threads(1)
    hunt = BumpHunt()
    t0 = time.perf_counter()
    data = hunt.sample(n_background, f, np.random.default_rng([seed, 0]))
    methods = ("cathode",) if f == 0 else CompareSettings().methods
    r = run_methods(hunt, data, seed, flow=FlowSettings(ensemble=flow_ensemble),
                    settings=CompareSettings(methods=methods, curves=curves))
    r["wall_s"] = time.perf_counter() - t0
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103, 104, 105])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.001, 0.003, 0.005, 0.01])
    ap.add_argument("--n-background", type=int, default=150_000)
    ap.add_argument("--null", action="store_true", help="also f = 0: CATHODE's excess test")
    ap.add_argument("--flow-ensemble", type=int, default=5, help="sideband flows mixed (1: the previous setting)")
    ap.add_argument("--cache", type=Path, default=Path("benchmarks/.cache/cathode"))
    ap.add_argument("--curves-seed", type=int, default=None, help="keep SIC curves of this seed (for the docs plot)")
    ap.add_argument("--summary-only", action="store_true", help="only summarise what the cache holds")
    ap.add_argument("--plot", type=Path, default=None, help="write the SIC figure (PNG) here")
    ap.add_argument("--shard", default="0/1", help="I/N: run only every N-th (seed, f) job starting at I")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.cache.mkdir(parents=True, exist_ok=True)
    fractions = list(args.fractions) + ([0.0] if args.null else [])
    i_shard, n_shard = (int(v) for v in args.shard.split("/"))
    order = sorted(fractions, key=lambda f: (f != 0.005, f != 0.0, f != 0.01, f))  # acceptance cases first
    jobs = [(seed, f) for f in order for seed in args.seeds]
    for j, (seed, f) in enumerate(jobs):
        path = args.cache / f"n{args.n_background}_K{args.flow_ensemble}_s{seed}_f{f:g}.json"
        if j % n_shard != i_shard or path.exists() or args.summary_only:
            continue
        r = one(seed, f, args.n_background, curves=seed == args.curves_seed, flow_ensemble=args.flow_ensemble)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(r))
        os.replace(tmp, path)
    summary = summarise(args.cache, args.seeds, fractions, args.n_background, args.flow_ensemble)
    if args.plot is not None:
        plot(summary, args.cache, args.n_background, args.curves_seed, args.plot, args.flow_ensemble)
    print(json.dumps(summary))


def plot(summary: dict, cache: Path, n_background: int, curves_seed: int | None, path: Path, k: int) -> None:
    """Left: mean max SIC (±1 std over seeds) against f; right: SIC curves of one seed at f = 0.5 %."""
    from matplotlib.figure import Figure

    from rarefy.io import atomic_path

    fig = Figure(figsize=(11, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    fr = sorted(summary["fractions"], key=float)
    for m in ("optimal", "supervised", "idealized", "cathode", "anode", "cwola"):
        xs = [100 * float(f) for f in fr if m in summary["fractions"][f]]
        ys = [summary["fractions"][f][m]["max_sic"]["mean"] for f in fr if m in summary["fractions"][f]]
        es = [summary["fractions"][f][m]["max_sic"]["std"] for f in fr if m in summary["fractions"][f]]
        ax1.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=m, ls="--" if m == "optimal" else "-")
    ax1.set_xscale("log")
    ax1.set_xticks([100 * float(f) for f in fr], [f"{100 * float(f):g}" for f in fr])
    ax1.set_xlabel("signal fraction S/B, whole m range (%)")
    ax1.set_ylabel("max SIC = ε_S/√ε_B (ε_B ≥ 2.5e-4)")
    ax1.set_title(f"mean ± std over seeds {summary['seeds']}", fontsize=9)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    p = cache / f"n{n_background}_K{k}_s{curves_seed}_f0.005.json"
    if curves_seed is not None and p.exists():
        r = json.loads(p.read_text())
        for m in ("optimal", "supervised", "idealized", "cathode", "anode", "cwola"):
            if m in r and "curve" in r[m]:
                ax2.plot(r[m]["curve"]["eps_s"], r[m]["curve"]["sic"], label=m, ls="--" if m == "optimal" else "-")
        ax2.set_title(f"SIC curves, seed {curves_seed}, S/B = 0.5 %", fontsize=9)
    ax2.set_xlabel("signal efficiency ε_S (SR test events)")
    ax2.set_ylabel("SIC = ε_S/√ε_B")
    ax2.set_xlim(0, 1)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def summarise(cache: Path, seeds: list[int], fractions: list[float], n_background: int, k: int) -> dict:
    from scipy.stats import binom

    from rarefy.anomaly.compare import METHODS

    out: dict = {"benchmark": "cathode", "n_background": n_background, "seeds": seeds,
                 "sizes": {"sr_test_background": 200_000, "sr_test_signal": 20_000, "max_sic_min_background": 50,
                           "flow": f"{k} x MAF 3x(32,32) (mixture), <=30 epochs, cosine lr 1e-3, patience 10",
                           "classifier": "MLP (64,64), 8 epochs, 5 folds", "oversample": 4},
                 "fractions": {}, "null": None, "acceptance": {}}
    walls = []
    for f in fractions:
        rows = {}
        for seed in seeds:
            p = cache / f"n{n_background}_K{k}_s{seed}_f{f:g}.json"
            if p.exists():
                rows[seed] = json.loads(p.read_text())
        if not rows:
            continue
        walls += [r["wall_s"] for r in rows.values()]
        if f == 0:
            nulls = {s: r["null"] for s, r in rows.items()}
            above = sum(n["above"] for n in nulls.values())
            n = sum(n["events"] for n in nulls.values())
            out["null"] = {"per_seed": nulls, "pooled": {"events": n, "above": above, "expected": 0.01 * n,
                                                         "p_value": float(binom.sf(above - 1, n, 0.01))}}
            continue
        entry: dict = {"seeds_done": sorted(rows), "sr": {s: r["sr"] for s, r in rows.items()}}
        for m in ("optimal", *METHODS):
            vals = {k: [r[m][k] for r in rows.values() if m in r] for k in ("sic_at_0.2", "max_sic")}
            if not vals["max_sic"]:
                continue
            entry[m] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else math.nan,
                            "per_seed": [round(x, 3) for x in v]} for k, v in vals.items()}
            entry[m]["seconds_mean"] = float(np.mean([r[m].get("seconds", 0.0) for r in rows.values() if m in r]))
        entry["null_excess_with_signal"] = {s: r.get("null") for s, r in rows.items()}
        out["fractions"][f"{f:g}"] = entry
        if f >= 0.005 and "cathode" in entry:
            c = entry["cathode"]["max_sic"]["mean"]
            out["acceptance"][f"{f:g}"] = {
                "cathode_over_idealized_max_sic": c / entry["idealized"]["max_sic"]["mean"],
                "above_cwola": c > entry["cwola"]["max_sic"]["mean"],
                "above_anode": c > entry["anode"]["max_sic"]["mean"]}
    if out["null"] is not None:
        out["acceptance"]["null_no_excess_p>0.05"] = out["null"]["pooled"]["p_value"] > 0.05
    out["wall_s_per_dataset_mean"] = float(np.mean(walls)) if walls else None
    return out


if __name__ == "__main__":
    main()
