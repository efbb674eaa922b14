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

Run: ``python benchmarks/denoise_optimum_bound.py [--designs 600] [--seed 0]`` (~4 min).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.stats import spearmanr

import rarefy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--designs", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lf-events", type=int, default=500_000, help="events of a raw LF run (run.yaml's)")
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
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
