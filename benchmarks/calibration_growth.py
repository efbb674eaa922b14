"""Calibration of the AR1 surrogate's HF σ as the number of HF runs grows (3 → 310), LOO widening on and off.

Prints ONE JSON line. The world is that of ``benchmarks/hf_budget.py``:
the built-in ``moderator`` with its exact expected HF rates on ``--test`` (200) random
feasible designs, HF runs of ``n_hf = ceil(1 / (0.05² × median HF rate))`` events whose
counts are drawn as ``k ~ Binomial(n_hf, expected_rate(θ, "hf"))`` (the shortcut documented
there). For every seed and every size n in ``--sizes`` (default 3 5 10 20 40 80 160 310) it
fits, on n HF runs at a scrambled Sobol design (``--design random``: uniform random designs):

* ``hf``: an HF-only GP; ``hf_mu``: the same with ``mean_uncertainty``;
* ``mf``: an AR1 ``lf → hf`` with ``--lf`` (500) LF runs at a scrambled Sobol design besides the
  n HF runs (ρ prior scale 0.5, as hf_budget's loop); ``mf_mu``: the same with ``mean_uncertainty``.

LF counts are drawn as ``k ~ Binomial(50,000, expected_rate(θ, "lf"))`` (the moderator's LF
events are Bernoulli with that mean up to clustering; nothing here needs the LF events).
Each GP is fitted once with ``calibrate: loo``; the uncalibrated σ is the calibrated one
divided by the fitted factor c (``hyperparameters()["hf"]["calibration"]``): the
calibration only rescales the latent posterior, the hyperparameters and the mean are those
of ``calibrate: none``.

Keys: ``results[model][seed][n]`` = ``{"c", "rmse", "cov_on", "cov_off", "sd_on", "sd_off"}``
(2σ-coverage of the exact HF rate: share of test designs with ``|mean − exact| ≤ 2σ``; ``sd``:
mean latent σ over the test designs; ``rmse`` is the same on and off), and ``summary[model][n]``
with the minimum and mean coverage over the seeds, on and off, and the mean of σ̄ / RMSE.

Run: ``python benchmarks/calibration_growth.py [--seeds 11 12 13 14] [--models hf hf_mu mf mf_mu]``
(about 35 minutes at 1 thread for the defaults: 12 for ``hf hf_mu``, 23 for ``mf mf_mu``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

import rarefy
from rarefy import AR1Settings, AR1Surrogate, RateTable
from rarefy.data.rates import count_variance
from rarefy.threads import torch_threads

SIZES = [3, 5, 10, 20, 40, 80, 160, 310]
MODELS = ["hf", "hf_mu", "mf", "mf_mu"]
LF_EVENTS = 50_000


class World:
    """The moderator, ``n_test`` random test designs with their exact HF rates, and the HF run size.

    As ``hf_budget.py``'s: test designs ``sample(n_test, "random", seed + 7)``, ``n_hf =
    ceil(1 / (0.05² × median HF rate over the test designs))``.
    """

    def __init__(self, n_test: int, seed: int) -> None:
        self.sim = rarefy.simulators.get("moderator")
        self.space = self.sim.space
        self.names = self.space.names
        self.test_x = self.space.sample(n_test, method="random", seed=seed + 7).to_numpy(float)
        self.test_y = np.array([self.exact(x, "hf") for x in self.test_x])
        self.n_hf = int(math.ceil(1.0 / (0.05**2 * float(np.median(self.test_y)))))

    def exact(self, x: np.ndarray, fidelity: str) -> float:
        return float(self.sim.expected_rate(dict(zip(self.names, map(float, x))), fidelity))

    def hf_run(self, x: np.ndarray, run_seed: int) -> dict[str, Any]:
        k = int(np.random.default_rng(run_seed).binomial(self.n_hf, self.exact(x, "hf")))
        return {**dict(zip(self.names, x)), "fidelity": "hf", "k": k, "n": self.n_hf}


def rate_table(rows: list[dict[str, Any]], space: Any) -> RateTable:
    """Counted runs as a RateTable: rate = k/n with its count noise variance."""
    frame = pd.DataFrame(rows)
    k, n = frame["k"].to_numpy(float), frame["n"].to_numpy(float)
    frame["rate"] = k / n
    frame["var"] = count_variance(k / n, k, n)
    return RateTable(frame, space)


def lf_rows(world: World, n_lf: int, seed: int) -> list[dict[str, Any]]:
    """``n_lf`` LF runs at a scrambled Sobol design, counts drawn from the exact LF rate."""
    xs = world.space.sample(n_lf, method="sobol", seed=seed).to_numpy(float)
    rows = []
    for i, x in enumerate(xs):
        p = world.exact(x, "lf")
        k = int(np.random.default_rng(seed * 1_000_003 + i).binomial(LF_EVENTS, p))
        rows.append({**dict(zip(world.names, x)), "fidelity": "lf", "k": k, "n": LF_EVENTS})
    return rows


def hf_rows(world: World, n: int, seed: int, design: str) -> list[dict[str, Any]]:
    xs = world.space.sample(n, method=design, seed=seed + 1).to_numpy(float)
    return [world.hf_run(x, seed * 7 + i) for i, x in enumerate(xs)]


def evaluate(world: World, model: str, rows: list[dict[str, Any]], seed: int, restarts: int) -> dict[str, float]:
    mf = model.startswith("mf")
    fidelities = ["lf", "hf"] if mf else ["hf"]
    settings = AR1Settings(restarts=restarts, rho_prior=0.5 if mf else None, mean_uncertainty=model.endswith("_mu"),
                           calibrate="loo")
    sur = AR1Surrogate(world.space, fidelities, settings, seed=seed).fit(rate_table(rows, world.space))
    c = float(sur.hyperparameters()["hf"]["calibration"])
    with torch_threads(1), torch.no_grad():
        m, s = sur.predict(world.test_x, "hf")
    m, s = m.numpy(), s.numpy()
    err = np.abs(m - world.test_y)
    return {"c": c, "rmse": float(np.sqrt(np.mean(err**2))),
            "cov_on": float(np.mean(err <= 2 * s)), "cov_off": float(np.mean(err <= 2 * s / c)),
            "sd_on": float(np.mean(s)), "sd_off": float(np.mean(s / c))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13, 14])
    ap.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    ap.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    ap.add_argument("--design", choices=["sobol", "random"], default="sobol", help="design of the HF runs")
    ap.add_argument("--lf", type=int, default=500, help="LF runs of the mf models")
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--restarts", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    results: dict[str, dict[int, dict[int, dict[str, float]]]] = {m: {} for m in args.models}
    for seed in args.seeds:
        world = World(args.test, seed)
        lf = lf_rows(world, args.lf, seed) if any(m.startswith("mf") for m in args.models) else []
        for n in args.sizes:
            hf = hf_rows(world, n, seed, args.design)
            for model in args.models:
                res = evaluate(world, model, (lf if model.startswith("mf") else []) + hf, seed, args.restarts)
                results[model].setdefault(seed, {})[n] = res
                logging.warning("seed %d n %d %s: %s", seed, n, model, {k: float(f"{v:.4g}") for k, v in res.items()})
    summary: dict[str, dict[int, dict[str, float]]] = {}
    for model, per_seed in results.items():
        summary[model] = {}
        for n in args.sizes:
            rs = [per_seed[s][n] for s in args.seeds]
            summary[model][n] = {
                "cov_on_min": min(r["cov_on"] for r in rs), "cov_off_min": min(r["cov_off"] for r in rs),
                "cov_on_mean": float(np.mean([r["cov_on"] for r in rs])),
                "cov_off_mean": float(np.mean([r["cov_off"] for r in rs])),
                "sd_over_rmse_on": float(np.mean([r["sd_on"] / r["rmse"] for r in rs])),
                "sd_over_rmse_off": float(np.mean([r["sd_off"] / r["rmse"] for r in rs])),
                "c_mean": float(np.mean([r["c"] for r in rs])),
            }

    def rounded(o: Any) -> Any:
        if isinstance(o, float):
            return float(f"{o:.4g}")
        if isinstance(o, dict):
            return {str(k): rounded(v) for k, v in o.items()}
        return o

    print(json.dumps(rounded({"design": args.design, "seeds": args.seeds, "sizes": args.sizes, "lf": args.lf,
                              "test": args.test, "restarts": args.restarts, "results": results, "summary": summary,
                              "wall_s": time.perf_counter() - t0})))


if __name__ == "__main__":
    main()
