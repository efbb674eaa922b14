"""How good is the closed loop's optimum? One JSON line per call, over several seeds.

For each seed, runs ``examples/moderator/run.yaml`` (the moderator closed loop, cost-aware
EI) with that seed and reports:

* ``theta``: the loop's θ*;
* ``percentile``: where the *exact* HF rate at θ* (``simulators.get("moderator").expected_rate``)
  ranks among 1,000 random feasible designs (0 = better than all of them);
* ``pull``: the verification pull ``|predicted − verified| / sqrt(σp² + σv²)``.

Usage::

    python benchmarks/loop_optimum.py --seeds 11 12 13 [--out runs/bench-loop-optimum]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import yaml

import rarefy
from rarefy.config import config_from_dict
from rarefy.simulators import get as get_simulator

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "moderator" / "run.yaml"


def one_seed(seed: int, out: Path, n_random: int = 1000) -> dict:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["seed"] = seed
    cfg = config_from_dict(raw, base=EXAMPLE.parent, source=str(EXAMPLE))
    t0 = time.perf_counter()
    res = rarefy.run(cfg, out / f"seed-{seed}", progress=False)
    wall = time.perf_counter() - t0
    r = res.result
    sim = get_simulator("moderator")
    space = cfg.space.build()
    target = str(cfg.target)
    exact = float(sim.expected_rate(r["optimum"], target))
    designs = space.sample(n_random, method="random", seed=seed + 1000)
    rates = np.array([sim.expected_rate(dict(row), target) for _, row in designs.iterrows()])
    pull = None
    if r.get("verified_rate") is not None:
        pull = abs(r["predicted_rate"] - r["verified_rate"]) / math.sqrt(r["predicted_sigma"] ** 2
                                                                        + r["verified_sigma"] ** 2)
    return {"seed": seed, "theta": r["optimum"], "exact_rate": exact,
            "percentile": float(100.0 * np.mean(rates < exact)),
            "predicted_rate": r["predicted_rate"], "predicted_sigma": r["predicted_sigma"],
            "verified_rate": r.get("verified_rate"), "verified_sigma": r.get("verified_sigma"),
            "pull": pull, "iterations": r["iterations"], "cost_cpu_h": r["cost_cpu_h"]["total"],
            "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-loop-optimum"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = [one_seed(s, args.out) for s in args.seeds]
    print(json.dumps({"benchmark": "loop_optimum", "config": str(EXAMPLE.relative_to(EXAMPLE.parents[2])),
                      "seeds": rows}))


if __name__ == "__main__":
    main()
