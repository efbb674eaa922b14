"""Choice of the XLZD generator's flow settings on development settings: fidelity and speed per candidate.

Prints ONE JSON line.

Needs the ``nest`` extra. The training runs are those of ``flow_fastsim.py --case xlzd``
(``--xlzd-runs`` (48) LF runs of ``--xlzd-events`` (4,000) events at scrambled-Sobol settings,
seed 0, the same validation split, 30 epochs, batch 512). Each candidate flow (``--candidates``,
a JSON list of ``generate.flow`` overrides; default: the five of docs/guides/generate.md) is
trained once, then

* **fidelity** at ``--dev-designs`` (3) **development** settings: random settings of the
  space with seed ``--dev-seed`` (2000), neither training settings nor the evaluation
  settings of ``flow_fastsim.py`` (seed 1000): the classifier two-sample AUC on (S1, S2) of
  5,000 NEST events (seeds 80,000 + i) against 5,000 generated ones (seeds 90,000 + i), and
  the validation NLL;
* **speed**: CPU time of this process per event, ``Generator.sample_array`` of
  ``--speed-events`` (100,000) events against NEST per kept ER window event (the definition
  of ``flow_fastsim.py --case xlzd``), best of 3, at the first development setting.

The example's flow (``examples/xlzd/generate.yaml``) is the candidate chosen from this table;
the evaluation settings play no part in the choice.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/flow_fastsim_xlzd_dev.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch

from flow_fastsim import nest_window_counter
from rarefy.config import GenerateConfig
from rarefy.data.events import EventTable
from rarefy.generate import fit_generator
from rarefy.generate.evaluate import c2st

PHI = ["s1c_phd", "log10_s2c_s1c", "z_mm"]
CANDIDATES = [{"passes": 2}, {"hidden": [32, 32]}, {"passes": 2, "hidden": [32, 32]},
              {"passes": 2, "hidden": [16, 16]}, {"passes": 2, "hidden": [32, 32], "transforms": 2}]


def main() -> None:
    from rarefy.simulators.xlzd import XLZD, xlzd_space

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--xlzd-runs", type=int, default=48)
    ap.add_argument("--xlzd-events", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--dev-designs", type=int, default=3)
    ap.add_argument("--dev-seed", type=int, default=2000)
    ap.add_argument("--dev-events", type=int, default=5000)
    ap.add_argument("--speed-events", type=int, default=100_000)
    ap.add_argument("--candidates", default=json.dumps(CANDIDATES))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    sim, space = XLZD(), xlzd_space()
    train = space.sample(args.xlzd_runs, "sobol", seed=0)[space.names].to_dict("records")
    events = EventTable.concat([sim.simulate(row, args.xlzd_events, "lf", seed=10_000 + i).with_run(run_id=f"run-{i:03d}")
                                for i, row in enumerate(train)])
    dev = space.sample(args.dev_designs, "random", seed=args.dev_seed)[space.names].to_dict("records")
    real = []
    for i, th in enumerate(dev):
        t = sim.simulate(th, args.dev_events, "lf", seed=80_000 + i).table
        real.append(np.column_stack([t.column(c).to_numpy() for c in PHI[:2]]))

    theta0, n = dev[0], args.speed_events
    nest_window = nest_window_counter(sim, theta0, n)
    kept = nest_window()
    rows = []
    for flow in json.loads(args.candidates):
        cfg = GenerateConfig(phi=PHI, epochs=args.epochs, batch_size=512, flow=flow)
        fit = fit_generator(events, space, cfg, seed=0)
        gen = fit.generator
        aucs = [c2st(real[i], gen.sample_array(th, args.dev_events, seed=90_000 + i)[:, :2], seed=i)["auc"]
                for i, th in enumerate(dev)]
        gen_cpu = min(_cpu(lambda g=gen: g.sample_array(theta0, n, seed=1)) for _ in range(3)) / n
        nest_cpu = min(_cpu(nest_window) for _ in range(3)) / kept
        rows.append({"flow": cfg.flow.model_dump(), "dev_auc_s1s2": aucs, "dev_auc_max": max(aucs),
                     "val_nll": gen.info["val_nll"], "epochs_run": len(fit.history),
                     "gen_us_per_event_cpu": gen_cpu * 1e6, "nest_us_per_window_event_cpu": nest_cpu * 1e6,
                     "gen_over_nest_cpu": nest_cpu / gen_cpu})
    print(json.dumps({"benchmark": "flow_fastsim_xlzd_dev", "dev_designs": dev, "train_runs": args.xlzd_runs,
                      "train_events_per_run": args.xlzd_events, "candidates": rows,
                      "threads": torch.get_num_threads(), "wall_s": round(time.perf_counter() - t_start, 1)}))


def _cpu(f: Callable[[], object]) -> float:
    """CPU seconds of this process spent in ``f()``."""
    t = time.process_time()
    f()
    return time.process_time() - t


if __name__ == "__main__":
    main()
