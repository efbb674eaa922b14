"""Benchmark of the campaign engine; prints ONE JSON line.

* ``moderator_events_per_s_{lf,hf}``: events per second of the built-in moderator
  simulator (best of 5 runs of 200,000 events, one core).
* ``overhead_{1,2}w``: fraction of wall time not spent inside the simulator for a
  campaign on a dask LocalCluster with 1 and 2 worker processes, runs of about 1 s
  (``rarefy.simulators.testing:busy``: 1 CPU-second plus 50,000 events written to a shard).
  overhead = 1 - sum(simulator seconds) / (workers * span), span = first submission to
  last result; cluster start-up is reported separately (``startup_s_{1,2}w``).
* ``moderator_overhead_2w``: the same with moderator runs sized to take about 1 s each
  (1.5M+ events a run, so shard writing weighs in).

Run: ``python benchmarks/campaign.py [--runs-per-worker 6]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from rarefy import simulators
from rarefy.jobs.simulate import simulate
from rarefy.config import config_from_dict

SPACE = {"parameters": {"x": {"low": 0, "high": 1}, "y": {"low": 0, "high": 1}}}


def events_per_second(fidelity: str, n: int = 200_000, repeats: int = 5) -> float:
    sim = simulators.get("moderator")
    theta = {"radius": 150.0, "thickness": 6.0, "npanels": 30, "theta": 30.0, "length": 15.0}
    best = np.inf
    for seed in range(repeats):
        t0 = time.perf_counter()
        sim.simulate(theta, n, fidelity, seed)
        best = min(best, time.perf_counter() - t0)
    return n / best


def campaign_overhead(raw: dict, workers: int, out: Path) -> tuple[float, float]:
    raw = dict(raw, campaign=dict(raw["campaign"], executor={"kind": "local", "workers": workers}))
    res = simulate(config_from_dict(raw), out, progress=False)
    assert res.n_failed == 0, "benchmark runs failed"
    return 1.0 - res.sim_s / (res.workers * res.span_s), res.wall_s - res.span_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-per-worker", type=int, default=6)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out: dict[str, float] = {
        "moderator_events_per_s_lf": events_per_second("lf"),
        "moderator_events_per_s_hf": events_per_second("hf"),
    }
    busy = {"name": "bench", "seed": 0, "space": SPACE,
            "fidelities": [{"name": "lf", "value": "rate", "events": 50_000, "cost_cpu_h_per_event": 1e-6}],
            "simulator": {"kind": "python", "target": "rarefy.simulators.testing:busy", "options": {"cpu_s": 1.0}},
            "campaign": {"runs": []}}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            raw = dict(busy, campaign={"runs": [{"fidelity": "lf", "runs": args.runs_per_worker * workers}]})
            overhead, startup = campaign_overhead(raw, workers, Path(tmp) / f"busy{workers}")
            out[f"overhead_{workers}w"] = overhead
            out[f"startup_s_{workers}w"] = startup
        n_1s = int(max(out["moderator_events_per_s_lf"], 1.0) * 1.0)
        mod = {"name": "bench-mod", "seed": 0, "space": simulators.get("moderator").space.to_dict(),
               "fidelities": [{"name": "lf", "value": "rate"}],
               "simulator": {"kind": "builtin", "name": "moderator"},
               "campaign": {"runs": [{"fidelity": "lf", "runs": 2 * args.runs_per_worker, "events": n_1s}]}}
        out["moderator_events_per_run"] = n_1s
        out["moderator_overhead_2w"], _ = campaign_overhead(mod, 2, Path(tmp) / "mod2")
    out["cores"] = os.cpu_count() or 1
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
