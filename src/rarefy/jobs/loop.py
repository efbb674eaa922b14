"""The closed loop (``rarefy run CONFIG --out RUN_DIR``): simulate, fit, acquire, repeat, verify.

1. **Initial design.** The config's ``campaign`` (e.g. Sobol LF runs plus a few HF runs)
   runs through the campaign engine (:func:`rarefy.campaign.run_campaign`).
2. **Iterations** ``i = 1 … loop.iterations``: fit the AR1 surrogate on the run
   directory's rates (raw ``k/n`` with count noise, campaign + ingested runs), propose a
   batch of ``loop.batch`` runs with the ``acquisition`` settings, and simulate them.
   **Denoiser.** When the fidelity chain names denoised fidelities (``lf-denoised``; needs a
   ``denoise`` section), the first fit trains the denoiser on the initial design's events
   (:func:`rarefy.train_denoiser`, once, resumable) and every fit first scores the runs
   not yet scored (:func:`rarefy.denoise_run`), so the ``-denoised`` rates enter the AR1 chain
   (:func:`rarefy.jobs.rundata.update_denoised`). An ``lf-denoised`` proposal simulates an ``lf``
   run; costs are counted on the simulated runs only. Stops early when the nominal budget
   ``loop.budget_cpu_h`` (minus the verification runs' cost) has nothing left.
3. **Optimum.** Refit on everything, save the surrogate to ``RUN_DIR/surrogate``,
   minimise the predicted target rate (``optimize`` settings) → θ*.
4. **Verification.** ``loop.verify.runs`` target-fidelity runs at θ* (and at the baseline
   design, when the baseline is a design), pooled: ``k/n ± sqrt(k)/n``. With
   ``loop.verify.reduction_sigma`` the number of runs is sized to the predicted gain
   (:func:`verification_size`: the verified reduction's 1σ at most that fraction of the
   predicted reduction), between ``runs`` and ``max_runs`` (its compute cap, beyond
   ``loop.budget_cpu_h``, which reserves the ``runs`` only); the
   result's ``verification`` says how many were needed and what limited them. Then a
   second look (:func:`follow_up_size`): when the first runs measured a gain they do not
   confirm, more runs, sized to the *measured* gain, within ``max_runs`` in all
   (``verification.follow_up``). ``gain_confirmed`` says whether the verified reduction
   of all the runs is at least 2σ above zero.
5. **Cross-validation** (``loop.cv_folds``, default 5) of the final surrogate over the
   target runs -> ``RUN_DIR/loop/cv_predictions.csv``, ``loop/cv.json`` and ``cv`` in
   ``result.json`` (the report's calibration plot).
6. ``RUN_DIR/result.json``: ``optimum``, ``predicted_rate``, ``predicted_sigma``,
   ``verified_rate``, ``verified_sigma``, ``baseline_rate``, ``reduction`` (from the
   verified rate when there is one), ``cost_cpu_h`` (``total`` and per fidelity), ``provenance``
   (:func:`rarefy.provenance.provenance`), and more;
   ``RUN_DIR/report/`` (``index.html`` + PNG plots, :func:`rarefy.report.loop_report.loop_report`).

**Resume.** Every run has a deterministic id and seed: ``run-NNNNN`` for the initial
design (as ``rarefy simulate``), ``loop-III-JJ`` (catalog index ``100000 + 1000·i + j``) for
run j of iteration i, ``verify-JJ`` / ``baseline-JJ`` for verification. Each iteration's
proposals are written to ``RUN_DIR/loop/iter-III.json`` *before* they are simulated, and θ*
to ``RUN_DIR/loop/optimum.json`` before verification, so a rerun after ``kill -9`` reads
them back instead of refitting, maps onto the same catalog rows and simulates only the
runs that are not ``done``. Rerunning a finished run directory simulates nothing;
raising ``loop.iterations`` continues where it stopped (the optimum is then recomputed).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from ..acquisition import fidelity_plans, propose
from ..campaign import run_seed
from ..config import RunConfig, as_config
from ..data.rates import RateTable
from ..data.rundir import SURROGATE_DIR, check_out_dir, run_dir_lock, simulated_rows, \
    write_training_rates
from ..data.store import RunRequest
from ..errors import InputError
from ..report.loop_report import loop_report
from .fit import build_surrogate
from ..optim.design import baseline_of, optimize_design
from .rundata import cost_by_fidelity, denoised_fidelities
from .simulate import campaign_requests
from .workspace import BASELINE_BASE, VERIFY_BASE, LoopResult, LoopWorkspace, loop_cross_validation, loop_request_id

__all__ = ["LoopResult", "run", "loop_request_id", "verification_size", "follow_up_size"]

log = logging.getLogger(__name__)

def _pooled(rates: pd.DataFrame, prefix: str) -> tuple[float, float, int, int]:
    rows = rates[rates["run_id"].astype(str).str.startswith(prefix)]
    k, n = float(rows["k"].sum()), float(rows["n"].sum())
    if n <= 0:
        return float("nan"), float("nan"), 0, 0
    return k / n, math.sqrt(max(k, 1.0)) / n, int(k), int(n)


def verification_size(rate: float, baseline: float | None, baseline_sigma: float | None, *, paired: bool,
                      fraction: float, events: int, min_runs: int, max_runs: int) -> dict[str, Any]:
    """How many verification runs make the verified reduction's 1σ at most ``fraction`` × the predicted one.

    ``rate``: predicted target rate at θ* and ``baseline`` the baseline rate (per event);
    the predicted reduction is R = 1 − rate/baseline. With N verification events the
    verified rate's variance is rate/N (Poisson), so the reduction's is
    ``rate/(N b²) + (rate·σ_b/b²)²`` for a known baseline ``b ± σ_b``, and
    ``(rate/b²)(1 + rate/b)/N`` when the baseline design is verified with as many events
    (``paired``). Solving σ_R ≤ ``fraction`` × R for N gives the runs of ``events`` events,
    kept within ``[min_runs, max_runs]`` (``max_runs`` is the verification's compute cap).

    Returns ``runs`` (what to simulate), ``needed`` (runs for the target σ; None when no
    number of runs reaches it: R ≤ 0, or a known baseline's own σ is already too large),
    ``reduction_sigma_target`` (fraction × R, or None) and ``limited_by`` (None or ``max_runs``).
    """
    out: dict[str, Any] = {"runs": min_runs, "needed": None, "reduction_sigma_target": None, "limited_by": None}
    if not baseline or baseline <= 0 or not math.isfinite(rate) or rate < 0 or events < 1:
        return out
    red = 1.0 - rate / baseline
    if red <= 0:
        return out
    goal = fraction * red
    out["reduction_sigma_target"] = goal
    if paired:
        n_events = (rate / baseline**2) * (1.0 + rate / baseline) / goal**2
    else:
        room = goal**2 - (rate * (baseline_sigma or 0.0) / baseline**2) ** 2
        n_events = rate / (baseline**2 * room) if room > 0 else math.inf
    if math.isfinite(n_events):
        out["needed"] = max(int(math.ceil(n_events / events)), 1)
    want = max(out["needed"] or max_runs + 1, min_runs)
    out["runs"] = max(min(want, max_runs), min_runs)
    if out["runs"] < want:
        out["limited_by"] = "max_runs"
    return out


POWER_Z = 0.8416   # the second look confirms a true gain as large as measured with 80% probability: z of 0.8


def follow_up_size(rate: float, baseline: float | None, baseline_sigma: float | None, *, paired: bool, events: int,
                   runs: int, max_runs: int) -> dict[str, Any]:
    """The verification's second look: how many more runs would confirm the reduction the first ``runs`` measured.

    ``rate`` is the verified rate of the first ``runs`` runs and ``baseline`` the baseline
    rate (verified at the baseline design when ``paired``), per event. The measured
    reduction R = 1 − rate/baseline is confirmed at 2σ when its σ is at most R/2; the
    first look already does that, or R ≤ 0 (no gain to confirm), and then no runs are
    added. Otherwise, by :func:`verification_size` at the *measured* rates with fraction
    1/(2 + 0.84), enough runs in all that a true gain as large as measured is confirmed at
    2σ with 80% probability (the usual power of a sample-size calculation; fraction 1/2
    would give 50%), within ``max_runs`` in all. Why a second look: the first size comes from the surrogate's
    predicted reduction, which on rare-event rates is often optimistic (a predicted 22%
    that is truly 7% needs 6× the runs to confirm); the measured rate is the better guide.
    Two looks at 2σ raise the chance of confirming a gain that is not there from 2.3% to
    about 4% (Armitage, McPherson & Rowe 1969).

    Returns ``runs`` (how many to add), ``measured_reduction`` and ``reason``.
    """
    out: dict[str, Any] = {"runs": 0, "measured_reduction": None, "reason": "no baseline"}
    if not baseline or baseline <= 0 or not math.isfinite(rate):
        return out
    red = 1.0 - rate / baseline
    out["measured_reduction"] = red
    if red <= 0:
        out["reason"] = "no measured gain"
        return out
    n = events * runs
    sigma = math.sqrt(rate / n / baseline**2 * ((1.0 + rate / baseline) if paired else 1.0)
                      + (0.0 if paired else (rate * (baseline_sigma or 0.0) / baseline**2) ** 2))
    if red >= 2.0 * sigma:
        out["reason"] = "confirmed by the first runs"
        return out
    need = verification_size(rate, baseline, None if paired else baseline_sigma, paired=paired,
                             fraction=1.0 / (2.0 + POWER_Z),
                             events=events, min_runs=runs, max_runs=max(max_runs, runs))
    out["runs"] = need["runs"] - runs
    out["reason"] = "capped by max_runs" if need["limited_by"] else "sized to the measured gain"
    return out


def run(config: RunConfig | str | os.PathLike[str], out: str | os.PathLike[str], *, progress: bool = True,
        on_iteration: Callable[[int, int], None] | None = None, overrides: Sequence[str] = (),
        on_fit: Callable[[int, Any, dict[str, float]], None] | None = None) -> LoopResult:
    """Run (or resume) the closed loop of ``config`` in ``out``; CLI: ``rarefy run CONFIG --out RUN_DIR``.

    ``progress`` shows the campaign engine's progress bars; ``on_iteration(i, total)`` is
    called after each finished iteration. See the module docstring for what is written.
    The run directory's lock is held throughout (a second process on it fails at once);
    an output directory that is not a campaign run directory, or whose catalog holds a
    different initial design, is refused before anything is written into it.
    ``overrides``: ``KEY=VALUE`` config overrides (``--set``), see :mod:`rarefy.config.load`.
    With ``loop.goal: surface`` the loop learns the target rate over the space instead
    (:mod:`rarefy.jobs.surface`); ``on_fit(i, surrogate, cost_cpu_h)`` is then called after
    each round's fit.
    """
    t0 = time.perf_counter()
    cfg, source = as_config(config, overrides)
    config_dir = source.absolute().parent if source is not None else Path.cwd()
    if cfg.loop is None or cfg.simulator is None or cfg.campaign is None:
        raise InputError("'rarefy run' needs 'simulator', 'campaign' (the initial design) and 'loop' sections",
                         file=source)
    if cfg.objectives and cfg.loop.goal == "surface":
        raise InputError("loop.goal: surface learns one target rate; drop 'objectives' or use goal 'optimum'",
                         file=source)
    check_out_dir(out, "run")
    with run_dir_lock(out, "rarefy run", kind="run"):
        if cfg.loop.goal == "surface":
            from .surface import run_surface

            return run_surface(cfg, config_dir, out, progress, on_iteration, t0, source, on_fit)
        if cfg.objectives:  # two or more objectives: the multi-objective loop (rarefy.jobs.pareto)
            from .pareto import run_pareto

            return run_pareto(cfg, config_dir, out, progress=progress, on_iteration=on_iteration, source=source)
        return _single_objective(cfg, config_dir, out, progress, on_iteration, t0, source)


def _single_objective(cfg: RunConfig, config_dir: Path, out: str | os.PathLike[str], progress: bool,
                      on_iteration: Callable[[int, int], None] | None, t0: float, source: Any = None) -> LoopResult:
    """The single-objective loop of :func:`run` (see the module docstring), in a locked run directory."""
    loop = cfg.loop
    assert loop is not None
    use_cnp = bool(denoised_fidelities(cfg))  # fails early (before any simulation) for -denoised names without 'denoise'
    if cfg.denoise is not None and not use_cnp:
        log.warning("the config has a 'denoise' section but no '<fidelity>-denoised' fidelity: the loop fits raw rates")
    simulate = LoopWorkspace(cfg, config_dir, out, progress)
    out, space, sim = simulate.out, simulate.space, simulate.simulator
    plans = fidelity_plans(cfg.fidelities, cfg.acquisition.events, sim)
    target = str(cfg.target)
    v_events = loop.verify.events or plans[target].events
    if loop.verify.runs and not v_events:
        raise InputError(f"loop.verify: give 'events' (fidelity {target!r} has no default)")
    v_cost = plans[target].cost_cpu_h / plans[target].events * v_events if plans[target].events else float("nan")
    n_verify_sets = 2 if (cfg.baseline is not None and cfg.baseline.design is not None) else 1
    verify_cost = loop.verify.runs * n_verify_sets * (v_cost if math.isfinite(v_cost) else 0.0)
    initial = campaign_requests(cfg, sim, space, source)
    simulate.save_config(initial)

    simulate(initial)
    records: list[dict[str, Any]] = []
    done_iterations = 0
    for i in range(1, loop.iterations + 1):
        record = simulate.record(f"iter-{i:03d}")
        if record is None:
            table = simulate.table()
            spent = cost_by_fidelity(simulated_rows(out))["total"]
            left = None if loop.budget_cpu_h is None else loop.budget_cpu_h - spent - verify_cost
            if left is not None and left <= 0:
                log.info("budget reached: %.4g of %.4g CPU-h spent (%.4g kept for verification)", spent,
                         loop.budget_cpu_h, verify_cost)
                break
            t_fit = time.perf_counter()
            sur = build_surrogate(cfg).fit(table)
            opt = optimize_design(sur, cfg.optimize, target=target, seed=cfg.seed, observed=table.designs())
            props = propose(sur, cfg.acquisition, plans, q=loop.batch, target=target, observed=table.designs(),
                            seed=cfg.seed + i, budget_cpu_h=left, runs_left=(loop.iterations - i + 1) * loop.batch)
            record = {
                "iteration": i, "spent_cpu_h": spent, "rows": len(table),
                "rows_per_fidelity": {str(k): int(v) for k, v in table.frame["fidelity"].value_counts().items()},
                "predicted_optimum": {"theta": opt.theta, "rate": opt.rate, "sigma": opt.sigma},
                "proposals": [p.to_dict() for p in props], "seconds": time.perf_counter() - t_fit,
            }
            simulate.save_record(f"iter-{i:03d}", record)
        if not simulate.run_iteration(i, record, cfg.seed):
            log.info("iteration %d: nothing affordable left to propose", i)
            break
        records.append(record)
        done_iterations = i
        log.info("iteration %d: %s", i, ", ".join(f"{p['fidelity']}" for p in record["proposals"]))
        if on_iteration is not None:
            on_iteration(i, loop.iterations)

    # ---------------------------------------------------------------- optimum
    opt_rec = simulate.record("optimum")
    if opt_rec is not None and opt_rec.get("iterations") != done_iterations:
        opt_rec = None  # more iterations ran since: recompute
    if opt_rec is None:
        table = simulate.table()
        if "run_id" in table.frame.columns:  # verification runs of an earlier, shorter loop stay out of the fit
            table = RateTable(table.frame[~table.frame["run_id"].astype(str).str.match(r"^(verify|baseline)-")], space)
        sur = build_surrogate(cfg).fit(table)
        sur.save(out / SURROGATE_DIR)
        write_training_rates(out, table)
        base = baseline_of(cfg.baseline, target, sur, sim)
        opt = optimize_design(sur, cfg.optimize, target=target, seed=cfg.seed, observed=table.designs(),
                              baseline=base)
        opt_rec = {"iterations": done_iterations, **opt.to_dict(),
                   "baseline_design": None if base is None else base.design}
        if loop.verify.reduction_sigma is not None and v_events:   # size the verification to the predicted gain
            opt_rec["verification"] = verification_size(
                opt_rec["rate"], opt_rec.get("baseline_rate"), opt_rec.get("baseline_sigma"),
                paired=bool(opt_rec["baseline_design"]), fraction=loop.verify.reduction_sigma, events=int(v_events),
                min_runs=loop.verify.runs, max_runs=loop.verify.max_runs)
        simulate.save_record("optimum", opt_rec)
    theta_star = space.round_theta(opt_rec["theta"])

    # ----------------------------------------------------------- verification
    tag = f"{done_iterations:03d}"
    sizing = opt_rec.get("verification")
    n_verify = sizing["runs"] if sizing else loop.verify.runs

    def verify_requests(runs: range) -> list[RunRequest]:
        """Verification runs ``runs`` at θ* (and as many at the baseline design, when there is one)."""
        reqs: list[RunRequest] = []
        for j in runs:
            idx = VERIFY_BASE + 1000 * done_iterations + j
            reqs.append(RunRequest(f"verify-{tag}-{j:02d}", idx, target, theta_star, int(v_events),
                                   run_seed(cfg.seed, idx), v_cost))
            if opt_rec.get("baseline_design"):
                idx_b = BASELINE_BASE + 1000 * done_iterations + j
                reqs.append(RunRequest(f"baseline-{tag}-{j:02d}", idx_b, target,
                                       space.round_theta(opt_rec["baseline_design"]), int(v_events),
                                       run_seed(cfg.seed, idx_b), v_cost))
        return reqs

    verify = verify_requests(range(n_verify))
    if verify:
        simulate(verify)
    b_rate, b_sigma = opt_rec.get("baseline_rate"), opt_rec.get("baseline_sigma")
    if sizing and n_verify:   # second look: enough runs to confirm the gain the first ones measured
        follow = simulate.record(f"verify-follow-up-{tag}")
        if follow is None:
            rows0 = simulated_rows(out)
            first = [f"verify-{tag}-{j:02d}" for j in range(n_verify)]
            v0, _, _, _ = _pooled(rows0[rows0["run_id"].isin(first)], "verify-")
            b0, bs0 = b_rate, b_sigma
            if opt_rec.get("baseline_design"):
                b0, bs0, _, _ = _pooled(rows0[rows0["run_id"].isin([f.replace("verify", "baseline") for f in first])],
                                        "baseline-")
            follow = follow_up_size(v0, b0, bs0, paired=bool(opt_rec.get("baseline_design")), events=int(v_events),
                                    runs=n_verify, max_runs=loop.verify.max_runs)
            simulate.save_record(f"verify-follow-up-{tag}", follow)
        more = verify_requests(range(n_verify, n_verify + follow["runs"]))
        if more:
            log.info("verification: %d more run(s) at θ* to confirm the measured gain", follow["runs"])
            simulate(more)
        sizing = {**sizing, "follow_up": follow}
    all_rows = simulated_rows(out)  # campaign + ingested runs, no denoised rows
    rates = all_rows
    v_rate, v_sigma, v_k, v_n = _pooled(rates, f"verify-{tag}-")
    b_source = opt_rec.get("baseline_source")
    if opt_rec.get("baseline_design") and n_verify:
        b_rate, b_sigma, _, _ = _pooled(rates, f"baseline-{tag}-")
        b_source = "verified at the baseline design"
    result: dict[str, Any] = {
        "optimum": theta_star,
        "target": target,
        "objective": opt_rec["objective"],
        "predicted_rate": opt_rec["rate"],
        "predicted_sigma": opt_rec["sigma"],
        "verified_rate": None if v_n == 0 else v_rate,
        "verified_sigma": None if v_n == 0 else v_sigma,
        "verified_k": v_k, "verified_n": v_n,
        "baseline_rate": b_rate, "baseline_sigma": b_sigma, "baseline_source": b_source,
        "reduction": None, "reduction_sigma": None,
        "predicted_reduction": opt_rec.get("reduction"), "predicted_reduction_sigma": opt_rec.get("reduction_sigma"),
        "cost_cpu_h": cost_by_fidelity(all_rows),
        "runs": {str(k): int(v) for k, v in all_rows["fidelity"].value_counts().items()},
        "iterations": done_iterations,
    }
    if b_rate:
        rate, sig = (v_rate, v_sigma) if v_n else (opt_rec["rate"], opt_rec["sigma"])
        result["reduction"] = 1.0 - rate / b_rate
        result["reduction_sigma"] = math.sqrt((sig / b_rate) ** 2 + (rate * (b_sigma or 0.0) / b_rate**2) ** 2)
        if v_n:   # the verified gain is confirmed when it is at least 2σ above zero
            result["gain_confirmed"] = bool(result["reduction"] >= 2.0 * result["reduction_sigma"] > 0)
    if sizing:
        result["verification"] = {**sizing, "events_per_run": int(v_events)}
    if hasattr(sim, "expected_rate"):  # a simulator that knows its exact expectation (e.g. the moderator)
        result["expected_rate"] = float(sim.expected_rate(theta_star, target))
    cv = loop_cross_validation(cfg, out, space, done_iterations)
    if cv is not None:
        result["cv"] = cv
    simulate.save_result(result, loop_report)
    wall = time.perf_counter() - t0
    log.info("closed loop: %d iterations, θ* = %s, predicted %.4g ± %.2g, verified %s, %.4g CPU-h nominal, %.1f s",
             done_iterations, space.format_theta(theta_star), result["predicted_rate"], result["predicted_sigma"],
             "-" if v_n == 0 else f"{v_rate:.4g} ± {v_sigma:.2g}", result["cost_cpu_h"]["total"], wall)
    return LoopResult(result, out, done_iterations, wall, simulate.executed, records, space=space,
                      rate_unit=cfg.fidelity(target).value_unit)
