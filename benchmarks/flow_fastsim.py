"""Conditional-flow fast simulation of the moderator's LF neutron births: fidelity at held-out designs and speed.

Prints ONE JSON line.

**Setup.** The built-in moderator simulator (``rarefy.simulators.moderator``) draws, per
LF neutron, the birth φ = (``r0_cm``, ``z0_cm``, ``phi0_rad``, ``e0_mev``, ``psi_rad``,
``cosz``, ``t0_ms``). A generator p(φ | θ) (:mod:`rarefy.generate`, NSF, θ in the unit
cube of the moderator's 5-parameter space) is trained on ``--train-runs`` (24) runs of
``--train-events`` (4,000) events at scrambled-Sobol designs (seed 0), with the generate
defaults except the size settings named below; 15 % of the runs (whole designs) validate
and early-stop it. Sizes are small so the whole benchmark runs in a few minutes on one
core.

**Evaluation** at ``--designs`` (5) held-out random designs of the space (seed
``--eval-seed``, 1000; none of them a training design): ``--eval-events`` (5,000)
simulated and as many generated events per design; the classifier two-sample test's
ROC-AUC with its bootstrap error (:func:`rarefy.generate.evaluate.c2st`, target ≤ 0.55),
the same test of the simulated events against a second, independent simulated sample
(``null_auc``: what the test gives when there is no difference),
and per feature the 1-D Wasserstein distance (÷ the simulated std) and χ²/ndf over 20
equiprobable bins. No setting was chosen on these designs: the flow settings are the
generate defaults (NSF, 3 transforms, 64-64, 8 bins) with ``epochs`` 20 and
``batch_size`` 512 fixed before the first run.

**Speed** (same process, one thread): events per second of ``Generator.sample_array`` and
of ``Moderator.simulate`` (LF), ``--speed-events`` (100,000) events at the first held-out
design, best of 3. The moderator is a semi-analytic numpy stand-in; the ratio says what
the flow costs per event, not what it would save against Geant4.

``--phi all`` adds the track columns ``ncross``, ``thermalised`` and ``escaped`` (integers
with few values, drawn from categorical heads given the continuous columns and θ by the
generate default ``discrete: auto``; ``--discrete dequantise`` dequantises them into the flow
instead), which do depend on θ: the panels a neutron crosses. The birth columns alone
do not (an LF neutron's birth is the same whatever the moderator), so ``--phi birth``
tests the fidelity of the density and ``--phi all`` also the conditioning on θ.
``--passes 2`` uses coupling instead of fully autoregressive transforms (faster sampling).

``--denoised-rate`` (implies ``--phi all``) adds the rate check: a small denoiser
(:mod:`rarefy.denoise`, the factorised classifier of ``examples/moderator/denoise.yaml``
with fewer epochs and members: ``--den-runs`` (120) LF runs of ``--den-events`` (50,000)
neutrons at scrambled-Sobol designs (seed 1), ``--den-epochs`` (15) epochs,
``--den-ensemble`` (3) members, each on its own random 90/10 split of the runs) scores
``--rate-events`` (10⁶) generated and as many simulated events at each held-out design. Per
design the denoised rate is the members' mean of the mean per-event probability p̄; its σ
adds in quadrature the ensemble spread (standard deviation of the members' rates, ddof 1)
and the Monte-Carlo error (standard deviation of the ensemble's p̄ over the events ÷ √n).
Both are compared with the exact expected rate ``Moderator.expected_rate(θ, "lf")``
(acceptance: |rate − exact| ≤ 2σ at ≥ 4 of 5 designs); the simulated events are the
reference that separates the generator's effect from the denoiser's own bias. For the same
reason the exact per-event capture probability t(θ, φ) given the track columns is averaged
over both samples too (``oracle_*``: what a perfect denoiser would give). Generated events
carry no outcome; the factorised denoiser reads no context, so their outcome column (0) is
never used.

``--figure PATH`` also writes the per-feature histograms (simulated vs generated) at the
first held-out design.

``--case xlzd`` (needs the ``nest`` extra) runs the same test on the XLZD liquid-xenon TPC
simulated with NEST (``rarefy.simulators.xlzd``, ``examples/xlzd/generate.yaml``): the
generator learns the ER window events' φ = (``s1c_phd``, ``log10_s2c_s1c``, ``z_mm``; S1,
S2 as log10(S2c/S1c), and the depth, which fixes the drift time) conditioned on the four
field/detector settings θ (``drift_field``, ``gas_field``, ``g1``, ``e_lifetime``, designer
ranges of :func:`rarefy.simulators.xlzd.xlzd_space`), from ``--xlzd-runs`` (48) LF runs of
``--xlzd-events`` (4,000) events at scrambled-Sobol designs (seed 0), with the flow settings
of the example's ``generate.flow`` (``--passes`` overrides its ``passes``), 30 epochs, batch
512. At ``--xlzd-designs`` (3) held-out random settings (seed 1000): the C2ST AUC on (S1, S2)
only (target ≤ 0.6) with its null, 5,000 events each.

Speed, same process, one thread, best of 3 (wall clock; the CPU time of the process is
reported too, ``*_cpu``, as it is less disturbed by other jobs on a shared machine), at the
first held-out setting. **Generator**: ``Generator.sample_array`` of ``--xlzd-speed-events``
(100,000) window events, everything a user's call does (θ checks, base draws, the flow's
inverse, the feature map back to φ). **NEST**: what the simulator does to produce the same
ER window events: ⌈n / 0.7⌉ flat 1–15 keV betas at uniform positions in the fiducial volume
through ``nestpy.array.runNESTvec``, then the window cut (S1c, S2c); its time per event is
the whole time divided by the events *kept* in the window (about 82 % here), so the
rejection of events outside the window is part of NEST's cost, as in a simulated run, and
the generator, which draws window events directly, is charged per event it returns.
``gen_over_nest`` = (NEST seconds per kept event) ÷ (generator seconds per event); target
≥ 10. Also against (b) a whole ``XLZD.simulate`` run per stored event (which also simulates
the NR band and the Qββ events the generator does not replace).

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/flow_fastsim.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rarefy.config import GenerateConfig, load_config
from rarefy.data.events import EventTable
from rarefy.generate import Generator, fit_generator
from rarefy.generate.evaluate import c2st, compare
from rarefy.simulators.moderator import BIRTH_COLUMNS, PHI_COLUMNS, Moderator

UNITS = {"r0_cm": "cm", "z0_cm": "cm", "phi0_rad": "rad", "e0_mev": "MeV", "psi_rad": "rad", "cosz": "",
         "t0_ms": "ms", "ncross": "", "thermalised": "", "escaped": ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-runs", type=int, default=24)
    ap.add_argument("--train-events", type=int, default=4000)
    ap.add_argument("--designs", type=int, default=5)
    ap.add_argument("--eval-events", type=int, default=5000)
    ap.add_argument("--eval-seed", type=int, default=1000)
    ap.add_argument("--speed-events", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", default=None)
    ap.add_argument("--phi", choices=["birth", "all"], default="birth",
                    help="birth: the 7 birth columns (independent of θ in the LF moderator); all: also the "
                         "θ-dependent integer track columns ncross, thermalised, escaped")
    ap.add_argument("--passes", type=int, default=None, help="flow.passes (None: fully autoregressive; 2: coupling)")
    ap.add_argument("--discrete", choices=["auto", "dequantise"], default="auto",
                    help="generate.discrete: few-valued integer φ as categorical heads (auto) or dequantised")
    ap.add_argument("--case", choices=["moderator", "xlzd"], default="moderator")
    ap.add_argument("--xlzd-runs", type=int, default=48)
    ap.add_argument("--xlzd-events", type=int, default=4000)
    ap.add_argument("--xlzd-designs", type=int, default=3)
    ap.add_argument("--xlzd-epochs", type=int, default=30)
    ap.add_argument("--xlzd-speed-events", type=int, default=100_000)
    ap.add_argument("--denoised-rate", action="store_true",
                    help="also score generated and simulated events with a denoiser and compare the denoised rate "
                         "with the exact expected rate (implies --phi all)")
    ap.add_argument("--rate-events", type=int, default=1_000_000)
    ap.add_argument("--den-runs", type=int, default=120)
    ap.add_argument("--den-events", type=int, default=50_000)
    ap.add_argument("--den-epochs", type=int, default=15)
    ap.add_argument("--den-ensemble", type=int, default=3)
    args = ap.parse_args()
    if args.denoised_rate:
        args.phi = "all"
    torch.set_num_threads(1)
    if args.case == "xlzd":
        print(json.dumps(_xlzd(args)))
        return
    t_start = time.perf_counter()

    sim = Moderator()
    space = sim.space
    phi = list(BIRTH_COLUMNS) if args.phi == "birth" else list(PHI_COLUMNS)
    fit, cfg, _, train_s = _train_on_simulated(sim, space, args.train_runs, args.train_events, phi, args.epochs, args)
    gen = fit.generator

    held = space.sample(args.designs, "random", seed=args.eval_seed)[space.names].to_dict("records")
    rows = []
    for i, theta in enumerate(held):
        real = sim.simulate(theta, args.eval_events, "lf", seed=20_000 + i).table
        real = _columns(real, phi)
        fake = gen.sample_array(theta, args.eval_events, seed=30_000 + i)
        res = compare(real, fake, phi, seed=i)
        other = sim.simulate(theta, args.eval_events, "lf", seed=40_000 + i).table   # the test's null
        null = c2st(real, _columns(other, phi), seed=i)
        rows.append({"theta": {k: round(float(v), 4) for k, v in theta.items()}, "auc": res["c2st"]["auc"],
                     "auc_err": res["c2st"]["auc_err"], "null_auc": null["auc"],
                     "w1_over_std": {k: v["w1_over_std"] for k, v in res["features"].items()},
                     "chi2_ndf": {k: v["chi2"] / v["ndf"] for k, v in res["features"].items()}})
        if i == 0 and args.figure:
            _figure(real, fake, phi, theta, args.figure)

    theta0, n = held[0], args.speed_events
    gen_s = min(_timed(lambda: gen.sample_array(theta0, n, seed=1)) for _ in range(3))
    sim_s = min(_timed(lambda: sim.simulate(theta0, n, "lf", seed=1)) for _ in range(3))
    rate = _denoised_rates(args, sim, gen, held, phi) if args.denoised_rate else None
    aucs = np.array([r["auc"] for r in rows])
    out = {
        "benchmark": "flow_fastsim", "phi": phi, "flow": dict(cfg.flow.model_dump()), "epochs_run": len(fit.history),
        "discrete": cfg.discrete, "categorical": gen.info["categorical"],
        "train_runs": args.train_runs, "train_events_per_run": args.train_events, "train_s": round(train_s, 1),
        "val_nll": gen.info["val_nll"], "eval_designs": args.designs, "eval_events": args.eval_events,
        "auc_mean": float(aucs.mean()), "auc_max": float(aucs.max()),
        "null_auc_mean": float(np.mean([r["null_auc"] for r in rows])), "auc_target": 0.55,
        "meets_target": bool(aucs.max() <= 0.55), "per_design": rows,
        "gen_events_per_s": n / gen_s, "sim_events_per_s": n / sim_s, "gen_over_sim_speed": sim_s / gen_s,
        "speed_events": n, "threads": torch.get_num_threads(), "wall_s": round(time.perf_counter() - t_start, 1),
    }
    if rate is not None:
        out["denoised_rate"] = rate
        out["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(out))


DENOISE_PHI = ["r0_cm", "z0_cm", "phi0_rad", "e0_mev", "psi_rad", "cosz", "ncross", "thermalised", "escaped"]


def _denoised_rates(args: argparse.Namespace, sim: Moderator, gen: Generator, held: list[dict], phi: list[str]) -> dict:
    """Denoised rate of generated and of simulated events at each held-out design vs the exact expected rate."""
    from rarefy import denoise

    space = sim.space
    t0 = time.perf_counter()
    designs = space.sample(args.den_runs, "sobol", seed=1)[space.names].to_dict("records")
    tables = [sim.simulate(row, args.den_events, "lf", seed=50_000 + i).with_run(run_id=f"den-{i:03d}")
              for i, row in enumerate(designs)]
    data = denoise.from_event_table(EventTable.concat(tables), fidelity="lf", phi=DENOISE_PHI)
    positives = int(data.y.sum())
    del tables
    cfg = {"phi": DENOISE_PHI, "phi_log": "auto", "split": [0.9, 0.1, 0.0],
           "model": {"kind": "factorised", "encoder": [32, 32], "decoder": [64, 64, 32], "rank": 1,
                     "design_widths": []},
           "loss": "bce", "imbalance": [{"epochs": args.den_epochs, "positive_ratio": 3e-4, "max_reuse": 40}],
           "batch_size": 4096, "batches_per_epoch": 250, "lr": 0.002, "lr_schedule": "cosine", "context_size": 64,
           "early_stopping": {"enabled": False}, "device": "cpu", "progress": False}
    members = [denoise.train(data, cfg, space=space, seed=11 + m) for m in range(args.den_ensemble)]
    train_s = time.perf_counter() - t0
    del data

    idx = [phi.index(c) for c in DENOISE_PHI]
    n, chunk = args.rate_events, 250_000
    per_design, hits = [], {"generated": 0, "simulated": 0}
    for i, theta in enumerate(held):
        exact = sim.expected_rate(theta, "lf")
        fake = np.concatenate([gen.sample_array(theta, min(chunk, n - c), seed=60_000 + 1000 * i + c // chunk)
                               for c in range(0, n, chunk)])
        real_t = sim.simulate(theta, n, "lf", seed=70_000 + i).table
        real = _columns(real_t, phi)
        row = {"theta": {k: round(float(v), 4) for k, v in theta.items()}, "exact": exact}
        for name, x in (("generated", fake), ("simulated", real)):
            ev = denoise.EventData.from_arrays(np.repeat([[theta[k] for k in space.names]], len(x), axis=0),
                                               x[:, idx], np.zeros(len(x), np.int8), np.zeros(len(x), np.int8),
                                               theta_names=list(space.names), phi_names=DENOISE_PHI)
            ps = [denoise.score(m, ev, seed=i) for m in members]
            rates = np.array([float(np.mean(s.p, dtype=np.float64)) for s in ps])
            pbar = np.mean([s.p for s in ps], axis=0, dtype=np.float64)
            spread = float(rates.std(ddof=1)) if len(rates) > 1 else 0.0
            mc = float(pbar.std(ddof=1) / np.sqrt(len(pbar)))
            sigma = float(np.hypot(spread, mc))
            r = float(rates.mean())
            oracle_t = sim.capture_probability(theta, {c: x[:, j].astype(np.float64) for j, c in enumerate(phi)})
            within = abs(r - exact) <= 2 * sigma
            hits[name] += int(within)
            row[name] = {"rate": r, "sigma": sigma, "ensemble_spread": spread, "mc_error": mc,
                         "pull": (r - exact) / sigma, "ratio_to_exact": r / exact, "within_2sigma": bool(within),
                         "oracle_rate": float(np.mean(oracle_t)),
                         "oracle_mc_error": float(np.std(oracle_t, ddof=1) / np.sqrt(len(oracle_t))),
                         "thermalised_fraction": float(np.mean(x[:, phi.index("thermalised")] > 0))}
        per_design.append(row)
    return {"rate_events": n, "den_runs": args.den_runs, "den_events_per_run": args.den_events,
            "den_positives": positives, "den_epochs": args.den_epochs, "den_ensemble": args.den_ensemble,
            "den_train_s": round(train_s, 1), "generated_within_2sigma": hits["generated"],
            "simulated_within_2sigma": hits["simulated"], "designs": len(held),
            "meets_target": hits["generated"] >= len(held) - 1, "per_design": per_design}


XLZD_PHI = ["s1c_phd", "log10_s2c_s1c", "z_mm"]
XLZD_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "xlzd" / "generate.yaml"


def _xlzd(args: argparse.Namespace) -> dict:
    """The generator on NEST's XLZD ER window events: C2ST on (S1, S2) at held-out settings and speed vs NEST."""
    from rarefy.simulators.xlzd import XLZD, xlzd_space

    t_start = time.perf_counter()
    sim, space = XLZD(), xlzd_space()
    flow = load_config(XLZD_EXAMPLE).generate.flow.model_dump()
    if args.passes is not None:
        flow["passes"] = args.passes
    fit, cfg, sim_train_s, train_s = _train_on_simulated(sim, space, args.xlzd_runs, args.xlzd_events, XLZD_PHI,
                                                         args.xlzd_epochs, args, flow)
    gen = fit.generator
    held = space.sample(args.xlzd_designs, "random", seed=args.eval_seed)[space.names].to_dict("records")
    rows = []
    for i, theta in enumerate(held):
        real_t = sim.simulate(theta, args.eval_events, "lf", seed=20_000 + i).table
        real = _columns(real_t, XLZD_PHI)
        fake = gen.sample_array(theta, args.eval_events, seed=30_000 + i)
        res = compare(real, fake, XLZD_PHI, seed=i)
        s1s2 = c2st(real[:, :2], fake[:, :2], seed=i)
        other = sim.simulate(theta, args.eval_events, "lf", seed=40_000 + i).table
        null = c2st(real[:, :2], _columns(other, XLZD_PHI[:2]), seed=i)
        rows.append({"theta": {k: round(float(v), 4) for k, v in theta.items()}, "auc_s1s2": s1s2["auc"],
                     "auc_s1s2_err": s1s2["auc_err"], "null_auc_s1s2": null["auc"], "auc_all": res["c2st"]["auc"],
                     "w1_over_std": {k: v["w1_over_std"] for k, v in res["features"].items()},
                     "chi2_ndf": {k: v["chi2"] / v["ndf"] for k, v in res["features"].items()}})

    theta0, n = held[0], args.xlzd_speed_events
    nest_window = nest_window_counter(sim, theta0, n)
    kept = nest_window()
    gen_t = [_timed2(lambda: gen.sample_array(theta0, n, seed=1)) for _ in range(3)]
    nest_t = [_timed2(nest_window) for _ in range(3)]
    gen_s, nest_s = min(t[0] for t in gen_t), min(t[0] for t in nest_t)
    gen_cpu, nest_cpu = min(t[1] for t in gen_t), min(t[1] for t in nest_t)
    run_s = min(_timed(lambda: sim.simulate(theta0, n, "lf", seed=1)) for _ in range(3))
    aucs = np.array([r["auc_s1s2"] for r in rows])
    gen_rate, nest_rate, run_rate = n / gen_s, kept / nest_s, n / run_s
    return {
        "benchmark": "flow_fastsim", "case": "xlzd", "phi": XLZD_PHI, "flow": dict(cfg.flow.model_dump()),
        "epochs_run": len(fit.history), "train_runs": args.xlzd_runs, "train_events_per_run": args.xlzd_events,
        "simulate_train_s": round(sim_train_s, 1), "train_s": round(train_s, 1), "val_nll": gen.info["val_nll"],
        "eval_designs": args.xlzd_designs, "eval_events": args.eval_events,
        "auc_s1s2_mean": float(aucs.mean()), "auc_s1s2_max": float(aucs.max()), "auc_target": 0.6,
        "meets_auc_target": bool(aucs.max() <= 0.6), "per_design": rows,
        "gen_events_per_s": gen_rate, "nest_window_events_per_s": nest_rate, "xlzd_run_events_per_s": run_rate,
        "gen_over_nest": gen_rate / nest_rate, "gen_over_xlzd_run": gen_rate / run_rate,
        "gen_us_per_event_cpu": gen_cpu / n * 1e6, "nest_us_per_window_event_cpu": nest_cpu / kept * 1e6,
        "gen_over_nest_cpu": (nest_cpu / kept) / (gen_cpu / n),
        "meets_speed_target": bool(gen_rate / nest_rate >= 10), "speed_events": n, "nest_window_kept": kept,
        "threads": torch.get_num_threads(), "wall_s": round(time.perf_counter() - t_start, 1),
    }


