"""OmniFold on the Gaussian toy as a function of the number of iterations (development seeds).

One run of :class:`rarefy.unfold.omnifold.OmniFold` with ``--iterations`` iterations per seed
records every member's weights after each iteration (the ``on_iteration`` hook). The
schedule of an iteration does not depend on the total, so the result after n iterations is
the one an ``iterations=n`` run would give: one run yields every n ≤ ``--iterations``.
Per n, pooled over the seeds: per-bin 1σ coverage and χ²/ndf against the exact truth
probabilities (the toy's 20 default bins), the mean pull per bin, the mean relative error
of the unfolded mean and width, and the same coverage with the change of the member mean
between iterations n−1 and n, times k, added in quadrature to the member spread (an explicit
regularisation error; k = 0, 1, 2, 4, 8).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/unfold_omnifold_iterations.py --seeds 1 2 3 4 --iterations 12

Prints one JSON line. Use development seeds only.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def one(seed: int, iterations: int, n_sim: int, n_data: int) -> dict:
    import torch

    from rarefy.unfold.omnifold import OmniFold
    from rarefy.unfold.toy import GaussianToy

    torch.set_num_threads(1)
    toy = GaussianToy()
    problem, _ = toy.problem(n_sim, n_data, seed)
    edges = toy.default_edges()
    x = problem.sim_gen[:, 0]
    of = OmniFold(iterations=iterations)
    hist = np.zeros((of.ensemble, iterations, len(edges) - 1))
    mom = np.zeros((of.ensemble, iterations, 2))

    def record(member: int, it: int, w: np.ndarray) -> None:
        h, _ = np.histogram(x, bins=edges, weights=w)
        hist[member, it] = h / w.sum()
        p = w / w.sum()
        mu = float(np.sum(p * x))
        mom[member, it] = (mu, np.sqrt(np.sum(p * (x - mu) ** 2)))

    of.on_iteration = record
    c0 = time.process_time()
    of.unfold(problem, seed)
    return {"hist": hist, "mom": mom, "truth": toy.bin_probabilities(edges), "cpu_s": time.process_time() - c0,
            "mu": toy.mu, "sigma": toy.sigma}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--iterations", type=int, default=12)
    ap.add_argument("--n-sim", type=int, default=200_000)
    ap.add_argument("--n-data", type=int, default=100_000)
    a = ap.parse_args()
    runs = [one(s, a.iterations, a.n_sim, a.n_data) for s in a.seeds]
    per_n = []
    for n in range(2, a.iterations + 1):
        row: dict = {"iterations": n}
        pulls: dict[int, list] = {k: [] for k in (0, 1, 2, 4, 8)}
        me, we = [], []
        for r in runs:
            h, t = r["hist"][:, n - 1], r["truth"]
            m, sd = h.mean(0), h.std(0, ddof=1)
            step = m - r["hist"][:, n - 2].mean(0)
            for k, rows in pulls.items():
                rows.append((m - t) / np.sqrt(sd ** 2 + (k * step) ** 2))
            me.append(r["mom"][:, n - 1, 0].mean() / r["mu"] - 1)
            we.append(r["mom"][:, n - 1, 1].mean() / r["sigma"] - 1)
        for k, p in pulls.items():
            p = np.array(p)
            row[f"coverage_k{k}"] = float(np.mean(np.abs(p) <= 1))
            row[f"chi2_ndf_k{k}"] = float(np.mean(p ** 2))
        row["mean_pull"] = np.round(np.mean(pulls[0], axis=0), 2).tolist()
        row["mean_rel_error_mean"] = float(np.mean(me))
        row["width_rel_error_mean"] = float(np.mean(we))
        row["max_abs_mean_rel_error"] = float(np.max(np.abs(me)))
        row["max_abs_width_rel_error"] = float(np.max(np.abs(we)))
        per_n.append(row)
    print(json.dumps({"benchmark": "unfold_omnifold_iterations", "seeds": a.seeds, "n_sim": a.n_sim,
                      "n_data": a.n_data, "cpu_s": [r["cpu_s"] for r in runs], "per_iterations": per_n}))


if __name__ == "__main__":
    main()
