"""Propose the next runs for a run directory (``rarefy suggest RUN_DIR --n K``).

Fits the configured surrogate on the run directory's rates (campaign + ingested, see
:func:`rarefy.jobs.rundata.training_table`), proposes ``n`` runs with the config's
``acquisition`` settings (see :mod:`rarefy.acquisition`), and writes them as CSV with the
columns θ…, ``fidelity``, ``events``, ``cost_cpu_h`` (nominal CPU-hours of the run) and
``value`` (acquisition value; per CPU-hour when cost-aware). Simulate them anywhere, then
``rarefy ingest RUN_DIR results.csv`` and suggest again.

Events per proposed run of a fidelity: ``events`` (``--events``), else the config's
``acquisition.events``, the fidelity's ``events`` or the simulator's default, else taken
from the fidelity's runs (:func:`events_from_runs`): their median ``n``, or for rates
with count noise (``rarefy fit`` on data such as LEGEND's) the run size ``k / rate``
that gives a run that noise. A cost-aware suggestion without ``acquisition.fidelities``
proposes the fidelities whose events and nominal cost are known.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..acquisition import fidelity_plans, proposals_frame, propose
from ..data.rates import RateTable
from ..data.rundir import SUGGESTIONS, read_config, run_dir_lock
from ..io import atomic_path, check_output
from ..errors import InputError
from .fit import build_surrogate
from .ingest import run_simulator
from .rundata import training_table

__all__ = ["suggest", "events_from_runs", "parse_events", "MAX_SUGGESTIONS"]

#: the most runs one call proposes (each is a sequential acquisition step; propose in rounds for more)
MAX_SUGGESTIONS = 1000

log = logging.getLogger(__name__)


def parse_events(items: Sequence[str], fidelities: Sequence[str]) -> dict[str, int]:
    """``--events`` values as ``{fidelity: events}``: ``N`` sets every fidelity, ``FIDELITY=N`` one (later ones win)."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, number = str(item).rpartition("=")
        try:
            n = int(number)
        except ValueError:
            raise InputError(f"--events {item}: give N or FIDELITY=N (events per run, an integer)") from None
        if n < 1:
            raise InputError(f"--events {item}: events per run must be an integer >= 1")
        if sep and name not in fidelities:
            raise InputError(f"--events {item}: unknown fidelity {name!r}; defined fidelities: {list(fidelities)}")
        out.update({name: n} if sep else {f: n for f in fidelities})
    return out


def events_from_runs(table: RateTable, fidelities: Sequence[str]) -> dict[str, int]:
    """Events per run of each of ``fidelities`` as its runs so far: the median ``n``; without ``n``, the median
    ``k / rate`` of the runs with counts (the run size whose count noise the rates carry). Fidelities
    without either are left out."""
    frame = table.frame
    out: dict[str, int] = {}
    for f in fidelities:
        rows = frame[frame["fidelity"] == f]
        n = rows["n"].to_numpy(float) if "n" in rows.columns else np.zeros(0)
        n = n[np.isfinite(n) & (n >= 1)]
        if len(n):
            out[f] = int(round(float(np.median(n))))
            continue
        if "k" in rows.columns:
            k, rate = rows["k"].to_numpy(float), rows["rate"].to_numpy(float)
            ok = np.isfinite(k) & (k >= 1) & np.isfinite(rate) & (rate > 0)
            if ok.any():
                out[f] = max(1, int(round(float(np.median(k[ok] / rate[ok])))))
    return out


def suggest(run_dir: str | os.PathLike[str], n: int = 1, *, out: str | os.PathLike[str] | None = None,
            kind: str | None = None, cost_aware: bool | None = None, seed: int | None = None,
            events: int | Mapping[str, int] | Sequence[str] | None = None) -> pd.DataFrame:
    """Propose ``n`` runs for ``run_dir`` and write them to ``out`` (default ``RUN_DIR/suggestions.csv``).

    ``kind`` and ``cost_aware`` override the config's ``acquisition`` section; ``events``
    sets the events per proposed run: one number for every fidelity, ``{fidelity: n}``, or
    ``--events`` strings (``N`` / ``FIDELITY=N``). Returns the proposals as a DataFrame.
    Every proposed design is feasible. The run directory's
    lock is held throughout (a second process on it fails at once).
    """
    run_dir = Path(run_dir)
    if not 1 <= n <= MAX_SUGGESTIONS:
        raise InputError(f"--n must be between 1 and {MAX_SUGGESTIONS}, got {n}")
    target = check_output(Path(out) if out is not None else run_dir / SUGGESTIONS, folder=False)
    with run_dir_lock(run_dir, "rarefy suggest"):
        return _suggest(run_dir, n, target, kind, cost_aware, seed, events)


