"""Nominal compute each strategy needs to learn the BBH merger rate ε(θ) per massive binary ("the method pays off").

Prints ONE JSON line. The analogue of ``benchmarks/hf_budget.py`` for the COSMIC
binary-black-hole example (``examples/bbh``: θ = ``log10_z``, ``alpha_ce``, ``sigma_bh``,
``sigma_ns``; the rate is BBH mergers within 13.7 Gyr per evolved massive binary).

**The truth.** Simulating RESOLVE-size COSMIC runs (5,000 / 200,000 binaries, ~25 ms of
CPU each) for every strategy would cost hundreds of CPU-hours, so the benchmark replaces
COSMIC by a smooth ground-truth surface learned from real COSMIC output: the project's
BBH surrogate (``examples/bbh/infer.yaml``'s count-mode PCE: log-rate Legendre polynomial,
degree by 5-fold CV, fitted by penalised quasi-likelihood to the counts k of n binaries)
fitted once, seed 0, on **all** runs of the example (``rates.parquet`` +
``rates_extra.parquet``: 30 HF runs of 1,000 and 36 LF runs of 300 binaries, 501 mergers),
pooled as one fidelity. The truth is the PCE's median ``exp(μ(θ))`` (the geometric mean of
its central interval, the same for every level), not its log-normal mean.

**Fidelities.** In this project's COSMIC adapter LF and HF are the same physics and
differ only in the number of binaries per run (``CosmicBBH.fidelities``), so both have
the same truth; a run of n binaries at θ has k ~ Binomial(n, truth(θ)) mergers. The
multi-fidelity gain, if any, comes from many cheap noisy runs spread over the space, not
from a cheaper approximate physics. Run sizes are RESOLVE's (the adapter's defaults): LF
5,000 binaries, HF 200,000; at ~25 ms of CPU per massive binary (examples/bbh/README.md:
22–27 ms measured) an LF run costs 0.0347 CPU-h and an HF run 1.39 CPU-h. The relative
Poisson noise 1/√(n ε) is then ~13% (LF) / ~2% (HF) at the space-averaged rate and 27% / 4%
at the median rate (RESOLVE: 16.5% / 1.6%).

**Targets** (as hf_budget): on ``--test`` (200) random designs, 2σ coverage ≥ 0.9 (share
of designs with |mean − truth| ≤ 2 × latent σ) and RMSE ≤ 0.1 × spread (**standard**) or
≤ ``--tight`` (0.01) × spread (**tight**), spread = max − min of the truth over those
designs. 0.01 is the smallest multiple of 0.01 that (d) meets on all of the development
seeds 21–24 (RMSE / spread 0.0067, 0.0085, 0.0094, 0.0085).

Strategies (a)–(c) run the product's own surface loop (:func:`rarefy.jobs.loop.run`,
``loop.goal: surface``: campaign engine, AR1 surrogate, IVR acquisition, stopping rule) on
a Python simulator (:class:`TruthBBH`) that draws the Binomial counts from the truth; the
benchmark watches every round's fit (``on_fit``), and ends the loop once both targets are
met:

* ``a_mf``: fidelities ``lf → hf`` (AR1), initial design ``--lf0`` (32) LF Sobol runs +
  2 HF runs at the first two of them, cost-aware IVR choosing design and fidelity, one run
  a round. 32 initial LF runs were chosen on the development seeds 21–24 (128, 64, 32 and
  16 were tried): every size meets the standard target with its initial design or one or
  two more HF runs; 32 meets it with the initial design on three seeds and one more HF run
  on seed 22, 16 needs two more there, so 32 is the cheapest in the worst case. One initial
  HF run instead of two saves nothing: the loop adds a second before the target is met;
* ``b_lf``: the same loop with LF runs only (the same initial LF design, IVR on the LF
  rate), the LF surface scored against the truth (LF and HF share it);
* ``c_hf``: the same loop with HF runs only, from ``--hf0c`` (2) HF Sobol runs;
* ``d_brute``: ``--d-runs`` (300) HF runs at a scrambled Sobol design, one HF-only GP fit.

Every GP uses ``examples/moderator/run-surface.yaml``'s surrogate settings (AR1, Matérn-5/2,
constant ρ with a Normal(1, 0.5) prior, ``mean_uncertainty``, leave-one-out calibration).
(a)–(c) stop at ``--cap`` × (d)'s compute (0.25), or after ``--rounds`` rounds of
``--batch`` runs. A strategy that does not reach a target reports ``null`` compute and its
final RMSE/coverage.

Keys, for each strategy ``s`` and target ``t`` (``std``, ``tight``): ``<s>_<t>_cpu_h`` (or
null), ``<s>_<t>_fraction_of_d``, ``<s>_<t>_hf_runs``/``<s>_<t>_lf_runs``; ``<s>_rmse``/
``<s>_coverage2``/``<s>_hf_runs``/``<s>_lf_runs``/``<s>_final_cpu_h`` (final),
``<s>_stopped``, ``<s>_wall_s``; ``a_over_b_<t>``, ``a_over_c_<t>``; ``spread``,
``truth_median``, ``truth_mean``, ``n_lf``, ``n_hf``, ``lf_run_cpu_h``, ``hf_run_cpu_h``,
``d_cpu_h``.

Run: ``python benchmarks/bbh_budget.py [--strategies a b c d] [--seed 201]``; ``--quick`` is
a tiny smoke run (20 test designs, 12 LF runs, 2 rounds, 16 runs for (d)); ``--history FILE``
writes every round's RMSE/coverage per strategy. The default seed, 21, is a development
seed (21–24: the tight multiple and ``--lf0`` were chosen on them); docs/benchmarks.md
reports seeds 201–205. About 4 minutes a seed on 2 shared cores, most of it (a)'s 60 fits.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rarefy import AR1Settings, AR1Surrogate, RateTable
from rarefy.config import config_from_dict, load_config
from rarefy.data.rates import count_variance
from rarefy.simulators.cosmic import cosmic_space
from rarefy.surrogate.factory import build_surrogate, load_surrogate
from rarefy.threads import torch_threads

ROOT = Path(__file__).resolve().parents[1]
BBH = ROOT / "examples" / "bbh"
GP_CONFIG = ROOT / "examples" / "moderator" / "run-surface.yaml"
CPU_S_PER_BINARY = 0.025            # COSMIC, one massive binary (examples/bbh/README.md: 22-27 ms)
COST_PER_BINARY = CPU_S_PER_BINARY / 3600.0
N_LF, N_HF = 5_000, 200_000          # RESOLVE's run sizes (CosmicBBH's defaults)
TARGETS = ("std", "tight")
log = logging.getLogger("bbh_budget")


def fit_truth(out: Path) -> Path:
    """Fit the ground-truth surface (infer.yaml's count-mode PCE on all example runs, pooled) and save it in ``out``."""
    space = cosmic_space()
    frame = pd.concat([pd.read_parquet(BBH / "data" / "rates.parquet"),
                       pd.read_parquet(BBH / "data" / "rates_extra.parquet")], ignore_index=True)
    frame["fidelity"] = "hf"   # LF and HF are the same physics: pool every binary
    settings = load_config(BBH / "infer.yaml").surrogate
    with torch_threads(1):
        sur = build_surrogate(settings, space, ["hf"], seed=0).fit(RateTable(frame, space))
    sur.save(out)
    return out


class TruthBBH:
    """A stand-in for COSMIC: k ~ Binomial(n, ε(θ)) mergers of n binaries, ε the saved truth surface.

    ``truth``: the directory :func:`fit_truth` wrote. ``expected_rate(θ, fidelity)`` is
    ε(θ) (mergers per massive binary) for every fidelity. ``simulate`` returns n events
    with ``outcome`` 1 for the k mergers; the seed fixes k.
    """

    def __init__(self, truth: str) -> None:
        self.space = cosmic_space()
        self._pce = load_surrogate(truth)

    def rates(self, x: np.ndarray) -> np.ndarray:
        """ε at the designs ``x`` (n, 4), the PCE's median exp(μ) = √(lower · upper) of any central interval."""
        with torch_threads(1), torch.no_grad():
            lo, hi = self._pce.interval(np.atleast_2d(np.asarray(x, float)), "hf", level=0.5)
        return np.sqrt(lo.numpy() * hi.numpy())

    def expected_rate(self, theta: dict[str, float], fidelity: str = "hf") -> float:
        return float(self.rates(np.array([[float(theta[n]) for n in self.space.names]]))[0])

    def simulate(self, theta: dict[str, float], n: int, fidelity: str, seed: int) -> dict[str, np.ndarray]:
        k = int(np.random.default_rng(seed).binomial(int(n), self.expected_rate(theta, fidelity)))
        outcome = np.zeros(int(n), dtype=np.int8)
        outcome[:k] = 1
        return {"outcome": outcome}


class World:
    """The truth, the test designs with their exact rates, run sizes and costs."""

    def __init__(self, truth: Path, n_test: int, seed: int, tight: float) -> None:
        self.truth_dir = truth
        self.sim = TruthBBH(str(truth))
        self.space = self.sim.space
        self.names = self.space.names
        self.test_x = self.space.sample(n_test, method="random", seed=seed + 7).to_numpy(float)
        self.test_y = self.sim.rates(self.test_x)
        self.spread = float(self.test_y.max() - self.test_y.min())
        self.rmse_target = {"std": 0.1 * self.spread, "tight": tight * self.spread}
        self.lf_cost = N_LF * COST_PER_BINARY
        self.hf_cost = N_HF * COST_PER_BINARY

    def hf_run(self, x: np.ndarray, run_seed: int) -> dict[str, Any]:
        k = int(np.random.default_rng(run_seed).binomial(N_HF, float(self.sim.rates(x[None])[0])))
        return {**dict(zip(self.names, x)), "fidelity": "hf", "k": k, "n": N_HF, "cost_cpu_h": self.hf_cost}

    def score(self, sur: Any, target: str) -> tuple[float, float]:
        with torch_threads(1), torch.no_grad():
            m, s = sur.predict(self.test_x, target)
        err = m.numpy() - self.test_y
        return float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err) <= 2 * s.numpy()))

    def reached(self, rmse: float, cov: float, target: str) -> bool:
        return rmse <= self.rmse_target[target] and cov >= 0.9


