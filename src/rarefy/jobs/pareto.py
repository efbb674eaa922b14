"""Multi-objective closed loop: one surrogate per objective, Pareto acquisition (botorch), the estimated front.

``rarefy run CONFIG --out RUN_DIR`` takes this path when the config lists two or more
``objectives`` (:class:`rarefy.config.ObjectiveConfig`); the single-objective loop of
:mod:`rarefy.jobs.loop` is unchanged otherwise.

1. **Objectives per run** (:func:`objective_tables`). Each finished run of the run
   directory gives one value per objective with its noise variance: ``rate`` is the event
   outcome's k/n with binomial noise (from ``rates.parquet``); ``mean`` / ``std`` /
   ``rel_std`` are statistics of a per-event column of the run's event shard with their
   analytic standard errors (:func:`rarefy.simulators.xlzd.relative_std` for std/mean).
   ``log10`` fits log10 of the value (delta-method variance; a rate uses (k + ½)/(n + 1)).
   Every objective is **minimised**. The table is written to ``RUN_DIR/objectives.parquet``.
2. **Surrogates.** One :class:`rarefy.AR1Surrogate` per objective over the fidelities that
   have runs (one fidelity: a plain GP), each with the runs' own noise variances (per-point
   noise) plus a learned nugget, settings from the config's ``surrogate`` section.
3. **Acquisition** (:func:`rarefy.acquisition.multi_objective.propose_pareto`). The
   surrogates at the proposal fidelity (``pareto.fidelity``, default the target) form a
   BoTorch ``ModelList``; the acquisition's objective negates them since BoTorch
   maximises. ``qnehvi`` is botorch's ``qLogNoisyExpectedHypervolumeImprovement`` over
   the observed designs (X_baseline, inferior ones pruned); ``qparego`` is ``qLogNParEGO``
   (random augmented-Chebyshev weights per proposal). Objectives with ``max`` become outcome
   constraints (feasibility-weighted improvement). The design space's bounds and
   constraints are kept by the feasible multistart search of :func:`rarefy.optim.search.maximize`.
   A batch of ``loop.batch`` runs is built greedily: each chosen design is passed to the
   next one as ``X_pending`` (botorch integrates over its unknown outcome).
4. **Estimated Pareto set** (:func:`rarefy.acquisition.multi_objective.estimate_front`): the
   non-dominated set of the posterior means over ``pareto.front_candidates`` feasible Sobol designs plus the observed designs
   (and meeting every ``max``), sorted by the first objective and thinned evenly to at most
   ``pareto.front_max`` points, each with its posterior σ per objective; its hypervolume
   w.r.t. the reference point (botorch ``Hypervolume``).
5. ``RUN_DIR/result.json``: ``objectives``, ``pareto_set`` (θ, mean ± σ of every
   objective), ``hypervolume``, ``reference_point``, ``observed_front`` (the non-dominated
   observed runs at the proposal fidelity), ``cost_cpu_h``, ``runs``, ``iterations``, ``provenance``;
   surrogates in ``RUN_DIR/surrogates/<objective>/``; ``RUN_DIR/report/`` with the
   Pareto-front plot and the designs along the front
   (:func:`rarefy.report.pareto_report.pareto_report`).

Resume works as in :mod:`rarefy.jobs.loop`: run ids and seeds are deterministic and every
iteration's proposals are written to ``RUN_DIR/loop/iter-III.json`` before they are
simulated. No verification runs are made (``loop.verify`` is ignored): each front point's
σ is the surrogate's.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..acquisition.multi_objective import (estimate_front, front_values, hypervolume, non_dominated, propose_pareto,
                                           reference_point)
from ..config import RunConfig
from ..data.rates import RateTable, count_variance
from ..data.store import EventStore
from ..errors import InputError
from ..data.rundir import OBJECTIVES, RATES, read_runs
from .rundata import cost_by_fidelity
from ..space import DesignSpace
from ..surrogate.factory import build_surrogate
from ..threads import torch_threads

__all__ = ["column_statistic", "objective_frame", "objective_tables", "fit_objectives", "run_pareto"]

log = logging.getLogger(__name__)

LN10 = math.log(10.0)


# ------------------------------------------------------------------ objectives
def column_statistic(values: np.ndarray, statistic: str) -> tuple[float, float]:
    """(value, variance) of a per-event column statistic, ``mean``, ``std`` or ``rel_std`` of ``values`` (in the
    column's unit; ``rel_std`` dimensionless), NaNs skipped; NaN for fewer than 4 finite values."""
    from ..simulators.xlzd import relative_std

    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n < 4:
        return float("nan"), float("nan")
    if statistic == "mean":
        return float(v.mean()), float(v.var(ddof=1) / n)
    if statistic == "std":
        s2 = float(v.var(ddof=1))
        m4 = float(np.mean((v - v.mean()) ** 4))
        var_s2 = max(m4 - s2**2 * (n - 3) / (n - 1), 0.0) / n
        return math.sqrt(s2), var_s2 / (4.0 * s2) if s2 > 0 else 0.0
    r, se = relative_std(v)
    return r, se**2


def _runs_frame(run_dir: Path) -> pd.DataFrame:
    frame = read_runs(run_dir)
    if frame is None:
        raise InputError(f"the run directory holds no runs ({RATES})", file=run_dir)
    return frame


def objective_frame(run_dir: str | os.PathLike[str], cfg: RunConfig, space: DesignSpace) -> pd.DataFrame:
    """One row per run: θ, ``fidelity``, ``run_id``, ``cost_cpu_h``, ``n`` and ``<objective>`` / ``<objective>_var``.

    Values are in the fitted scale (``scale``, then ``log10`` where asked). Runs without an
    event shard get NaN for column statistics.
    """
    run_dir = Path(run_dir)
    runs = _runs_frame(run_dir)
    runs = runs[runs["fidelity"].astype(str).isin(cfg.fidelity_names)].reset_index(drop=True)
    out = runs[[*space.names, "fidelity", "run_id", *[c for c in ("cost_cpu_h", "k", "n") if c in runs]]].copy()
    columns = sorted({o.column for o in cfg.objectives if o.column})
    cache: dict[str, pd.DataFrame | None] = {}

    def shard(run_id: str) -> pd.DataFrame | None:
        if run_id not in cache:
            path = EventStore.shard_path(run_dir, run_id)
            if path.exists():
                import pyarrow.parquet as pq

                cache[run_id] = pq.read_table(path, columns=columns).to_pandas()
            else:
                cache[run_id] = None
        return cache[run_id]

    for obj in cfg.objectives:
        vals, vars_ = np.full(len(runs), np.nan), np.full(len(runs), np.nan)
        for i, row in runs.iterrows():
            if obj.statistic == "rate":
                k, n = float(row["k"]), float(row["n"])
                if n <= 0:
                    continue
                if obj.log10:
                    kk = k + 0.5
                    vals[i] = math.log10(obj.scale * kk / (n + 1.0))
                    vars_[i] = 1.0 / (kk * LN10**2)
                else:
                    rate = k / n
                    vals[i] = obj.scale * rate
                    vars_[i] = obj.scale**2 * float(count_variance(np.array([rate]), np.array([k]), np.array([n]))[0])
                continue
            ev = shard(str(row["run_id"]))
            if ev is None or obj.column not in ev.columns:
                continue
            v, var = column_statistic(ev[obj.column].to_numpy(float), obj.statistic)
            v, var = obj.scale * v, obj.scale**2 * var
            if obj.log10:
                if not v > 0:
                    continue
                v, var = math.log10(v), var / (v * LN10) ** 2
            vals[i], vars_[i] = v, var
        out[obj.name] = vals
        out[f"{obj.name}_var"] = vars_
    return out


def objective_tables(frame: pd.DataFrame, cfg: RunConfig, space: DesignSpace) -> dict[str, RateTable]:
    """A :class:`RateTable` per objective (``rate``: its value, ``var``: its noise) from :func:`objective_frame`."""
    tables = {}
    for obj in cfg.objectives:
        sel = frame[np.isfinite(frame[obj.name]) & np.isfinite(frame[f"{obj.name}_var"])]
        if sel.empty:
            raise InputError(f"objective {obj.name!r}: no run gives a value (statistic {obj.statistic!r}, column "
                             f"{obj.column!r}); do the simulator's events carry that column?")
        t = pd.DataFrame({**{n: sel[n].to_numpy(float) for n in space.names}, "fidelity": sel["fidelity"].astype(str),
                          "rate": sel[obj.name].to_numpy(float), "var": sel[f"{obj.name}_var"].to_numpy(float),
                          "run_id": sel["run_id"].astype(str)})
        tables[obj.name] = RateTable(t.reset_index(drop=True), space)
    return tables


def fit_objectives(tables: dict[str, RateTable], cfg: RunConfig, space: DesignSpace) -> dict[str, Any]:
    """One fitted :class:`rarefy.AR1Surrogate` per objective, over the config's fidelities that have runs."""
    if cfg.surrogate.kind != "ar1":
        raise InputError("multi-objective runs use the AR1 surrogate (surrogate.kind: ar1)")
    out = {}
    for name, table in tables.items():
        present = set(table.frame["fidelity"].astype(str))
        fids = [f for f in cfg.fidelity_names if f in present]
        with torch_threads(1):
            out[name] = build_surrogate(cfg.surrogate, space, fids, seed=cfg.seed).fit(table)
    return out


# ------------------------------------------------------------------ the loop
def run_pareto(cfg: RunConfig, config_dir: Path, out: str | os.PathLike[str], *, progress: bool = True,
               on_iteration: Callable[[int, int], None] | None = None, source: Any = None) -> Any:
    """The multi-objective closed loop (see the module docstring); called by :func:`rarefy.run`."""
    from ..acquisition.fidelity import fidelity_plans
    from .simulate import campaign_requests
    from .workspace import LoopResult, LoopWorkspace
    from ..report.pareto_report import pareto_report

    t0 = time.perf_counter()
    if cfg.loop is None or cfg.simulator is None or cfg.campaign is None:
        raise InputError("'rarefy run' needs 'simulator', 'campaign' (the initial design) and 'loop' sections",
                         file=source)
    loop = cfg.loop
    simulate = LoopWorkspace(cfg, config_dir, out, progress)
    out, space, sim = simulate.out, simulate.space, simulate.simulator
    objectives = list(cfg.objectives)
    fidelity = cfg.pareto.fidelity or str(cfg.target)
    plans = fidelity_plans(cfg.fidelities, cfg.acquisition.events, sim)
    plan = plans[fidelity]
    if plan.events < 1:
        raise InputError(f"pareto.fidelity {fidelity!r} has no events per run: set the fidelity's 'events'")
    initial = campaign_requests(cfg, sim, space, source)  # checks the space against the simulator before any run
    simulate.save_config(initial)

    simulate(initial)
    records: list[dict[str, Any]] = []
    done = 0
    for i in range(1, loop.iterations + 1):
        record = simulate.record(f"iter-{i:03d}")
        if record is None:
            frame = objective_frame(out, cfg, space)
            spent = cost_by_fidelity(frame)["total"]
            left = None if loop.budget_cpu_h is None else loop.budget_cpu_h - spent
            if left is not None and (left <= 0 or (math.isfinite(plan.cost_cpu_h) and plan.cost_cpu_h > left + 1e-12)):
                log.info("budget reached: %.4g of %.4g CPU-h spent", spent, loop.budget_cpu_h)
                break
            q = loop.batch
            if left is not None and math.isfinite(plan.cost_cpu_h) and plan.cost_cpu_h > 0:
                q = max(0, min(q, int(math.floor(left / plan.cost_cpu_h + 1e-9))))
            t_fit = time.perf_counter()
            tables = objective_tables(frame, cfg, space)
            surs = fit_objectives(tables, cfg, space)
            observed = np.unique(frame[space.names].to_numpy(float), axis=0)
            values = frame[[o.name for o in objectives]].to_numpy(float)
            ref = reference_point(objectives, values)
            front = estimate_front(surs, objectives, space, fidelity, observed=observed, settings=cfg.pareto,
                                   seed=cfg.seed + i)
            props = propose_pareto(surs, objectives, space, fidelity, observed, ref, q=q, settings=cfg.pareto,
                                   seed=cfg.seed + i) if q > 0 else []
            record = {
                "iteration": i, "spent_cpu_h": spent, "rows": len(frame), "reference_point": ref.tolist(),
                "predicted_hypervolume": hypervolume(front_values(front, objectives), ref), "front_size": len(front),
                "proposals": [{"theta": space.round_theta(dict(zip(space.names, map(float, x)))),
                               "fidelity": fidelity, "events": plan.events, "cost_cpu_h": plan.cost_cpu_h,
                               "value": v} for x, v in props],
                "seconds": time.perf_counter() - t_fit,
            }
            simulate.save_record(f"iter-{i:03d}", record)
        if not simulate.run_iteration(i, record, cfg.seed):
            break
        records.append(record)
        done = i
        log.info("iteration %d: %d runs proposed, predicted hypervolume %.4g", i, len(record["proposals"]),
                 record["predicted_hypervolume"])
        if on_iteration is not None:
            on_iteration(i, loop.iterations)

    # ------------------------------------------------------------ final front
    frame = objective_frame(out, cfg, space)
    frame.to_parquet(out / OBJECTIVES)
    tables = objective_tables(frame, cfg, space)
    surs = fit_objectives(tables, cfg, space)
    for name, sur in surs.items():
        sur.save(out / "surrogates" / name)
    observed = np.unique(frame[space.names].to_numpy(float), axis=0)
    names = [o.name for o in objectives]
    values = frame[names].to_numpy(float)
    ref = reference_point(objectives, values)
    front = estimate_front(surs, objectives, space, fidelity, observed=observed, settings=cfg.pareto, seed=cfg.seed)
    at_fid = frame[(frame["fidelity"].astype(str) == fidelity) & np.isfinite(values).all(1)]
    obs_front = []
    if len(at_fid):
        vals = at_fid[names].to_numpy(float)
        for _, row in at_fid[non_dominated(vals)].sort_values(names[0]).iterrows():
            obs_front.append({"run_id": str(row["run_id"]), "theta": {n: float(row[n]) for n in space.names},
                              "objectives": {n: {"value": float(row[n]), "sigma": math.sqrt(float(row[f"{n}_var"]))}
                                             for n in names}})
    result: dict[str, Any] = {
        "objectives": [o.model_dump(mode="json") for o in objectives],
        "fidelity": fidelity,
        "acquisition": cfg.pareto.acquisition,
        "pareto_set": front,
        "reference_point": {n: float(r) for n, r in zip(names, ref)},
        "hypervolume": hypervolume(front_values(front, objectives), ref),
        "observed_front": obs_front,
        "cost_cpu_h": cost_by_fidelity(frame),
        "runs": {str(k): int(v) for k, v in frame["fidelity"].value_counts().items()},
        "iterations": done,
    }
    simulate.save_result(result, pareto_report)
    wall = time.perf_counter() - t0
    log.info("multi-objective loop: %d iterations, %d front points, hypervolume %.4g, %.4g CPU-h nominal, %.1f s",
             done, len(front), result["hypervolume"], result["cost_cpu_h"]["total"], wall)
    return LoopResult(result, out, done, wall, simulate.executed, records, space=space)