def nest_window_counter(sim, theta: dict, n: int) -> Callable[[], int]:
    """A call that runs NEST on about n / 0.7 flat 1–15 keV betas in the fiducial volume at ``theta`` (one
    ``runNESTvec``, detector built once outside it) and returns how many pass the S1/S2 window: what the
    simulator pays per kept window event, without its per-run overhead."""
    import nestpy

    det = sim.detector(theta)
    params = {"er_yield_params": list(nestpy.default_er_parameters),
              "nr_yield_params": list(nestpy.default_nr_parameters),
              "width_params": list(nestpy.default_nr_er_width_parameters)}

    def nest_window() -> int:
        rng = np.random.default_rng(1)
        m = math.ceil(n / 0.7)
        arr = nestpy.array.runNESTvec(det, nestpy.interactions.beta, 1.0 + 14.0 * rng.random(m),
                                      np.ascontiguousarray(sim.positions(det, m, rng)),
                                      inField=float(theta["drift_field"]), seed=1, **params)
        return int(sim.in_window(np.asarray(arr["s1c_phd"]), np.asarray(arr["s2c_phd"])).sum())

    return nest_window


def _train_on_simulated(sim, space, runs: int, events: int, phi: list[str], epochs: int,
                        args: argparse.Namespace, flow: dict | None = None
                        ) -> tuple[Any, GenerateConfig, float, float]:
    """Simulate ``runs`` LF runs of ``events`` at Sobol designs and fit the generator of ``phi`` on them with the
    ``flow`` settings (default: the generate defaults, ``--passes``): (the fit, its config, simulation seconds,
    training seconds)."""
    train = space.sample(runs, "sobol", seed=0)[space.names].to_dict("records")
    t0 = time.perf_counter()
    tables = [sim.simulate(row, events, "lf", seed=10_000 + i).with_run(run_id=f"run-{i:03d}")
              for i, row in enumerate(train)]
    sim_s = time.perf_counter() - t0
    cfg = GenerateConfig(phi=phi, epochs=epochs, batch_size=512, flow=flow or {"passes": args.passes},
                         discrete=args.discrete)
    t0 = time.perf_counter()
    fit = fit_generator(EventTable.concat(tables), space, cfg, seed=args.seed)
    return fit, cfg, sim_s, time.perf_counter() - t0