class Watch:
    """Records each round's fit against the truth and the compute at which each target is first met."""

    def __init__(self, world: World, name: str) -> None:
        self.world, self.name = world, name
        self.rounds: list[dict[str, Any]] = []
        self.hit: dict[str, dict[str, Any]] = {}

    def __call__(self, sur: Any, target: str, cpu_h: float, hf_runs: int, lf_runs: int) -> bool:
        """Score ``sur``; True once both targets have been met."""
        rmse, cov = self.world.score(sur, target)
        self.rounds.append({"round": len(self.rounds), "cpu_h": cpu_h, "rmse": rmse, "rmse_over_spread":
                            rmse / self.world.spread, "coverage2": cov, "hf_runs": hf_runs, "lf_runs": lf_runs})
        log.info("%s round %d: %.4g CPU-h, %d HF / %d LF runs, RMSE %.3g x spread, coverage %.3f", self.name,
                 len(self.rounds) - 1, cpu_h, hf_runs, lf_runs, rmse / self.world.spread, cov)
        for t in TARGETS:
            if t not in self.hit and self.world.reached(rmse, cov, t):
                self.hit[t] = {"cpu_h": cpu_h, "hf_runs": hf_runs, "lf_runs": lf_runs}
        return all(t in self.hit for t in TARGETS)

    def summary(self) -> dict[str, Any]:
        last = self.rounds[-1]
        out: dict[str, Any] = {"rmse": last["rmse"], "rmse_over_spread": last["rmse_over_spread"],
                               "coverage2": last["coverage2"], "hf_runs": last["hf_runs"], "lf_runs": last["lf_runs"],
                               "final_cpu_h": last["cpu_h"]}
        for t in TARGETS:
            h = self.hit.get(t, {})
            out[f"{t}_cpu_h"] = h.get("cpu_h")
            out[f"{t}_hf_runs"] = h.get("hf_runs")
            out[f"{t}_lf_runs"] = h.get("lf_runs")
        return out


