"""Nominal compute each strategy needs to learn the moderator's HF rate ("the method pays off").

Prints ONE JSON line. On the built-in ``moderator`` (exact expected rates known, see
docs/moderator.md), for each strategy the benchmark counts the total nominal compute
(LF + HF, CPU-hours at the simulator's per-event costs) spent when the surrogate's
HF prediction first reaches, on ``--test`` (200) random feasible designs,

* MSE ≤ (0.1 × spread)², spread = max − min of the exact HF rate over those designs, and
* 2σ-coverage ≥ 0.9 (share of designs with |mean − exact| ≤ 2 × latent σ).

Strategies (each a closed loop of fit → acquire → simulate, built from rarefy's
components; checked after every round):

* ``a_full``: rarefy's full loop — the denoiser (``examples/moderator/denoise.yaml``
  settings) trained once on the initial LF runs' events, every LF run scored, AR1 chain
  ``lf-denoised → hf``; cost-aware IVR acquisition (LF or HF by value per CPU-hour, a run
  costing at least the compute left under the cap per run slot left, as in ``rarefy run``);
* ``b_raw``: the same without the denoiser: AR1 chain ``lf → hf`` on raw LF counts;
* ``c_hf``: an HF-only GP with the same (IVR) acquisition, HF runs only;
* ``d_brute``: HF runs at a 310-point scrambled Sobol design, one HF-only GP fit.

Run sizes as the real study: an HF run has ``n_hf = ceil(1 / (0.05² × median HF rate))``
events (5% binomial precision at the median HF rate over the test designs), an LF run
50,000 events. Initial designs: ``--lf0`` LF Sobol runs plus ``--hf0`` HF runs at the
first LF designs for (a)/(b); ``--hf0c`` HF Sobol runs for (c).

**Documented shortcuts (what keeps this to about an hour on 2 busy cores).**
(1) An HF run's count is drawn as ``k ~ Binomial(n_hf, expected_rate(θ, "hf"))`` instead of
simulating ~8 million muon-shower neutrons (the moderator's HF events are Bernoulli with that
mean, clustering adds ~1% to the variance; the HF events are never used: the denoiser trains on
LF events). LF runs are real ``simulate`` calls (their events feed the denoiser).
(2) (d)'s compute is 310 × the HF run cost by definition; its accuracy is still checked
by actually fitting the GP on its 310 drawn runs.
(3) (a)–(c) stop at a cap of ``--cap`` × (d)'s compute (default 0.25) or ``--rounds``
rounds; a strategy that does not reach the criteria reports ``null`` compute and its
final MSE/coverage.

Keys: ``<s>_cpu_h`` (compute at which the criteria were first met, or null),
``<s>_fraction_of_d``, ``<s>_rmse``/``<s>_coverage2`` (at that point, or final),
``<s>_hf_runs``/``<s>_lf_runs``, ``<s>_wall_s``; ``spread``, ``rmse_target``, ``n_hf``,
``hf_run_cpu_h``, ``lf_run_cpu_h``, ``d_cpu_h``; ``a_over_b`` and ``a_over_c``.

Run: ``python benchmarks/hf_budget.py [--strategies a b c d] [--seed 11] [--cap 0.25]``.
Defaults: 500 initial LF runs and 3 initial HF runs for (a)/(b) (LF runs cost 0.15 CPU-h,
so 500 of them are 0.02% of (d)), 6 for (c), one run per round (the criteria are checked
after every run, as for (c); bigger batches overstate a strategy's compute by up to a
batch) for up to 320 rounds, and the identity output for every strategy. With ``--output
log`` the IVR, computed in rate units through the delta method, sends the first HF runs to
the corner radius 90 cm / thickness 2 cm, whose rate (up to 2.3× the median) the test designs
hardly ever reach, and (a) needs more HF runs from 3 initial ones than from 8 Sobol ones
(seeds 11 and 13 not met by 24 and 8 HF runs with log, met at 8 and 4 with identity). Every GP adds the uncertainty of its target level's mean and ρ
(``surrogate.mean_uncertainty``; ``--no-mean-uncertainty`` turns it off): with 8–10 HF runs
the plug-in intervals are too narrow. The denoiser is denoise.yaml's: an ensemble of 5 members
(30 epochs each) trained once on the initial LF runs' events, with denoise.yaml's rule for
the positive oversampling scaled to the number of runs (each training positive about once
per epoch: 3 per batch for 500 runs, instead of denoise.yaml's 1 for 200). ``--cnp-rank K``
overrides the rank of its design interaction (docs/denoise.md, "Extreme designs need rank ≥ 2").
The lf-denoised rows carry the φ-sampling variance only (:func:`rarefy.denoise.aggregate_frame`;
``--cnp-model-error`` adds the denoiser's conservative model σ̄² as in earlier versions).

**Reusing a trained denoiser.** The denoiser depends only on ``--seed``, ``--cnp-rank``, ``--lf0`` and
``--lf-events``, not on ``--hf0`` or the acquisition, and training it is ~90% of (a)'s wall time at 1 thread.
``--cnp-cache DIR`` keeps the members in ``DIR/seed<S>-rank<R>-runs<N>x<events>/member-<i>`` and
reuses them. ``--cnp-members I ...`` trains only those members into the cache and stops, so
the members can be trained in parallel processes; ``--cnp-device cuda`` trains on a GPU
(scores are always computed on the CPU). For example::

    for m in 0 1 2 3 4; do python benchmarks/hf_budget.py --seed 12 --cnp-cache runs/cnp --cnp-members $m & done; wait
    python benchmarks/hf_budget.py --strategies a --seed 12 --cnp-cache runs/cnp --hf0 3

``--history FILE`` writes every round's RMSE/coverage and each strategy's HF runs (θ, k, n).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import yaml

import rarefy
from rarefy import AR1Settings, AR1Surrogate, RateTable
from rarefy.acquisition import Acquisition, FidelityPlan
from rarefy.config import DenoiseConfig
from rarefy.data.rates import count_variance
from rarefy.threads import torch_threads

ROOT = Path(__file__).resolve().parents[1]
DENOISE = yaml.safe_load((ROOT / "examples" / "moderator" / "denoise.yaml").read_text())["denoise"]
PHI = list(DENOISE["phi"])  # birth φ and the track record (docs/moderator.md), as the acceptance run
log = logging.getLogger("hf_budget")


class World:
    """The moderator, the test designs with their exact HF rates, run sizes and costs."""

    def __init__(self, n_test: int, seed: int, lf_events: int) -> None:
        self.sim = rarefy.simulators.get("moderator")
        self.space = self.sim.space
        self.names = self.space.names
        self.test_x = self.space.sample(n_test, method="random", seed=seed + 7).to_numpy(float)
        self.test_y = np.array([self._exact(x) for x in self.test_x])
        self.spread = float(self.test_y.max() - self.test_y.min())
        self.rmse_target = 0.1 * self.spread
        med = float(np.median(self.test_y))
        self.n_hf = int(math.ceil(1.0 / (0.05**2 * med)))
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

    def nth_lf_run(self, x: np.ndarray, i: int, seed: int) -> tuple[dict[str, Any], "LFEvents"]:
        """The loop's i-th LF run (0-based): its simulation seed and run id follow from i and the loop's seed."""
        return self.lf_run(x, seed * 1_000_003 + i, f"lf-{i:05d}")

    def lf_run(self, x: np.ndarray, run_seed: int, run_id: str) -> tuple[dict[str, Any], "LFEvents"]:
        ev = self.sim.simulate(dict(zip(self.names, map(float, x))), self.n_lf, "lf", seed=run_seed)
        k = int(ev.k)
        row = {**dict(zip(self.names, x)), "fidelity": "lf", "k": k, "n": self.n_lf, "cost_cpu_h": self.lf_cost,
               "run_id": run_id}
        phi = np.column_stack([ev.table.column(c).to_numpy(zero_copy_only=False) for c in PHI]).astype(np.float32)
        return row, LFEvents(run_id, np.asarray(x, dtype=float), phi, ev.outcome.astype(np.float32))

    def score(self, sur: Any, target: str = "hf") -> tuple[float, float]:
        with torch_threads(1), torch.no_grad():
            m, s = sur.predict(self.test_x, target)
        m, s = m.numpy(), s.numpy()
        err = m - self.test_y
        return float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err) <= 2 * s))

    def reached(self, rmse: float, cov: float) -> bool:
        return rmse <= self.rmse_target and cov >= 0.9


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


@dataclass
class LFEvents:
    """One LF run's events, kept compact (float32 φ, no per-event strings) so that 1,000+ runs fit in memory."""

    run_id: str
    theta: np.ndarray
    phi: np.ndarray
    y: np.ndarray


