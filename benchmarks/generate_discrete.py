"""Discrete φ columns of the moderator: categorical heads against dequantisation, at development designs.

Prints ONE JSON line.

The generator p(φ | θ) of the moderator's LF neutrons with the θ-dependent integer track
columns (``ncross``, ``thermalised``, ``escaped``; :mod:`rarefy.simulators.moderator`) is
trained twice on the same events, the same seed and the same flow, once with every
integer column dequantised into the flow (``discrete: dequantise``) and once with the
few-valued integer columns drawn from categorical heads (``discrete: auto``,
:mod:`rarefy.generate.discrete`). The training set is the one of
``benchmarks/flow_fastsim.py --passes 2 --denoised-rate``: ``--train-runs`` (24) runs of
``--train-events`` (4,000) neutrons at scrambled-Sobol designs (seed 0), all 10 φ columns,
NSF with coupling transforms (``--passes``, 2), 20 epochs, batch 512, 15 % of the runs
validating.

**Development designs** (``--designs``, 5, random with seed ``--dev-seed``, 2000): not the
held-out designs of ``flow_fastsim.py`` (seed 1000), so choosing the ``discrete`` default
here leaves that benchmark's evaluation untouched. At each: ``--events`` (200,000)
simulated and as many generated neutrons per generator; the fractions thermalised and
escaped, the mean of ``ncross`` and the total-variation distance between the simulated and
generated ``ncross`` distributions, and the oracle rate (the exact capture probability
given the track, ``Moderator.capture_probability``, averaged over the events) ÷ the exact
expected rate ``Moderator.expected_rate(θ, "lf")``; on simulated events that ratio is 1 up to
its Monte-Carlo error.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/generate_discrete.py``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from rarefy.config import GenerateConfig
from rarefy.data.events import EventTable
from rarefy.generate import fit_generator
from rarefy.simulators.moderator import PHI_COLUMNS, Moderator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-runs", type=int, default=24)
    ap.add_argument("--train-events", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--designs", type=int, default=5)
    ap.add_argument("--dev-seed", type=int, default=2000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    sim, phi = Moderator(), list(PHI_COLUMNS)
    space = sim.space
    train = space.sample(args.train_runs, "sobol", seed=0)[space.names].to_dict("records")
    events = EventTable.concat([sim.simulate(row, args.train_events, "lf", seed=10_000 + i).with_run(run_id=f"run-{i:03d}")
                                for i, row in enumerate(train)])
    gens, fits = {}, {}
    for mode in ("dequantise", "auto"):
        cfg = GenerateConfig(phi=phi, epochs=args.epochs, batch_size=512, flow={"passes": args.passes}, discrete=mode)
        t0 = time.perf_counter()
        fit = fit_generator(events, space, cfg, seed=args.seed)
        gens[mode] = fit.generator
        fits[mode] = {"train_s": round(time.perf_counter() - t0, 1), "epochs_run": len(fit.history),
                      "categorical": fit.generator.info["categorical"]}

    dev = space.sample(args.designs, "random", seed=args.dev_seed)[space.names].to_dict("records")
    rows = []
    for i, theta in enumerate(dev):
        exact = sim.expected_rate(theta, "lf")
        real = sim.simulate(theta, args.events, "lf", seed=80_000 + i).table
        samples = {"simulated": {c: real.column(c).to_numpy().astype(float) for c in phi}}
        for mode, gen in gens.items():
            x = gen.sample_array(theta, args.events, seed=90_000 + i)
            samples[mode] = {c: x[:, j] for j, c in enumerate(phi)}
        row = {"theta": {k: round(float(v), 4) for k, v in theta.items()}, "exact": exact}
        ref = samples["simulated"]["ncross"]
        top = int(max(s["ncross"].max() for s in samples.values())) + 1
        p_ref = np.bincount(ref.astype(int), minlength=top) / len(ref)
        for name, s in samples.items():
            t = sim.capture_probability(theta, s)
            p = np.bincount(s["ncross"].astype(int), minlength=top) / len(s["ncross"])
            row[name] = {"thermalised": float(np.mean(s["thermalised"] > 0)), "escaped": float(np.mean(s["escaped"] > 0)),
                         "ncross_mean": float(np.mean(s["ncross"])), "ncross_tv": float(0.5 * np.abs(p - p_ref).sum()),
                         "escaped_without_thermalised": float(np.mean((s["escaped"] > 0) & (s["thermalised"] == 0))),
                         "oracle_over_exact": float(np.mean(t) / exact),
                         "oracle_mc_error": float(np.std(t, ddof=1) / np.sqrt(len(t)) / exact)}
        rows.append(row)

    def worst(mode: str, key: str) -> float:
        return float(max(abs(r[mode][key] - r["simulated"][key]) for r in rows))

    summary = {mode: {"max_abs_thermalised_error": worst(mode, "thermalised"),
                      "max_abs_escaped_error": worst(mode, "escaped"),
                      "max_ncross_tv": float(max(r[mode]["ncross_tv"] for r in rows)),
                      "max_abs_oracle_bias": float(max(abs(r[mode]["oracle_over_exact"] - 1) for r in rows))}
               for mode in gens}
    print(json.dumps({"benchmark": "generate_discrete", "train_runs": args.train_runs,
                      "train_events_per_run": args.train_events, "epochs": args.epochs, "passes": args.passes,
                      "dev_seed": args.dev_seed, "designs": args.designs, "events": args.events, "fits": fits,
                      "summary": summary, "per_design": rows, "threads": torch.get_num_threads(),
                      "wall_s": round(time.perf_counter() - t_start, 1)}))


if __name__ == "__main__":
    main()