class _Done(Exception):
    """Raised from ``on_fit`` to end the product's loop once both targets are met or the round cap is reached."""


def gp_settings() -> dict[str, Any]:
    """run-surface.yaml's surrogate section (every strategy's GP)."""
    return load_config(GP_CONFIG).surrogate.model_dump(mode="json", exclude_unset=True)


def loop_config(world: World, fids: list[str], campaign: list[dict[str, Any]], seed: int, cap_cpu_h: float,
                rounds: int, batch: int, tight: float) -> Any:
    """A ``rarefy run`` config (``loop.goal: surface``) on :class:`TruthBBH` with fidelities ``fids``."""
    space = cosmic_space()
    params = {p.name: {"low": p.low, "high": p.high} for p in space.parameters}
    events = {"lf": N_LF, "hf": N_HF}
    return config_from_dict({
        "name": "bbh-budget", "seed": seed,
        "space": {"parameters": params},
        "fidelities": [{"name": f, "filter": {"fidelity": f}, "value": "rate", "noise": {"counts": "k", "events": "n"},
                        "events": events[f], "cost_cpu_h_per_event": COST_PER_BINARY} for f in fids],
        "target": fids[-1],
        "surrogate": gp_settings(),
        "simulator": {"kind": "python", "target": "bbh_budget:TruthBBH", "options": {"truth": str(world.truth_dir)}},
        "campaign": {"runs": campaign, "max_retries": 0, "timeout_s": 600, "executor": "sync"},
        "acquisition": {"fidelities": fids, "kind": "ivr", "cost_aware": len(fids) > 1, "candidates": 256,
                        "reference": 64, "starts": 2, "steps": 10},
        "loop": {"goal": "surface", "stop": {"metric": "sigma_over_spread", "below": tight, "designs": 1024},
                 "iterations": rounds, "batch": batch, "budget_cpu_h": cap_cpu_h, "cv_folds": 0},
    })


