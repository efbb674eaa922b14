"""How accurately can a few HF runs pin the moderator's HF surface, even with a perfect denoiser?

Prints ONE JSON line. For each seed, on hf_budget's 200 random test designs (same seed
→ same designs, spread and targets), two bounds on what strategy (a) of
``benchmarks/hf_budget.py`` can reach with few HF runs:

* **map floor**: the RMSE / spread of the best map from the *exact* LF rate to the exact HF
  rate, fitted by least squares on the test designs themselves (``linear``: HF ≈ a·LF + b,
  what an AR1 with constant ρ and a constant δ can represent at best; ``quadratic``: + c·LF²).
  Whatever a model does not learn of δ(θ) from HF runs stays in this residual.
* **oracle AR1**: run-surface.yaml's AR1 (``surrogate`` settings) fitted on the *exact* LF
  rate at 500 Sobol designs (a perfect denoiser: 2% relative noise) plus ``k`` HF runs of
  8,000,000 neutrons (Binomial counts, as hf_budget's (b)–(d)) at the first ``k`` of those
  designs; RMSE / spread and 2σ coverage against the exact HF rate, for each ``k``.
  ``--settings '{"rho_prior": 0.1}'`` changes the AR1's settings (JSON, AR1Settings fields).
* **line**: an ordinary least-squares line from the same ``k`` HF rates (k/n) on the exact LF
  rate: RMSE / spread on the test designs and its slope (``slope_best``: the map floor's).

One HF run costs 1,200 CPU-h, 0.32% of hf_budget's (d) (310 runs): 6 runs are 1.9% of (d).

Keys: ``seeds``; per seed ``spread``, ``hf_run_noise_over_spread`` (one HF run's Poisson σ at
the median rate ÷ spread), ``map_linear``, ``map_quadratic``, ``oracle`` (``{k: [rmse/spread,
coverage]}``), ``line`` (``{k: [rmse/spread, slope]}``), ``slope_best``, ``wall_s``.

Run: ``python benchmarks/surface_floor.py --seeds 11 12 13 14 [--hf 2 4 6 10 20 40]``
(about 2 min per seed on one core).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import numpy as np
import torch

from hf_budget import World, rate_table, settings
from rarefy import AR1Settings, AR1Surrogate


def _map_floor(lf: np.ndarray, hf: np.ndarray, spread: float, quadratic: bool) -> float:
    cols = [lf, np.ones_like(lf)] + ([lf**2] if quadratic else [])
    a = np.stack(cols, axis=1)
    coef = np.linalg.lstsq(a, hf, rcond=None)[0]
    return float(np.sqrt(np.mean((a @ coef - hf) ** 2)) / spread)


def _line(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(np.stack([x, np.ones_like(x)], axis=1), y, rcond=None)[0]


def one_seed(seed: int, ks: list[int], overrides: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    w = World(200, seed, 50_000, 8_000_000, 0.06)

    def exact_lf(x: np.ndarray) -> float:
        return float(w.sim.expected_rate(dict(zip(w.names, map(float, x))), "lf"))

    test_lf = np.array([exact_lf(x) for x in w.test_x])
    design = w.space.sample(500, method="sobol", seed=seed * 3 + 1).to_numpy(float)
    lf = np.array([exact_lf(x) for x in design])
    base = [{**dict(zip(w.names, x)), "fidelity": "lf-denoised", "rate": y, "var": (0.02 * y) ** 2, "k": 0, "n": 1}
            for x, y in zip(design, lf)]
    oracle: dict[str, list[float]] = {}
    line: dict[str, list[float]] = {}
    ar1 = AR1Settings(**{**settings(2).__dict__, **overrides})
    for k in ks:
        hf = [w.hf_run(x, seed * 100 + i) for i, x in enumerate(design[:k])]
        sur = AR1Surrogate(w.space, ["lf-denoised", "hf"], ar1, seed=seed).fit(rate_table(base + hf, w.space))
        rmse, cov = w.score(sur)
        oracle[str(k)] = [round(rmse / w.spread, 4), cov]
        a, b = _line(lf[:k], np.array([r["k"] / r["n"] for r in hf]))
        line[str(k)] = [round(float(np.sqrt(np.mean((a * test_lf + b - w.test_y) ** 2)) / w.spread), 4),
                        round(float(a), 3)]
        logging.getLogger("surface_floor").warning("seed %d, %d HF runs: RMSE %.4f x spread, coverage %.3f",
                                                   seed, k, rmse / w.spread, cov)
    return {"spread": w.spread,
            "hf_run_noise_over_spread": float(np.sqrt(np.median(w.test_y) / w.n_hf) / w.spread),
            "map_linear": _map_floor(test_lf, w.test_y, w.spread, False),
            "map_quadratic": _map_floor(test_lf, w.test_y, w.spread, True),
            "oracle": oracle, "line": line, "slope_best": round(float(_line(test_lf, w.test_y)[0]), 3),
            "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13, 14])
    ap.add_argument("--hf", type=int, nargs="+", default=[2, 4, 6, 10, 20, 40], help="HF runs of the oracle AR1")
    ap.add_argument("--settings", type=json.loads, default={}, help="AR1 settings to change (JSON)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    out: dict[str, Any] = {"benchmark": "surface_floor", "settings": args.settings, "seeds": {}}
    for s in args.seeds:
        out["seeds"][str(s)] = one_seed(s, args.hf, args.settings)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
