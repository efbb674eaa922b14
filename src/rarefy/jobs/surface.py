"""The surface loop (``rarefy run`` with ``loop.goal: surface``): learn the target rate over the design space.

RESuM's active-learning goal: not one optimal design, but the target-fidelity rate
t̄(θ) everywhere in the space, to an accuracy the user states, for the least compute.

1. **Initial design.** The config's ``campaign`` (e.g. many cheap LF runs plus one or two
   HF runs), through the campaign engine.
2. **Rounds** ``i = 1, 2, …``: fit the surrogate on the run directory's rates (with
   denoised fidelities in the chain, the denoiser is trained once on the initial design's
   events and every new run is scored first, as in the optimum loop), then predict the
   target over ``loop.stop.designs`` feasible Sobol designs and compute the stopping
   metric (:func:`rarefy.diagnostics.validation.surface_accuracy`):

   * ``sigma_over_spread`` — RMS σ ÷ the range of the mean over the central 99% of the
     designs (robust to a few extreme corners): with a calibrated σ, the
     expected RMS error of the surface as a fraction of its range;
   * ``rel_sigma`` — the mean relative σ.

   If the metric is at most ``loop.stop.below`` the loop stops. Otherwise the acquisition
   (``acquisition``; ``ivr`` — integrated variance reduction of the target — is the one
   that serves this goal; with ``cost_aware`` it picks the fidelity by variance reduction
   per nominal CPU-hour) proposes ``loop.batch`` runs, which are simulated. The loop also
   stops after ``loop.iterations`` rounds or when ``loop.budget_cpu_h`` has nothing left.
   Why a stopping rule on the surrogate's own σ: it needs no truth, and the surrogate's σ is
   kept calibrated (``surrogate.calibrate``), which the result's cross-validation checks.
3. **Result.** The final fit is saved to ``RUN_DIR/surrogate``, its prediction over the
   designs to ``RUN_DIR/surface.parquet``, and ``RUN_DIR/result.json`` holds ``goal``,
   ``stop`` (the rule), ``stopped`` (``accuracy``, ``iterations`` or ``budget``),
   ``accuracy`` (the metrics at the end), ``history`` (per round: nominal CPU-hours per
   fidelity and the metrics), ``cost_cpu_h`` (per fidelity, the ``denoiser``'s own CPU-hours
   — wall time × threads — and ``total``), ``runs``, ``cv`` (K-fold cross-validation of the
   final surrogate over the target runs: RMSE and 1/2/3σ coverage) and, for a simulator that
   knows its exact rate (the built-in ``moderator``), ``exact`` (RMSE and 2σ coverage
   against it over the first 200 designs). The report (``RUN_DIR/report/index.html``) shows the
   metric against compute, the calibration and the cost per fidelity.

**Resume.** As the optimum loop: round i's fit, metric and proposals are written to
``RUN_DIR/loop/iter-III.json`` before its runs are simulated, so a rerun after a kill
simulates only what is missing, and a finished run directory simulates nothing. Raising
``loop.iterations`` or the budget, or lowering ``stop.below``, continues the loop.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..acquisition import fidelity_plans, propose
from ..config import RunConfig
from ..data.rundir import SURROGATE_DIR, simulated_rows, write_surface, write_training_rates
from ..diagnostics.validation import surface_accuracy
from ..report.surface_report import surface_report
from ..surrogate.base import Surrogate
from .fit import build_surrogate
from .rundata import cost_by_fidelity
from .simulate import campaign_requests
from .workspace import LoopResult, LoopWorkspace, loop_cross_validation

__all__ = ["run_surface"]

log = logging.getLogger(__name__)

EXACT_DESIGNS = 200   # designs of the exact check (an exact rate can take 0.2 s, as the moderator's)

OnFit = Callable[[int, Surrogate, dict[str, float]], None]


def _stop_reason(cfg: RunConfig, record: dict[str, Any], i: int, left: float | None) -> str | None:
    """Why round ``i`` ends the loop (``accuracy``, ``iterations``, ``budget``), or None."""
    loop = cfg.loop
    assert loop is not None and loop.stop is not None
    if record["accuracy"][loop.stop.metric] <= loop.stop.below:
        return "accuracy"
    if i > loop.iterations:
        return "iterations"
    if left is not None and left <= 0:
        return "budget"
    return None


def run_surface(cfg: RunConfig, config_dir: Path, out: str | Path, progress: bool,
                on_iteration: Callable[[int, int], None] | None, t0: float, source: Any = None,
                on_fit: OnFit | None = None) -> LoopResult:
    """The surface loop of :func:`rarefy.jobs.loop.run` (see the module docstring), in a locked run directory.

    ``on_fit(i, surrogate, cost)`` is called after each round's fit (round 0: the initial
    design) with the nominal CPU-hours spent so far per fidelity (``denoiser`` and ``total``
    included); a resumed round whose fit was recorded is not refitted and not reported.
    """
    loop = cfg.loop
    assert loop is not None and loop.stop is not None
    stop = loop.stop
    ws = LoopWorkspace(cfg, config_dir, out, progress)
    out, space, sim = ws.out, ws.space, ws.simulator
    plans = fidelity_plans(cfg.fidelities, cfg.acquisition.events, sim)
    target = str(cfg.target)
    initial = campaign_requests(cfg, sim, space, source)
    ws.save_config(initial)
    ws(initial)
    designs = space.sample(stop.designs, method="sobol", seed=cfg.seed).to_numpy(float)

    def spent_now() -> dict[str, float]:
        cost = cost_by_fidelity(simulated_rows(out))
        cost["denoiser"] = ws.denoiser_cpu_h
        cost["total"] += cost["denoiser"]
        return cost

    records: list[dict[str, Any]] = []
    stopped, done = "iterations", 0
    last_fit: tuple[Surrogate, Any, np.ndarray, np.ndarray] | None = None   # the stopping round's fit, table,
    # mean and σ over the designs, reused at the end
    for i in range(1, loop.iterations + 2):   # round iterations + 1 only fits and checks
        record = ws.record(f"iter-{i:03d}")
        if record is not None:
            left = None if loop.budget_cpu_h is None else loop.budget_cpu_h - record["spent_cpu_h"]
            reason = _stop_reason(cfg, record, i, left)   # the rule or the caps may have changed since
            if reason is not None:
                record = {**record, "stop": reason}
            elif record.get("stop"):
                record = None
        if record is None:
            table = ws.table()
            cost = spent_now()
            t_fit = time.perf_counter()
            sur = build_surrogate(cfg).fit(table)
            mean, sigma = sur.predict_numpy(designs, target)
            last_fit = (sur, table, mean, sigma)
            acc = surface_accuracy(mean, sigma)
            if on_fit is not None:
                on_fit(i - 1, sur, cost)
            left = None if loop.budget_cpu_h is None else loop.budget_cpu_h - cost["total"]
            record = {"iteration": i, "spent_cpu_h": cost["total"], "cost_cpu_h": cost, "rows": len(table),
                      "rows_per_fidelity": {str(k): int(v) for k, v in table.frame["fidelity"].value_counts().items()},
                      "accuracy": acc, "proposals": []}
            reason = _stop_reason(cfg, record, i, left)
            if reason is None:
                props = propose(sur, cfg.acquisition, plans, q=loop.batch, target=target, observed=table.designs(),
                                seed=cfg.seed + i, budget_cpu_h=left,
                                runs_left=(loop.iterations - i + 1) * loop.batch)
                record["proposals"] = [p.to_dict() for p in props]
                reason = None if props else "budget"
            if reason is not None:
                record["stop"] = reason
            record["seconds"] = time.perf_counter() - t_fit
            ws.save_record(f"iter-{i:03d}", record)
        records.append(record)
        log.info("round %d: %s %.3g (stop at %.3g), %.4g CPU-h", i, stop.metric, record["accuracy"][stop.metric],
                 stop.below, record["spent_cpu_h"])
        if record.get("stop"):
            stopped = record["stop"]
            break
        last_fit = None   # runs are added after this round's fit
        ws.run_iteration(i, record, cfg.seed)
        done = i
        if on_iteration is not None:
            on_iteration(i, loop.iterations)

    # ------------------------------------------------------------ final fit
    if last_fit is not None:   # the stopping round was fitted in this process: nothing has been added since
        sur, table, mean, sigma = last_fit
    else:                      # resumed at a recorded stop: fit once
        table = ws.table()
        sur = build_surrogate(cfg).fit(table)
        mean, sigma = sur.predict_numpy(designs, target)
    sur.save(out / SURROGATE_DIR)
    write_training_rates(out, table)
    frame = pd.DataFrame(designs, columns=space.names).assign(mean=mean, sigma=sigma)
    for prm in space.parameters:
        if prm.integer:
            frame[prm.name] = frame[prm.name].round().astype(int)
    write_surface(out, frame)
    all_rows = simulated_rows(out)
    result: dict[str, Any] = {
        "goal": "surface",
        "target": target,
        "stop": stop.model_dump(),
        "stopped": stopped,
        "accuracy": surface_accuracy(mean, sigma),
        "history": [{"iteration": r["iteration"], "cost_cpu_h": r["cost_cpu_h"], "accuracy": r["accuracy"],
                     "rows_per_fidelity": r["rows_per_fidelity"]} for r in records],
        "cost_cpu_h": spent_now(),
        "runs": {str(k): int(v) for k, v in all_rows["fidelity"].value_counts().items()},
        "iterations": done,
    }
    if hasattr(sim, "expected_rate"):  # a simulator that knows its exact rate (e.g. the moderator)
        n = min(EXACT_DESIGNS, len(designs))
        exact = np.array([float(sim.expected_rate(dict(zip(space.names, map(float, x))), target))
                          for x in designs[:n]])
        err = mean[:n] - exact
        result["exact"] = {"rmse": float(np.sqrt(np.mean(err**2))), "spread": float(exact.max() - exact.min()),
                           "coverage_2sigma": float(np.mean(np.abs(err) <= 2 * sigma[:n])), "designs": n}
    cv = loop_cross_validation(cfg, out, space, done)
    if cv is not None:
        result["cv"] = cv
    ws.save_result(result, surface_report)
    wall = time.perf_counter() - t0
    log.info("surface loop: %d rounds, stopped by %s, %s %.3g, %.4g CPU-h nominal, %.1f s", done, stopped,
             stop.metric, result["accuracy"][stop.metric], result["cost_cpu_h"]["total"], wall)
    if not math.isfinite(result["accuracy"][stop.metric]):
        log.warning("the predicted surface is flat: %s is undefined", stop.metric)
    return LoopResult(result, out, done, wall, ws.executed, records, space=space,
                      rate_unit=cfg.fidelity(target).value_unit)