def event_data(runs: list[LFEvents], theta_names: list[str]) -> Any:
    """The runs as one rarefy.denoise EventData (runs in run-id order, as EventData.from_arrays sorts them)."""
    from rarefy.denoise.data import EventData

    runs = sorted(runs, key=lambda r: r.run_id)
    starts = np.concatenate([[0], np.cumsum([len(r.y) for r in runs])])
    return EventData(np.stack([r.theta for r in runs]), np.concatenate([r.phi for r in runs]),
                     np.concatenate([r.y for r in runs]), starts, [r.run_id for r in runs], list(theta_names),
                     list(PHI), ["lf"] * len(runs), None)


class CNPStage:
    """Train the denoiser once on LF events; score each LF run -> an lf-denoised row (rarefy.denoise public functions).

    With ``denoise.ensemble: K`` (denoise.yaml) K members are trained, member i with seed + i
    (its own train/val split of the runs), and their scores averaged as ``rarefy denoise``
    does (:func:`rarefy.denoise.average_scores`).
    """

    def __init__(self, seed: int, workdir: Path, rank: int | None = None, cache: Path | None = None,
                 device: str = "cpu", only: list[int] | None = None, model_error: bool = False) -> None:
        raw = dict(DENOISE)
        if rank is not None:
            raw["model"] = {**raw["model"], "rank": rank}
        raw.update(progress=False, tensorboard=False, device=device, checkpoint=False, test_blocks=[],
                   split=[0.9, 0.1, 0.0])
        self.cfg = DenoiseConfig.model_validate(raw)
        self.seed = seed
        self.workdir = workdir
        self.cache = cache
        self.only = only   # train just these members into the cache (parallel training), then stop
        self.model_error = model_error   # add the model's σ̄² to each row's var (aggregate_frame)
        self.members: list[Any] = []

    @property
    def trained(self) -> bool:
        return bool(self.members)

    def train(self, events: list[LFEvents], space: Any) -> float:
        from rarefy.denoise import train
        from rarefy.jobs.denoise import member_dirs

        t0 = time.perf_counter()
        data = event_data(events, space.names)
        # denoise.yaml's rule, scaled to this many runs: each training positive about once per
        # epoch (there: ~300 positives, 1 per batch of 250 batches; here ~800 for 500 runs)
        phase = self.cfg.imbalance[0]
        positives = float(data.y.sum()) * self.cfg.split[0]
        per_batch = max(1, round(positives / self.cfg.batches_per_epoch))
        phase.positive_ratio = per_batch / self.cfg.batch_size
        log.warning("denoiser: %d positives in %d runs -> %d pool positives per batch", int(data.y.sum()), len(events),
                    per_batch)
        folder = self.workdir / "cnp"
        if self.cache is not None:
            # the denoiser depends only on the seed, the initial LF runs and the model, not on --hf0
            per_run = len(data.y) // len(events)
            folder = self.cache / f"seed{self.seed}-rank{self.cfg.model.rank}-runs{len(events)}x{per_run}"
        dirs = member_dirs(folder, self.cfg.ensemble)
        if self.only is not None:
            for i in self.only:
                train(data, self.cfg, out=dirs[i], space=space, seed=self.seed + i)
            return time.perf_counter() - t0
        if self.cache is not None and all((d / "model.pt").exists() for d in dirs):
            log.warning("denoiser: reusing the %d members in %s", len(dirs), folder)
            self.members = [str(d) for d in dirs]
        else:
            self.members = [train(data, self.cfg, out=d, space=space, seed=self.seed + i)
                            for i, d in enumerate(dirs)]
            if self.cfg.device != "cpu":
                self.members = [str(d) for d in dirs]   # scored on the CPU from model.pt
        return time.perf_counter() - t0

    def rows(self, events: list[LFEvents], space: Any, chunk: int = 100) -> list[dict[str, Any]]:
        from rarefy.denoise import aggregate_frame, average_scores, score

        out: list[dict[str, Any]] = []
        for i in range(0, len(events), chunk):
            data = event_data(events[i:i + chunk], space.names)
            sc = average_scores([score(m, data, seed=self.seed) for m in self.members])
            out.extend(aggregate_frame(sc, suffix="-denoised", model_error=self.model_error).to_dict(orient="records"))
        return out


