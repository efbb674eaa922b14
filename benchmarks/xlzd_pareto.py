"""XLZD field optimisation: hypervolume of rarefy's Pareto front vs a Sobol design at the same simulation budget.

    python benchmarks/xlzd_pareto.py [--config examples/xlzd/run.yaml] [--out runs/bench-xlzd] [--true-events 100000]

1. **rarefy**: ``rarefy run`` on the config (default ``examples/xlzd/run.yaml``: 16 LF + 8 HF
   initial runs, then qLogNEHVI rounds of HF runs); its estimated Pareto set (posterior
   means) is the method's answer. Wall and CPU time of the loop are recorded.
2. **Sobol**: as many HF runs at scrambled-Sobol designs as the same nominal budget
   (CPU-h) buys; its answer is (a) the non-dominated set of its observed runs, and (b) the
   Pareto set estimated by the same per-objective surrogates fitted on the Sobol runs.
3. **Truth**: every answered design is re-simulated with ``--true-events`` events (common
   seed per design), giving log10 leakage and σ_E/E [%] with small errors; each method's
   hypervolume is that of the non-dominated true values, with botorch's ``Hypervolume``
   and the fixed reference point of the config (log10 leakage = −1.5, σ_E/E = 1.0%).
   ``--dense N`` also evaluates N Sobol designs at the same counts (the best front a dense
   design finds, for scale).

Prints one JSON line: ``hv_rarefy``, ``hv_sobol_observed``, ``hv_sobol_gp``, the gains
``hv_rarefy / hv_sobol - 1`` for both Sobol answers, budgets, run counts and timings.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import rarefy  # noqa: E402
from rarefy.campaign import run_campaign, run_seed  # noqa: E402
from rarefy.config import load_config  # noqa: E402
from rarefy.data.store import RunRequest  # noqa: E402
from rarefy.jobs.pareto import (  # noqa: E402
    estimate_front, fit_objectives, hypervolume, non_dominated, objective_frame, objective_tables,
)
from rarefy.simulators.xlzd import XLZD  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def true_values(sim: XLZD, designs: list[dict[str, float]], n: int, cache: dict) -> np.ndarray:
    """(log10 leakage, σ_E/E in %) of each design from one large run (seed fixed per design)."""
    out = []
    for th in designs:
        key = tuple(round(th[k], 9) for k in sorted(th))
        if key not in cache:
            o = sim.objectives(th, n=n, seed=20240 + len(cache))
            cache[key] = (math.log10((o["k"] + 0.5) / (o["n"] + 1.0)), 100.0 * o["resolution"])
        out.append(cache[key])
    return np.asarray(out, float).reshape(-1, 2)


def hv_of(values: np.ndarray, ref: np.ndarray) -> float:
    return hypervolume(values[non_dominated(values)], ref) if len(values) else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "examples" / "xlzd" / "run.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-xlzd"))
    ap.add_argument("--true-events", type=int, default=100_000)
    ap.add_argument("--dense", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    cfg = load_config(args.config)
    space = cfg.space.build()
    names = [o.name for o in cfg.objectives]
    ref = np.array([o.reference for o in cfg.objectives], float)
    sim = rarefy.simulators.get("xlzd")

    # 1. rarefy
    w0, c0 = time.perf_counter(), _cpu()
    res = rarefy.run(args.config, out / "rarefy", progress=False)
    wall, cpu = time.perf_counter() - w0, _cpu() - c0
    budget = res.result["cost_cpu_h"]["total"]
    rarefy_designs = [p["theta"] for p in res.result["pareto_set"]]

    # 2. Sobol at the same nominal budget (HF runs)
    hf = sim.fidelities[cfg.pareto.fidelity or cfg.target]
    events = cfg.fidelity(hf.name).events or hf.events_per_run
    cost = events * hf.cost_cpu_h_per_event
    n_sobol = int(math.floor(budget / cost + 1e-9))
    designs = space.sample(n_sobol, method="sobol", seed=run_seed(cfg.seed + 1, 7) % 2**32)
    reqs = [RunRequest(f"sobol-{i:04d}", i, hf.name, {k: float(v) for k, v in row.items()}, int(events),
                       run_seed(cfg.seed + 1, i), cost) for i, row in enumerate(designs.to_dict(orient="records"))]
    sobol_dir = out / "sobol"
    run_campaign(reqs, sim, sobol_dir, space, campaign=cfg.campaign, progress=False)
    frame = objective_frame(sobol_dir, cfg, space)
    vals = frame[names].to_numpy(float)
    obs_designs = [{n: float(r[n]) for n in space.names} for _, r in frame[non_dominated(vals)].iterrows()]
    surs = fit_objectives(objective_tables(frame, cfg, space), cfg, space)
    gp_front = estimate_front(surs, cfg.objectives, space, hf.name, observed=frame[space.names].to_numpy(float),
                              settings=cfg.pareto, seed=cfg.seed)
    gp_designs = [p["theta"] for p in gp_front]

    # 3. truth at large event counts
    cache: dict = {}
    t_r = true_values(sim, rarefy_designs, args.true_events, cache)
    t_so = true_values(sim, obs_designs, args.true_events, cache)
    t_sg = true_values(sim, gp_designs, args.true_events, cache)
    hv_r, hv_so, hv_sg = hv_of(t_r, ref), hv_of(t_so, ref), hv_of(t_sg, ref)
    dense_hv = None
    if args.dense:
        dd = space.sample(args.dense, method="sobol", seed=12345)
        t_d = true_values(sim, [{k: float(v) for k, v in r.items()} for r in dd.to_dict(orient="records")],
                          args.true_events, cache)
        dense_hv = hv_of(np.concatenate([t_d, t_r, t_so, t_sg]), ref)
    pd.DataFrame([{**d, "method": m, "log10_leakage": v[0], "resolution_pct": v[1]}
                  for m, ds, tv in (("rarefy", rarefy_designs, t_r), ("sobol_observed", obs_designs, t_so),
                                    ("sobol_gp", gp_designs, t_sg)) for d, v in zip(ds, tv)]
                 ).to_csv(out / "true_fronts.csv", index=False)
    print(json.dumps({
        "benchmark": "xlzd_pareto",
        "hv_rarefy": round(hv_r, 5), "hv_sobol_observed": round(hv_so, 5), "hv_sobol_gp": round(hv_sg, 5),
        "gain_vs_sobol_observed": round(hv_r / hv_so - 1.0, 4) if hv_so > 0 else None,
        "gain_vs_sobol_gp": round(hv_r / hv_sg - 1.0, 4) if hv_sg > 0 else None,
        "hv_best_known": None if dense_hv is None else round(dense_hv, 5),
        "reference_point": dict(zip(names, ref.tolist())), "true_events": args.true_events,
        "budget_cpu_h": round(budget, 6), "sobol_hf_runs": n_sobol, "rarefy_runs": res.result["runs"],
        "front_points": {"rarefy": len(rarefy_designs), "sobol_observed": len(obs_designs),
                         "sobol_gp": len(gp_designs)},
        "rarefy_wall_s": round(wall, 1), "rarefy_cpu_s": round(cpu, 1), "iterations": res.iterations,
    }))


if __name__ == "__main__":
    main()