def _suggest(run_dir: Path, n: int, target: Path, kind: str | None, cost_aware: bool | None,
             seed: int | None, events: int | Mapping[str, int] | Sequence[str] | None) -> pd.DataFrame:
    cfg = read_config(run_dir)
    names = cfg.fidelity_names
    if events is None:
        given: dict[str, int] = {}
    elif isinstance(events, int):
        given = parse_events([str(events)], names)
    elif isinstance(events, Mapping):
        given = parse_events([f"{f}={v}" for f, v in events.items()], names)
    else:
        given = parse_events(list(events), names)
    settings = cfg.acquisition.model_copy()
    if kind is not None:
        if kind not in ("ivr", "maxvar", "ei", "lcb"):
            raise InputError(f"unknown acquisition kind {kind!r}; use ivr, maxvar, ei or lcb")
        settings.kind = kind  # type: ignore[assignment]
    if cost_aware is not None:
        settings.cost_aware = cost_aware
    space = cfg.space.build()
    table = training_table(run_dir, cfg, space)
    simulator = run_simulator(cfg, run_dir)
    per_run = {**cfg.acquisition.events, **given}
    plans = fidelity_plans(cfg.fidelities, per_run, simulator)
    derived = events_from_runs(table, [f for f, p in plans.items() if p.events < 1])
    if derived:
        log.info("events per run from the runs so far (set acquisition.events or --events to choose): %s",
                 ", ".join(f"{f} {v}" for f, v in derived.items()))
        plans = fidelity_plans(cfg.fidelities, {**derived, **per_run}, simulator)
    settings.fidelities = _proposable(plans, settings.fidelities, settings.cost_aware, str(cfg.target))
    try:
        sur = build_surrogate(cfg).fit(table)
    except ValueError as exc:  # e.g. a fidelity without rows
        raise InputError(f"cannot fit the surrogate: {exc}", file=run_dir) from None
    props = propose(sur, settings, plans, q=n, target=cfg.target, observed=table.designs(),
                    seed=cfg.seed if seed is None else seed)
    frame = proposals_frame(props, space)
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)
    log.info("%d suggestions (%s%s) -> %s", len(frame), settings.kind, ", cost-aware" if settings.cost_aware else "",
             target)
    return frame


def _proposable(plans: Mapping[str, object], chosen: list[str] | None, cost_aware: bool, target: str) -> list[str] | None:
    """The fidelities a suggestion may propose (``chosen``, the config's ``acquisition.fidelities``, is kept).

    Without a choice, a cost-aware suggestion proposes the fidelities with events per run
    and a nominal cost, the others are skipped with a log line; none is an InputError.
    """
    if chosen is not None:
        return chosen
    missing = {}
    for f, plan in plans.items():
        events, cost = getattr(plan, "events"), getattr(plan, "cost_cpu_h")
        if events < 1:
            missing[f] = (f"no events per run (set acquisition.events.{f}, the fidelity's 'events' or "
                          f"--events {f}=N)")
        elif cost_aware and not (math.isfinite(cost) and cost > 0):
            missing[f] = f"no nominal cost (set the fidelity's 'cost_cpu_h' per run or 'cost_cpu_h_per_event')"
    if not cost_aware:
        if target in missing:
            raise InputError(f"fidelity {target!r} cannot be proposed: {missing[target]}")
        return None
    allowed = [f for f in plans if f not in missing]
    if not allowed:
        raise InputError("no fidelity can be proposed: " + "; ".join(f"{f}: {why}" for f, why in missing.items()))
    for f, why in missing.items():
        log.warning("fidelity %r is not proposed: %s", f, why)
    return allowed
