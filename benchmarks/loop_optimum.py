"""How good is the closed loop's optimum? One JSON line per call, over several seeds.

For each seed, runs ``examples/moderator/run.yaml`` (the moderator closed loop, cost-aware
EI; ``--config`` another one, e.g. ``run-denoised.yaml`` with the denoiser) with that seed and reports:

* ``theta``: the loop's θ*;
* ``percentile``: where the *exact* HF rate at θ* (``simulators.get("moderator").expected_rate``)
  ranks among 1,000 random feasible designs (0 = better than all of them);
* ``pull``: the verification pull ``|predicted − verified| / sqrt(σp² + σv²)``;
* ``predicted_reduction``, ``reduction`` ± ``reduction_sigma`` (verified), ``gain_confirmed``,
  ``verify_runs`` (in all; ``follow_up_runs`` of them from the second look) and the nominal ``cost_cpu_h`` (total and per fidelity).

The exact rates of the 1,000 random designs depend only on the seed; they are kept in
``OUT/exact-<seed>.npy`` and reused (they take ~3 min to compute).

Usage::

    python benchmarks/loop_optimum.py --seeds 11 12 13 [--config examples/moderator/run-denoised.yaml] [--out DIR]
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


def _verify_runs(ver: dict | None) -> int | None:
    """Verification runs at θ* in all: the sized first look plus the second look's."""
    if not ver:
        return None
    return int(ver["runs"]) + int((ver.get("follow_up") or {}).get("runs") or 0)


def one_seed(seed: int, out: Path, n_random: int = 1000, config: Path = EXAMPLE) -> dict:
    raw = yaml.safe_load(config.read_text())
    raw["seed"] = seed
    cfg = config_from_dict(raw, base=config.parent, source=str(config))
    t0 = time.perf_counter()
    res = rarefy.run(cfg, out / f"{config.stem}-seed-{seed}", progress=False)
    wall = time.perf_counter() - t0
    r = res.result
    sim = get_simulator("moderator")
    space = cfg.space.build()
    target = str(cfg.target)
    exact = float(sim.expected_rate(r["optimum"], target))
    cache = out / f"exact-{seed}-{n_random}.npy"
    if cache.exists():
        rates = np.load(cache)
    else:
        designs = space.sample(n_random, method="random", seed=seed + 1000)
        rates = np.array([sim.expected_rate(dict(row), target) for _, row in designs.iterrows()])
        np.save(cache, rates)
    pull = None
    if r.get("verified_rate") is not None:
        pull = abs(r["predicted_rate"] - r["verified_rate"]) / math.sqrt(r["predicted_sigma"] ** 2
                                                                        + r["verified_sigma"] ** 2)
    return {"seed": seed, "theta": r["optimum"], "exact_rate": exact,
            "percentile": float(100.0 * np.mean(rates < exact)),
            "predicted_rate": r["predicted_rate"], "predicted_sigma": r["predicted_sigma"],
            "verified_rate": r.get("verified_rate"), "verified_sigma": r.get("verified_sigma"),
            "pull": pull, "iterations": r["iterations"], "cost_cpu_h": r["cost_cpu_h"]["total"],
            "cost_by_fidelity": r["cost_cpu_h"], "predicted_reduction": r.get("predicted_reduction"),
            "reduction": r.get("reduction"), "reduction_sigma": r.get("reduction_sigma"),
            "gain_confirmed": r.get("gain_confirmed"), "verify_runs": _verify_runs(r.get("verification")),
            "follow_up_runs": ((r.get("verification") or {}).get("follow_up") or {}).get("runs"),
            "exact_reduction": 1.0 - exact / r["baseline_rate"] if r.get("baseline_rate") else None,
            "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-loop-optimum"))
    parser.add_argument("--config", type=Path, default=EXAMPLE, help="the loop's config (default: run.yaml)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [one_seed(s, args.out, config=args.config.absolute()) for s in args.seeds]
    print(json.dumps({"benchmark": "loop_optimum", "config": args.config.name, "seeds": rows}))


if __name__ == "__main__":
    main()
