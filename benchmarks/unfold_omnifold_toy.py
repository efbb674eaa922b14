"""OmniFold on the Gaussian toy: moments, per-bin coverage, Wasserstein distance and time per pseudo-experiment.

For each seed, :meth:`rarefy.unfold.toy.GaussianToy.problem` (``--n-sim`` simulated,
``--n-data`` measured events; truth N(1.0, 1.2), prior N(0.5, 1.0)) is unfolded by
:class:`rarefy.unfold.omnifold.OmniFold` with its defaults, on one torch thread. Per seed:
relative errors of the unfolded mean and width (:func:`rarefy.unfold.metrics.moment_errors`),
per-bin 1σ coverage and χ²/ndf against the exact truth probabilities on the toy's default
edges (20 bins over μ ± 3σ), the per-bin pulls, the Wasserstein-1 distance to the measured
events' hidden x weighted by 1/ε(x) (those events passed the detector, so unweighted they
follow ε·p_true, not p_true), wall and CPU time. Pooled: coverage over all bins of all
seeds, the largest moment errors, and the acceptance checks (every |relative error| ≤ 1 %,
pooled coverage in [0.60, 0.76]).

Per-seed results are cached as JSON in ``--cache`` so that a run can be split over
processes; the summary covers every seed given.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/unfold_omnifold_toy.py --seeds $(seq 1001 1020)

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np


def one(seed: int, n_sim: int, n_data: int) -> dict:
    import torch

    from rarefy.unfold import metrics
    from rarefy.unfold.omnifold import OmniFold
    from rarefy.unfold.toy import GaussianToy

    torch.set_num_threads(1)
    toy = GaussianToy()
    problem, x_meas = toy.problem(n_sim, n_data, seed)
    edges = toy.default_edges()
    truth = toy.bin_probabilities(edges)
    t0, c0 = time.perf_counter(), time.process_time()
    res = OmniFold().unfold(problem, seed)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    mean, sd = res.histogram("x", edges)
    me = metrics.moment_errors(res, "x", toy.mu, toy.sigma)
    return {"seed": seed, "mean_rel_error": me["mean_rel_error"], "width_rel_error": me["width_rel_error"],
            "mean": me["mean"], "mean_sd": me["mean_sd"], "width": me["width"], "width_sd": me["width_sd"],
            "coverage": metrics.coverage(mean, sd, truth), "chi2_ndf": metrics.chi2_per_ndf(mean, sd, truth),
            "pulls": np.round((mean - truth) / sd, 3).tolist(),
            "wasserstein": metrics.wasserstein(res, "x", x_meas, 1.0 / toy.efficiency(x_meas)),
            "n_true": res.info["n_true"], "wall_s": wall, "cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(1001, 1021)))
    ap.add_argument("--n-sim", type=int, default=200_000)
    ap.add_argument("--n-data", type=int, default=100_000)
    ap.add_argument("--cache", type=Path, default=Path("benchmarks/.cache/unfold_omnifold_toy"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    a.cache.mkdir(parents=True, exist_ok=True)
    from rarefy.unfold.omnifold import OmniFold

    settings = hashlib.sha256(repr(OmniFold()).encode()).hexdigest()[:10]  # a cached row is for these defaults
    rows = []
    for s in a.seeds:
        f = a.cache / f"seed{s}_{a.n_sim}_{a.n_data}_{settings}.json"
        if f.exists():
            rows.append(json.loads(f.read_text()))
            continue
        row = one(s, a.n_sim, a.n_data)
        tmp = f.with_suffix(".tmp")
        tmp.write_text(json.dumps(row))
        tmp.replace(f)
        rows.append(row)
    pulls = np.concatenate([r["pulls"] for r in rows])
    worst_mean = max(abs(r["mean_rel_error"]) for r in rows)
    worst_width = max(abs(r["width_rel_error"]) for r in rows)
    cov = float(np.mean(np.abs(pulls) <= 1))
    print(json.dumps({
        "benchmark": "unfold_omnifold_toy", "n_sim": a.n_sim, "n_data": a.n_data, "seeds": a.seeds,
        "coverage_pooled": cov, "chi2_ndf_pooled": float(np.mean(pulls ** 2)),
        "max_abs_mean_rel_error": worst_mean, "max_abs_width_rel_error": worst_width,
        "mean_rel_error_mean": float(np.mean([r["mean_rel_error"] for r in rows])),
        "width_rel_error_mean": float(np.mean([r["width_rel_error"] for r in rows])),
        "wasserstein_mean": float(np.mean([r["wasserstein"] for r in rows])),
        "wall_s_mean": float(np.mean([r["wall_s"] for r in rows])),
        "cpu_s_mean": float(np.mean([r["cpu_s"] for r in rows])),
        "accept_moments_within_1pct": bool(worst_mean <= 0.01 and worst_width <= 0.01),
        "accept_coverage_0.60_0.76": bool(0.60 <= cov <= 0.76),
        "per_seed": rows}))


if __name__ == "__main__":
    main()