def _columns(table, cols: list[str]) -> np.ndarray:
    """The event table's ``cols`` as one float array (events × columns)."""
    return np.column_stack([table.column(c).to_numpy() for c in cols])


def _timed(f: Callable[[], object]) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def _timed2(f: Callable[[], object]) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of this process) of ``f()``."""
    t, c = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - t, time.process_time() - c


def _figure(real: np.ndarray, fake: np.ndarray, names: list[str], theta: dict, path: str) -> None:
    import matplotlib.pyplot as plt

    rows = (len(names) + 3) // 4 + (len(names) % 4 == 0)
    fig, axes = plt.subplots(rows, 4, figsize=(13, 2.8 * rows))
    for j, (ax, name) in enumerate(zip(axes.flat, names)):
        lo, hi = np.quantile(real[:, j], [0.001, 0.999])
        values = np.unique(real[:, j])
        bins = np.arange(values[0] - 0.5, values[-1] + 1.5) if len(values) <= 12 else np.linspace(lo, hi, 41)
        ax.hist(real[:, j], bins, histtype="step", density=True, label="simulated (moderator)", color="k")
        ax.hist(fake[:, j], bins, histtype="step", density=True, label="generated (flow)", color="C1")
        unit = UNITS.get(name, "")
        ax.set_xlabel(f"{name} [{unit}]" if unit else name)
        ax.set_ylabel(f"density [1/{unit}]" if unit else "density")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("LF neutrons at a held-out design: " + ", ".join(f"{k}={v:.3g}" for k, v in theta.items()),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
