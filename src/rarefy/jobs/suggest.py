"""Propose the next runs for a run directory (``rarefy suggest RUN_DIR --n K``).

Fits the configured surrogate on the run directory's rates (campaign + ingested, see
:func:`rarefy.jobs.rundata.training_table`), proposes ``n`` runs with the config's
``acquisition`` settings (see :mod:`rarefy.acquisition`), and writes them as CSV with the
columns θ…, ``fidelity``, ``events``, ``cost_cpu_h`` (nominal CPU-hours of the run) and
``value`` (acquisition value; per CPU-hour when cost-aware). Simulate them anywhere, then
``rarefy ingest RUN_DIR results.csv`` and suggest again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from ..acquisition import fidelity_plans, proposals_frame, propose
from ..data.rundir import SUGGESTIONS, read_config, run_dir_lock
from ..io import atomic_path
from ..errors import InputError
from .fit import build_surrogate
from .ingest import run_simulator
from .rundata import training_table

__all__ = ["suggest"]

log = logging.getLogger(__name__)


def suggest(run_dir: str | os.PathLike[str], n: int = 1, *, out: str | os.PathLike[str] | None = None,
            kind: str | None = None, cost_aware: bool | None = None, seed: int | None = None) -> pd.DataFrame:
    """Propose ``n`` runs for ``run_dir`` and write them to ``out`` (default ``RUN_DIR/suggestions.csv``).

    ``kind`` and ``cost_aware`` override the config's ``acquisition`` section. Returns
    the proposals as a DataFrame. Every proposed design is feasible. The run directory's
    lock is held throughout (a second process on it fails at once).
    """
    run_dir = Path(run_dir)
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    with run_dir_lock(run_dir, "rarefy suggest"):
        return _suggest(run_dir, n, out, kind, cost_aware, seed)


def _suggest(run_dir: Path, n: int, out: str | os.PathLike[str] | None, kind: str | None, cost_aware: bool | None,
             seed: int | None) -> pd.DataFrame:
    cfg = read_config(run_dir)
    settings = cfg.acquisition.model_copy()
    if kind is not None:
        if kind not in ("ivr", "maxvar", "ei", "lcb"):
            raise InputError(f"unknown acquisition kind {kind!r}; use ivr, maxvar, ei or lcb")
        settings.kind = kind  # type: ignore[assignment]
    if cost_aware is not None:
        settings.cost_aware = cost_aware
    space = cfg.space.build()
    table = training_table(run_dir, cfg, space)
    try:
        sur = build_surrogate(cfg).fit(table)
    except ValueError as exc:  # e.g. a fidelity without rows
        raise InputError(f"cannot fit the surrogate: {exc}", file=run_dir) from None
    plans = fidelity_plans(cfg.fidelities, cfg.acquisition.events, run_simulator(cfg, run_dir))
    props = propose(sur, settings, plans, q=n, target=cfg.target, observed=table.designs(),
                    seed=cfg.seed if seed is None else seed)
    frame = proposals_frame(props, space)
    target = Path(out) if out is not None else run_dir / SUGGESTIONS
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)
    log.info("%d suggestions (%s%s) -> %s", len(frame), settings.kind, ", cost-aware" if settings.cost_aware else "",
             target)
    return frame
