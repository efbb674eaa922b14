"""Nominal compute each strategy needs to learn the moderator's HF rate surface ("the method pays off").

Prints ONE JSON line. On the built-in ``moderator`` (exact expected rates known, see
docs/moderator.md), for each strategy the benchmark counts the total nominal compute
(LF + HF CPU-hours at the simulator's per-event costs, plus the denoiser's training and
scoring at wall time × threads) spent when the surrogate's HF prediction first reaches, on
``--test`` (200) random feasible designs, 2σ-coverage ≥ 0.9 (share of designs with
|mean − exact| ≤ 2 × latent σ) and

* the **standard** target: RMSE ≤ 0.1 × spread, and
* the **tight** target: RMSE ≤ ``--tight`` (0.06) × spread,

spread = max − min of the exact HF rate over those designs. 0.06 is the smallest multiple
of 0.01 that (d) meets on all of seeds 11–14 (RMSE / spread 0.054, 0.052, 0.055, 0.048).

Strategies (every surrogate checked after every round):

* ``a_full``: **``rarefy run examples/moderator/run-surface.yaml``** through the product's own
  code (:func:`rarefy.jobs.loop.run` with ``--set seed=S``, ``loop.stop.below`` = the tight
  multiple and ``loop.budget_cpu_h`` = the cap): 500 LF runs + 2 HF runs, the denoiser
  (a factorised per-event classifier, 5 members) trained once on the LF events, the AR1
  chain ``lf-denoised → hf``, cost-aware IVR, one run per round, and the loop's own stopping
  rule (RMS posterior σ over 1,024 Sobol designs ≤ 0.06 × the predicted spread). Its HF runs
  are real moderator simulations. The benchmark watches every round's fit (``on_fit``) to
  find when each target is first met; ``a_stop_*`` is where the product's rule stopped.
* ``b_raw``: the same initial design and acquisition, AR1 chain ``lf → hf`` on raw LF counts
  (a copy of the loop in this script, with the HF-count shortcut below);
* ``c_hf``: an HF-only GP from ``--hf0c`` (2) HF Sobol runs with the same (IVR) acquisition;
* ``d_brute``: 310 HF runs at a scrambled Sobol design, one HF-only GP fit.

Every GP uses run-surface.yaml's ``surrogate`` settings. Run sizes are the config's: an HF
run has 8,000,000 events (5% binomial precision at the median HF rate), an LF run 50,000.

**Documented shortcuts.** (1) In (b)–(d) an HF run's count is drawn as
``k ~ Binomial(n_hf, expected_rate(θ, "hf"))`` instead of simulating 8 million muon-shower
neutrons (the moderator's HF events are Bernoulli with that mean; clustering adds ~1% to
the variance). (2) (d)'s compute is 310 × the HF run cost by definition; its accuracy is
checked by fitting the GP on its 310 drawn runs. (3) (a)–(c) stop at ``--cap`` × (d)'s
compute (default 0.25) or ``--rounds`` rounds (``--a-rounds`` for (a)); (b) and (c) also stop once no HF run
fits in what is left of the cap (LF runs alone barely move the HF level). A strategy that does not reach a
target reports ``null`` compute and its final RMSE/coverage.

Keys, for each strategy ``s`` and target ``t`` (``std``, ``tight``): ``<s>_<t>_cpu_h`` (or
null), ``<s>_<t>_fraction_of_d``, ``<s>_<t>_hf_runs``; ``<s>_rmse``/``<s>_coverage2`` (final),
``<s>_hf_runs``/``<s>_lf_runs`` (final), ``<s>_wall_s``; ``a_stop_cpu_h``, ``a_stop_rmse``,
``a_stop_coverage2``, ``a_stopped``, ``a_denoiser_cpu_h``; ``a_over_b_<t>``, ``a_over_c_<t>``;
``spread``, ``n_hf``, ``hf_run_cpu_h``, ``lf_run_cpu_h``, ``d_cpu_h``.

Run: ``python benchmarks/hf_budget.py [--strategies a b c d] [--seed 11] [--workdir DIR]``.
``--workdir`` keeps (a)'s run directory (``DIR/seed<S>``); a rerun resumes it (a finished
one simulates nothing, but then the per-round fits are not seen again: use a fresh folder).
``--history FILE`` writes every round's RMSE/coverage per strategy. (a) takes ~15 min on
2 cores (most of it training the denoiser's 5 members), (b) and (c) a few minutes each.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import rarefy
from rarefy import AR1Settings, AR1Surrogate, RateTable
from rarefy.acquisition import Acquisition, FidelityPlan
from rarefy.campaign import run_seed
from rarefy.config import load_config
from rarefy.data.rates import count_variance
from rarefy.threads import torch_threads

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "moderator" / "run-surface.yaml"
log = logging.getLogger("hf_budget")
TARGETS = ("std", "tight")


class World:
    """The moderator, the test designs with their exact HF rates, run sizes and costs."""

    def __init__(self, n_test: int, seed: int, lf_events: int, hf_events: int, tight: float) -> None:
        self.sim = rarefy.simulators.get("moderator")
        self.space = self.sim.space
        self.names = self.space.names
        self.test_x = self.space.sample(n_test, method="random", seed=seed + 7).to_numpy(float)
        self.test_y = np.array([self._exact(x) for x in self.test_x])
        self.spread = float(self.test_y.max() - self.test_y.min())
        self.rmse_target = {"std": 0.1 * self.spread, "tight": tight * self.spread}
        self.n_hf = int(hf_events)
        self.n_lf = int(lf_events)
        fid = self.sim.fidelities
        self.hf_cost = self.n_hf * fid["hf"].cost_cpu_h_per_event
        self.lf_cost = self.n_lf * fid["lf"].cost_cpu_h_per_event
        self.seed = seed

    def _exact(self, x: np.ndarray) -> float:
        return float(self.sim.expected_rate(dict(zip(self.names, map(float, x))), "hf"))

    def hf_run(self, x: np.ndarray, run_seed: int) -> dict[str, Any]:
        p = self._exact(x)
        k = int(np.random.default_rng(run_seed).binomial(self.n_hf, p))
        return {**dict(zip(self.names, x)), "fidelity": "hf", "k": k, "n": self.n_hf, "cost_cpu_h": self.hf_cost}

    def lf_run(self, x: np.ndarray, run_seed: int) -> dict[str, Any]:
        ev = self.sim.simulate(dict(zip(self.names, map(float, x))), self.n_lf, "lf", seed=run_seed)
        return {**dict(zip(self.names, x)), "fidelity": "lf", "k": int(ev.k), "n": self.n_lf, "cost_cpu_h": self.lf_cost}

    def score(self, sur: Any, target: str = "hf") -> tuple[float, float]:
        with torch_threads(1), torch.no_grad():
            m, s = sur.predict(self.test_x, target)
        m, s = m.numpy(), s.numpy()
        err = m - self.test_y
        return float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err) <= 2 * s))

    def reached(self, rmse: float, cov: float, target: str) -> bool:
        return rmse <= self.rmse_target[target] and cov >= 0.9



def rate_table(rows: list[dict[str, Any]], space: Any) -> RateTable:
    """Rows as a RateTable: counted runs get rate = k/n with count noise; denoised rows keep their rate and var."""
    frame = pd.DataFrame(rows)
    if "rate" not in frame:
        frame["rate"] = np.nan
        frame["var"] = np.nan
    raw = frame["rate"].isna().to_numpy()
    k, n = frame["k"].to_numpy(float)[raw], frame["n"].to_numpy(float)[raw]
    frame.loc[raw, "rate"] = k / n
    frame.loc[raw, "var"] = count_variance(k / n, k, n)
    return RateTable(frame, space)



def settings(restarts: int) -> AR1Settings:
    """run-surface.yaml's surrogate settings (every strategy's GP)."""
    sc = load_config(CONFIG).surrogate
    kw = {k: getattr(sc, k) for k in ("kernel", "rho", "nugget", "max_iter", "output", "rho_prior", "mean_uncertainty",
                                      "calibrate") if hasattr(sc, k)}
    return AR1Settings(**{**kw, "restarts": restarts})


class Watch:
    """Records each round's fit against the truth and the compute at which each target is first met."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.rounds: list[dict[str, Any]] = []
        self.hit: dict[str, dict[str, Any]] = {}

    def __call__(self, sur: Any, cpu_h: float, hf_runs: int, lf_runs: int) -> bool:
        """Score ``sur``; True once both targets have been met."""
        rmse, cov = self.world.score(sur)
        self.rounds.append({"round": len(self.rounds), "cpu_h": cpu_h, "rmse": rmse, "coverage2": cov,
                            "hf_runs": hf_runs, "lf_runs": lf_runs})
        log.warning("round %d: %.4g CPU-h, %d HF / %d LF runs, RMSE %.3g (targets %.3g / %.3g), coverage %.2f",
                    len(self.rounds) - 1, cpu_h, hf_runs, lf_runs, rmse, self.world.rmse_target["std"],
                    self.world.rmse_target["tight"], cov)
        for t in TARGETS:
            if t not in self.hit and self.world.reached(rmse, cov, t):
                self.hit[t] = {"cpu_h": cpu_h, "hf_runs": hf_runs, "lf_runs": lf_runs}
        return all(t in self.hit for t in TARGETS)

    def summary(self) -> dict[str, Any]:
        last = self.rounds[-1]
        out: dict[str, Any] = {"rmse": last["rmse"], "coverage2": last["coverage2"], "hf_runs": last["hf_runs"],
                               "lf_runs": last["lf_runs"], "final_cpu_h": last["cpu_h"]}
        for t in TARGETS:
            h = self.hit.get(t, {})
            out[f"{t}_cpu_h"] = h.get("cpu_h")
            out[f"{t}_hf_runs"] = h.get("hf_runs")
        return out