def loop(world: World, fidelities: list[str], initial: Callable[[], list[dict[str, Any]]], cap_cpu_h: float,
         rounds: int, batch: int, seed: int, cnp: CNPStage | None = None, restarts: int = 2,
         output: str = "identity", mean_uncertainty: bool = True) -> dict[str, Any]:
    """Fit -> check -> propose (cost-aware IVR over the allowed fidelities) -> simulate, until reached or capped."""
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    cnp_rows: list[dict[str, Any]] = []
    events: list[LFEvents] = []   # kept until the denoiser is trained, then dropped
    n_lf = 0

    def add(new: list[dict[str, Any]]) -> None:
        nonlocal n_lf
        fresh = []
        for r in new:
            if r["fidelity"] == "lf":
                row, ev = world.nth_lf_run(np.array([r[n] for n in world.names]), n_lf, seed)
                n_lf += 1
                rows.append(row)
                fresh.append(ev)
                if cnp is not None and not cnp.trained:
                    events.append(ev)
            else:
                rows.append(world.hf_run(np.array([r[n] for n in world.names]), seed * 1_000_003 + 500_000 + len(rows)))
        if cnp is not None and fresh:
            if not cnp.trained:
                sec = cnp.train(events, world.space)
                log.warning("denoiser trained on %d LF runs in %.0f s", len(events), sec)
                events.clear()
            cnp_rows.extend(cnp.rows(fresh, world.space))

    add(initial())
    history = []
    out: dict[str, Any] = {"cpu_h": None}
    plans = {"lf": FidelityPlan("lf", world.n_lf, world.lf_cost), "lf-denoised": FidelityPlan("lf-denoised", world.n_lf,
             world.lf_cost, simulate="lf"), "hf": FidelityPlan("hf", world.n_hf, world.hf_cost)}
    for r in range(rounds + 1):
        frame_rows = [x for x in rows if x["fidelity"] in fidelities] + [x for x in cnp_rows if x["fidelity"] in fidelities]
        table = rate_table(frame_rows, world.space)
        settings = AR1Settings(restarts=restarts if r == 0 else 1, rho_prior=0.5 if len(fidelities) > 1 else None,
                               output=output, mean_uncertainty=mean_uncertainty)
        sur = AR1Surrogate(world.space, fidelities, settings, seed=seed + r).fit(table)
        rmse, cov = world.score(sur)
        spent = float(sum(x["cost_cpu_h"] for x in rows))
        n_hf = sum(x["fidelity"] == "hf" for x in rows)
        history.append({"round": r, "cpu_h": spent, "rmse": rmse, "coverage2": cov, "hf_runs": n_hf,
                        "lf_runs": n_lf})
        log.warning("%s round %d: %.4g CPU-h, %d HF / %d LF runs, RMSE %.3g (target %.3g), coverage %.2f",
                    "/".join(fidelities), r, spent, n_hf, n_lf, rmse, world.rmse_target, cov)
        out.update(rmse=rmse, coverage2=cov, hf_runs=n_hf, lf_runs=n_lf, final_cpu_h=spent)
        if world.reached(rmse, cov):
            out["cpu_h"] = spent
            break
        left = cap_cpu_h - spent
        if r == rounds or left < min(p.cost_cpu_h for f, p in plans.items() if f in fidelities):
            break
        acq = Acquisition(sur, {f: plans[f] for f in fidelities}, kind="ivr", cost_aware=len(fidelities) > 1,
                          target="hf", observed=table.designs(), n_reference=64, seed=seed + r)
        acq.slot_cost_cpu_h = left / ((rounds - r) * batch)  # opportunity cost of a run slot, as rarefy run does
        props = acq.propose(batch, candidates=256, starts=2, steps=10, seed=seed + 31 * r, budget_cpu_h=left)
        if not props:
            break
        add([{**p.theta, "fidelity": p.fidelity} for p in props])
    out["history"] = {"rounds": history, "hf_runs": [{n: float(x[n]) for n in world.names + ["k", "n"]}
                                                      for x in rows if x["fidelity"] == "hf"]}
    out["wall_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", nargs="+", default=["a", "b", "c", "d"], choices=["a", "b", "c", "d"])
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--lf-events", type=int, default=50_000)
    ap.add_argument("--lf0", type=int, default=500, help="initial LF Sobol runs of (a) and (b)")
    ap.add_argument("--hf0", type=int, default=3, help="initial HF runs of (a) and (b), at the first LF designs")
    ap.add_argument("--hf0c", type=int, default=6, help="initial HF Sobol runs of (c)")
    ap.add_argument("--batch", type=int, default=1,
                    help="runs per round of (a) and (b); (c) takes batch // 4, at least 1")
    ap.add_argument("--rounds", type=int, default=320)
    ap.add_argument("--cap", type=float, default=0.25, help="compute cap of (a)-(c) as a fraction of (d)'s")
    ap.add_argument("--output", choices=["identity", "log"], default="identity",
                    help="the AR1 surrogates' output transform (rarefy's surrogate.output)")
    ap.add_argument("--mean-uncertainty", action=argparse.BooleanOptionalAction, default=True,
                    help="every GP adds the uncertainty of its target level's mean and ρ (surrogate.mean_uncertainty)")
    ap.add_argument("--cnp-rank", type=int, default=None,
                    help="rank of the factorised classifier's design interaction (default: denoise.yaml's)")
    ap.add_argument("--cnp-cache", type=Path, default=None,
                    help="keep the trained denoiser members here and reuse them (they depend on seed, rank, --lf0, --lf-events only)")
    ap.add_argument("--cnp-device", default="cpu", help="torch device the denoiser trains on (cpu, cuda)")
    ap.add_argument("--cnp-model-error", action="store_true",
                    help="add the denoiser's conservative model σ̄² to each lf-denoised row's variance (the earlier variance)")
    ap.add_argument("--cnp-members", type=int, nargs="+", default=None,
                    help="only train these denoiser members into --cnp-cache and stop (to train them in parallel)")
    ap.add_argument("--history", type=Path, default=None, help="write every round's RMSE/coverage here (JSON)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    world = World(args.test, args.seed, args.lf_events)
    d_cpu_h = 310 * world.hf_cost
    cap = args.cap * d_cpu_h
    out: dict[str, Any] = {"spread": world.spread, "rmse_target": world.rmse_target, "n_hf": world.n_hf,
                           "hf_run_cpu_h": world.hf_cost, "lf_run_cpu_h": world.lf_cost, "d_cpu_h": d_cpu_h,
                           "cap_cpu_h": cap, "test": args.test}
    sobol = world.space.sample(max(args.lf0, args.hf0c), method="sobol", seed=args.seed).to_numpy(float)
    hist: dict[str, Any] = {}

    def design(x: np.ndarray, fid: str) -> list[dict[str, Any]]:
        return [{**dict(zip(world.names, xi)), "fidelity": fid} for xi in x]

    if args.cnp_members is not None:
        if args.cnp_cache is None:
            ap.error("--cnp-members needs --cnp-cache")
        xs = sobol[:args.lf0]
        events = [world.nth_lf_run(x, i, args.seed)[1] for i, x in enumerate(xs)]
        stage = CNPStage(args.seed, args.cnp_cache, args.cnp_rank, args.cnp_cache, args.cnp_device, args.cnp_members)
        print(json.dumps({"seed": args.seed, "members": args.cnp_members, "train_s": stage.train(events, world.space)}))
        return
    mf_initial = lambda: design(sobol[:args.lf0], "lf") + design(sobol[:args.hf0], "hf")  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        for s in args.strategies:
            if s == "d":
                t0 = time.perf_counter()
                xd = world.space.sample(310, method="sobol", seed=args.seed + 1).to_numpy(float)
                rows = [world.hf_run(x, args.seed * 7 + i) for i, x in enumerate(xd)]
                settings = AR1Settings(restarts=2, output=args.output, mean_uncertainty=args.mean_uncertainty)
                sur = AR1Surrogate(world.space, ["hf"], settings, seed=args.seed).fit(rate_table(rows, world.space))
                rmse, cov = world.score(sur)
                res = {"cpu_h": d_cpu_h, "rmse": rmse, "coverage2": cov, "hf_runs": 310, "lf_runs": 0,
                       "reached": world.reached(rmse, cov), "wall_s": time.perf_counter() - t0}
            elif s == "a":
                res = loop(world, ["lf-denoised", "hf"], mf_initial, cap, args.rounds, args.batch, args.seed,
                           cnp=CNPStage(args.seed, Path(tmp), args.cnp_rank, args.cnp_cache, args.cnp_device,
                                        model_error=args.cnp_model_error), output=args.output,
                           mean_uncertainty=args.mean_uncertainty)
            elif s == "b":
                # raw LF counts include k = 0 runs (~1.8 captures per run), which a log output cannot
                # take, so (b) keeps the identity output
                res = loop(world, ["lf", "hf"], mf_initial, cap, args.rounds, args.batch, args.seed,
                           mean_uncertainty=args.mean_uncertainty)
            else:
                res = loop(world, ["hf"], lambda: design(sobol[:args.hf0c], "hf"), cap, args.rounds,
                           max(args.batch // 4, 1), args.seed, output=args.output,
                           mean_uncertainty=args.mean_uncertainty)
            name = {"a": "a_full", "b": "b_raw", "c": "c_hf", "d": "d_brute"}[s]
            hist[name] = res.pop("history", None)
            for k, v in res.items():
                out[f"{name}_{k}"] = v
            out[f"{name}_fraction_of_d"] = None if res["cpu_h"] is None else res["cpu_h"] / d_cpu_h
    for other in ("b_raw", "c_hf"):
        a, o = out.get("a_full_cpu_h"), out.get(f"{other}_cpu_h")
        out[f"a_over_{other[0]}"] = None if (a is None or o is None) else a / o
    if args.history is not None:
        args.history.write_text(json.dumps(hist, indent=1))
    print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
