"""What a perfect denoiser could give design optimisation on the moderator. Prints ONE JSON line.

A denoiser at its best returns the *exact* LF rate of every design. This script asks how
much the exact LF rate says about where the HF optimum is, on ``--designs`` random
feasible designs (exact rates of both fidelities from ``expected_rate``):

* ``pearson`` / ``spearman``: correlation of the exact LF and HF rates over all designs;
* ``lf_argmin_hf_percentile``: the HF percentile of the design with the lowest exact LF rate
  (0 = the best HF design of the sample);
* ``top5_lf_best_hf_percentile``: the best HF percentile among the 5% of designs with the
  lowest LF rate, and ``top5_overlap``: the share of the HF top 5% that is also in the LF top 5%;
* ``spearman_within_top10_hf``: the rank correlation of LF and HF among the 10% best HF designs
  (how well LF orders the designs the optimiser has to choose between);
* ``lf_rel_sigma_raw``: the relative 1σ of a raw LF run of ``--lf-events`` events at the
  median LF rate, what denoising removes; ``hf_discrepancy_rel``: the RMS, over the 10% best
  HF designs, of the HF rate minus the best affine map of the LF rate, relative to their
  mean HF rate — what only HF runs can tell.

With ``--run-dir RUN_DIR`` (a run directory whose LF runs a denoiser scored, e.g. of
``rarefy run examples/moderator/run-surface.yaml``) it also compares the *actual* denoised
rates (``denoise/rates_denoised.parquet``) with the exact rates at those runs' designs:
``run_pearson_lf`` (denoised vs exact LF), ``run_spearman_lf_top10`` (the same, ranks, among
the 10% of runs with the lowest exact HF rate), ``run_spearman_raw_top10`` (raw k/n there) and
``run_lf_argmin_hf_percentile`` (the HF percentile, among the runs, of the run with the lowest
denoised rate).

Run: ``python benchmarks/denoise_optimum_bound.py [--designs 600] [--seed 0] [--run-dir DIR]`` (~4 min).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

import rarefy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--designs", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lf-events", type=int, default=500_000, help="events of a raw LF run (run.yaml's)")
    ap.add_argument("--run-dir", type=Path, default=None, help="also score this run directory's denoised LF rates")
    args = ap.parse_args()
    t0 = time.perf_counter()
    sim = rarefy.simulators.get("moderator")
    designs = sim.space.sample(args.designs, method="random", seed=args.seed).to_dict(orient="records")
    lf = np.array([sim.expected_rate(d, "lf") for d in designs])
    hf = np.array([sim.expected_rate(d, "hf") for d in designs])
    hf_rank = np.argsort(np.argsort(hf)) / (len(hf) - 1) * 100.0     # HF percentile of each design
    n5, n10 = max(len(hf) // 20, 1), max(len(hf) // 10, 3)
    top_lf, top_hf = np.argsort(lf)[:n5], np.argsort(hf)[:n5]
    best = np.argsort(hf)[:n10]
    a, b = np.polyfit(lf[best], hf[best], 1)
    resid = hf[best] - (a * lf[best] + b)
    med_lf = float(np.median(lf))
    out = {
        "designs": args.designs, "seed": args.seed,
        "pearson": float(np.corrcoef(lf, hf)[0, 1]),
        "spearman": float(spearmanr(lf, hf).statistic),
        "lf_argmin_hf_percentile": float(hf_rank[np.argmin(lf)]),
        "top5_lf_best_hf_percentile": float(hf_rank[top_lf].min()),
        "top5_overlap": float(len(set(top_lf) & set(top_hf)) / n5),
        "spearman_within_top10_hf": float(spearmanr(lf[best], hf[best]).statistic),
        "lf_rel_sigma_raw": float(1.0 / np.sqrt(med_lf * args.lf_events)),
        "hf_discrepancy_rel": float(np.sqrt(np.mean(resid**2)) / np.mean(hf[best])),
        "hf_top10_rel_spread": float((hf[best].max() - hf[best].min()) / np.mean(hf[best])),
    }
    if args.run_dir is not None:
        names = sim.space.names
        den = pd.read_parquet(args.run_dir / "denoise" / "rates_denoised.parquet")
        raw = pd.read_parquet(args.run_dir / "rates.parquet").query("fidelity == 'lf'").set_index("run_id")
        x = den[names].to_dict(orient="records")
        lf_x = np.array([sim.expected_rate(d, "lf") for d in x])
        hf_x = np.array([sim.expected_rate(d, "hf") for d in x])
        d = den["rate"].to_numpy(float)
        k_n = raw.loc[den["run_id"], "rate"].to_numpy(float)
        top = np.argsort(hf_x)[: max(len(hf_x) // 10, 3)]
        rank = np.argsort(np.argsort(hf_x)) / (len(hf_x) - 1) * 100.0
        out.update(run_runs=len(d), run_pearson_lf=float(np.corrcoef(d, lf_x)[0, 1]),
                   run_pearson_raw=float(np.corrcoef(k_n, lf_x)[0, 1]),
                   run_spearman_lf_top10=float(spearmanr(d[top], lf_x[top]).statistic),
                   run_spearman_raw_top10=float(spearmanr(k_n[top], lf_x[top]).statistic),
                   run_spearman_exact_lf_hf_top10=float(spearmanr(lf_x[top], hf_x[top]).statistic),
                   run_lf_argmin_hf_percentile=float(rank[np.argmin(d)]),
                   run_exact_lf_argmin_hf_percentile=float(rank[np.argmin(lf_x)]))
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