class RoundCap(Exception):
    """Raised from (a)'s ``on_fit`` to end the product's loop after ``--a-rounds`` rounds."""


def strategy_a(world: World, seed: int, cap_cpu_h: float, tight: float, rounds: int, run_dir: Path) -> dict[str, Any]:
    """``rarefy run examples/moderator/run-surface.yaml`` (the product's surface loop), watched round by round.

    The loop runs with the config's own ``loop.iterations`` (so its acquisition values a run
    slot as the config says); after ``rounds`` rounds the benchmark ends it from ``on_fit``.
    """
    from rarefy.jobs.loop import run

    watch = Watch(world)

    def on_fit(i: int, sur: Any, cost: dict[str, float]) -> None:
        watch(sur, cost["total"], round(cost.get("hf", 0.0) / world.hf_cost), round(cost.get("lf", 0.0) / world.lf_cost))
        if i >= rounds:
            raise RoundCap

    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    try:
        res = run(CONFIG, run_dir, progress=False, on_fit=on_fit,
                  overrides=[f"seed={seed}", f"loop.stop.below={tight}", f"loop.budget_cpu_h={cap_cpu_h}"])
    except RoundCap:
        out.update(stop_cpu_h=None, stopped=f"benchmark cap of {rounds} rounds", stop_rmse=None, stop_coverage2=None)
    else:
        r = res.result
        from rarefy.surrogate.factory import load_surrogate

        out.update(stop_cpu_h=r["cost_cpu_h"]["total"], stopped=r["stopped"])
        # the product's own final surface, scored on the benchmark's test designs
        out["stop_rmse"], out["stop_coverage2"] = world.score(load_surrogate(run_dir / "surrogate"))
    out.update(watch.summary())
    den = run_dir / "loop" / "denoiser.json"
    out["denoiser_cpu_h"] = json.loads(den.read_text())["cpu_h"] if den.exists() else 0.0
    out["wall_s"] = time.perf_counter() - t0
    out["history"] = watch.rounds
    return out