def run_loop(world: World, name: str, cfg: Any, run_dir: Path) -> dict[str, Any]:
    """Run the product's surface loop on ``cfg``, scoring every round's fit; stop once both targets are met."""
    from rarefy.jobs.loop import run

    watch = Watch(world, name)
    target = cfg.target
    rounds = cfg.loop.iterations

    def on_fit(i: int, sur: Any, cost: dict[str, float]) -> None:
        done = watch(sur, target, cost["total"], round(cost.get("hf", 0.0) / world.hf_cost),
                     round(cost.get("lf", 0.0) / world.lf_cost))
        if done or i >= rounds:
            raise _Done

    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    try:
        res = run(cfg, run_dir, progress=False, on_fit=on_fit)
    except _Done:
        out["stopped"] = "targets met" if len(watch.hit) == len(TARGETS) else f"round cap ({rounds})"
    else:
        out["stopped"] = f"product loop: {res.result['stopped']}"
    out.update(watch.summary())
    out["wall_s"] = time.perf_counter() - t0
    out["history"] = watch.rounds
    return out


def brute(world: World, runs: int, seed: int) -> dict[str, Any]:
    """(d): ``runs`` HF runs at a scrambled Sobol design, one HF-only GP."""
    t0 = time.perf_counter()
    xd = world.space.sample(runs, method="sobol", seed=seed + 1).to_numpy(float)
    frame = pd.DataFrame([world.hf_run(x, seed * 7 + i) for i, x in enumerate(xd)])
    k, n = frame["k"].to_numpy(float), frame["n"].to_numpy(float)
    frame["rate"] = k / n
    frame["var"] = count_variance(k / n, k, n)
    gp = load_config(GP_CONFIG).surrogate
    st = AR1Settings(**{f: getattr(gp, f) for f in gp.AR1_FIELDS})
    with torch_threads(1):
        sur = AR1Surrogate(world.space, ["hf"], st, seed=seed).fit(RateTable(frame, world.space))
    rmse, cov = world.score(sur, "hf")
    cpu_h = runs * world.hf_cost
    res: dict[str, Any] = {"rmse": rmse, "rmse_over_spread": rmse / world.spread, "coverage2": cov, "hf_runs": runs,
                           "lf_runs": 0, "final_cpu_h": cpu_h, "wall_s": time.perf_counter() - t0}
    for t in TARGETS:
        met = world.reached(rmse, cov, t)
        res[f"{t}_cpu_h"] = cpu_h if met else None
        res[f"{t}_hf_runs"] = runs if met else None
        res[f"{t}_lf_runs"] = 0 if met else None
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", nargs="+", default=["a", "b", "c", "d"], choices=["a", "b", "c", "d"])
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--tight", type=float, default=0.01, help="the tight target's RMSE as a multiple of the spread")
    ap.add_argument("--lf0", type=int, default=32, help="initial LF Sobol runs of (a) and (b)")
    ap.add_argument("--hf0", type=int, default=2, help="initial HF runs of (a), at its first LF designs")
    ap.add_argument("--hf0c", type=int, default=2, help="initial HF Sobol runs of (c)")
    ap.add_argument("--d-runs", type=int, default=300, help="HF runs of (d)")
    ap.add_argument("--rounds", type=int, default=60, help="most rounds of (a)-(c)")
    ap.add_argument("--batch", type=int, default=1, help="runs per round of (a)-(c)")
    ap.add_argument("--cap", type=float, default=0.25, help="compute cap of (a)-(c) as a fraction of (d)'s")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (seconds): 20 test designs, few runs/rounds")
    ap.add_argument("--history", type=Path, default=None, help="write every round's RMSE/coverage here (JSON)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every round")
    args = ap.parse_args()
    if args.quick:
        args.test, args.lf0, args.d_runs, args.rounds = 20, 12, 16, 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")
    if not args.verbose:
        log.setLevel(logging.INFO)
    torch.set_num_threads(1)
    hist: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        world = World(fit_truth(Path(tmp) / "truth"), args.test, args.seed, args.tight)
        d_cpu_h = args.d_runs * world.hf_cost
        cap = args.cap * d_cpu_h
        y = world.test_y
        out: dict[str, Any] = {"seed": args.seed, "spread": world.spread, "truth_median": float(np.median(y)),
                               "truth_mean": float(np.mean(y)), "tight": args.tight, "n_lf": N_LF, "n_hf": N_HF,
                               "lf_run_cpu_h": world.lf_cost, "hf_run_cpu_h": world.hf_cost, "d_runs": args.d_runs,
                               "d_cpu_h": d_cpu_h, "cap_cpu_h": cap, "test": args.test, "lf0": args.lf0,
                               "batch": args.batch}
        lf_block = {"fidelity": "lf", "runs": args.lf0, "events": N_LF, "designs": "sobol"}
        for s in args.strategies:
            name = {"a": "a_mf", "b": "b_lf", "c": "c_hf", "d": "d_brute"}[s]
            if s == "d":
                res = brute(world, args.d_runs, args.seed)
            else:
                if s == "a":
                    fids, camp = ["lf", "hf"], [lf_block, {"fidelity": "hf", "runs": args.hf0, "events": N_HF,
                                                           "designs": "lf"}]
                elif s == "b":
                    fids, camp = ["lf"], [lf_block]
                else:
                    fids, camp = ["hf"], [{"fidelity": "hf", "runs": args.hf0c, "events": N_HF, "designs": "sobol"}]
                cfg = loop_config(world, fids, camp, args.seed, cap, args.rounds, args.batch, args.tight)
                res = run_loop(world, name, cfg, Path(tmp) / name)
            hist[name] = res.pop("history", None)
            for k, v in res.items():
                out[f"{name}_{k}"] = v
            for t in TARGETS:
                v = res.get(f"{t}_cpu_h")
                out[f"{name}_{t}_fraction_of_d"] = None if v is None else v / d_cpu_h
            log.info("%s done: %s", name, {k: v for k, v in res.items()})
    for other in ("b_lf", "c_hf"):
        for t in TARGETS:
            a, o = out.get(f"a_mf_{t}_cpu_h"), out.get(f"{other}_{t}_cpu_h")
            out[f"a_over_{other[0]}_{t}"] = None if (a is None or o is None) else a / o
    if args.history is not None:
        args.history.write_text(json.dumps(hist, indent=1))
    print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) and math.isfinite(v) else v)
                      for k, v in out.items()}))


if __name__ == "__main__":
    main()