def loop(world: World, fidelities: list[str], initial: list[dict[str, Any]], cap_cpu_h: float, rounds: int,
         seed: int) -> dict[str, Any]:
    """(b)/(c): fit -> check -> propose (cost-aware IVR, one run) -> simulate, until both targets or the cap."""
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    n_lf = 0

    def add(new: list[dict[str, Any]]) -> None:
        nonlocal n_lf
        for r in new:
            x = np.array([r[n] for n in world.names])
            if r["fidelity"] == "lf":
                rows.append(world.lf_run(x, seed * 1_000_003 + n_lf))
                n_lf += 1
            else:
                rows.append(world.hf_run(x, seed * 1_000_003 + 500_000 + len(rows)))

    add(initial)
    watch = Watch(world)
    plans = {"lf": FidelityPlan("lf", world.n_lf, world.lf_cost), "hf": FidelityPlan("hf", world.n_hf, world.hf_cost)}
    for r in range(rounds + 1):
        table = rate_table([x for x in rows if x["fidelity"] in fidelities], world.space)
        sur = AR1Surrogate(world.space, fidelities, settings(2), seed=seed + r).fit(table)
        spent = float(sum(x["cost_cpu_h"] for x in rows))
        if watch(sur, spent, sum(x["fidelity"] == "hf" for x in rows), n_lf):
            break
        left = cap_cpu_h - spent
        if r == rounds or left < world.hf_cost:   # no HF run fits: LF runs alone would not change the HF level much
            break
        acq = Acquisition(sur, {f: plans[f] for f in fidelities}, kind="ivr", cost_aware=len(fidelities) > 1,
                          target="hf", observed=table.designs(), n_reference=64, seed=seed + r)
        acq.slot_cost_cpu_h = left / (rounds - r)  # opportunity cost of a run slot, as rarefy run does
        props = acq.propose(1, candidates=256, starts=2, steps=10, seed=seed + 31 * r, budget_cpu_h=left)
        if not props:
            break
        add([{**p.theta, "fidelity": p.fidelity} for p in props])
    out = watch.summary()
    out["history"] = watch.rounds
    out["wall_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", nargs="+", default=["a", "b", "c", "d"], choices=["a", "b", "c", "d"])
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--tight", type=float, default=0.06, help="the tight target's RMSE as a multiple of the spread")
    ap.add_argument("--hf0c", type=int, default=2, help="initial HF Sobol runs of (c)")
    ap.add_argument("--rounds", type=int, default=300, help="most rounds of (b) and (c)")
    ap.add_argument("--a-rounds", type=int, default=300,
                    help="end (a) after this many rounds (its HF runs are real simulations; default: the config's)")
    ap.add_argument("--cap", type=float, default=0.25, help="compute cap of (a)-(c) as a fraction of (d)'s")
    ap.add_argument("--workdir", type=Path, default=None, help="keep (a)'s run directory here (DIR/seed<S>)")
    ap.add_argument("--history", type=Path, default=None, help="write every round's RMSE/coverage here (JSON)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    cfg = load_config(CONFIG)
    events = {f.name: f.events for f in cfg.fidelities}
    world = World(args.test, args.seed, events["lf-denoised"], events["hf"], args.tight)
    d_cpu_h = 310 * world.hf_cost
    cap = args.cap * d_cpu_h
    out: dict[str, Any] = {"seed": args.seed, "spread": world.spread, "tight": args.tight, "n_hf": world.n_hf,
                           "hf_run_cpu_h": world.hf_cost, "lf_run_cpu_h": world.lf_cost, "d_cpu_h": d_cpu_h,
                           "cap_cpu_h": cap, "test": args.test}
    # (a)'s initial design, as the campaign plans it: block 0 LF Sobol, block 1 HF at the first LF designs
    blocks = cfg.campaign.runs
    lf0 = world.space.sample(blocks[0].runs, method="sobol", seed=run_seed(args.seed, 1_000_000) % (2**32)).to_numpy(float)
    hf0 = blocks[1].runs

    def design(x: np.ndarray, fid: str) -> list[dict[str, Any]]:
        return [{**dict(zip(world.names, xi)), "fidelity": fid} for xi in x]

    hist: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for s in args.strategies:
            if s == "d":
                t0 = time.perf_counter()
                xd = world.space.sample(310, method="sobol", seed=args.seed + 1).to_numpy(float)
                rows = [world.hf_run(x, args.seed * 7 + i) for i, x in enumerate(xd)]
                sur = AR1Surrogate(world.space, ["hf"], settings(2), seed=args.seed).fit(rate_table(rows, world.space))
                rmse, cov = world.score(sur)
                res = {"rmse": rmse, "coverage2": cov, "hf_runs": 310, "lf_runs": 0, "wall_s": time.perf_counter() - t0}
                for t in TARGETS:
                    res[f"{t}_cpu_h"] = d_cpu_h if world.reached(rmse, cov, t) else None
            elif s == "a":
                base = args.workdir if args.workdir is not None else Path(tmp)
                res = strategy_a(world, args.seed, cap, args.tight, args.a_rounds, base / f"seed{args.seed}")
            elif s == "b":
                res = loop(world, ["lf", "hf"], design(lf0, "lf") + design(lf0[:hf0], "hf"), cap, args.rounds,
                           args.seed)
            else:
                xc = world.space.sample(args.hf0c, method="sobol", seed=args.seed).to_numpy(float)
                res = loop(world, ["hf"], design(xc, "hf"), cap, args.rounds, args.seed)
            name = {"a": "a_full", "b": "b_raw", "c": "c_hf", "d": "d_brute"}[s]
            hist[name] = res.pop("history", None)
            for k, v in res.items():
                out[f"{name}_{k}"] = v
            for t in TARGETS:
                v = res.get(f"{t}_cpu_h")
                out[f"{name}_{t}_fraction_of_d"] = None if v is None else v / d_cpu_h
    for other in ("b_raw", "c_hf"):
        for t in TARGETS:
            a, o = out.get(f"a_full_{t}_cpu_h"), out.get(f"{other}_{t}_cpu_h")
            out[f"a_over_{other[0]}_{t}"] = None if (a is None or o is None) else a / o
    if args.history is not None:
        args.history.write_text(json.dumps(hist, indent=1))
    print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
