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

from ..acquisition import fidelity_plans, proposable_fidelities, proposals_frame, propose
from ..data.rundir import SUGGESTIONS, read_config
from ..io import atomic_path, check_output
from ..errors import InputError
from .fit import build_surrogate
from .ingest import run_simulator
from .rundata import training_table

__all__ = ["suggest", "MAX_SUGGESTIONS"]

#: the most runs one call proposes (each is a sequential acquisition step; propose in rounds for more)
MAX_SUGGESTIONS = 1000

log = logging.getLogger(__name__)


def suggest(run_dir: str | os.PathLike[str], n: int = 1, *, out: str | os.PathLike[str] | None = None,
            kind: str | None = None, cost_aware: bool | None = None, seed: int | None = None) -> pd.DataFrame:
    """Propose ``n`` runs for ``run_dir`` and write them to ``out`` (default ``RUN_DIR/suggestions.csv``).

    ``kind`` and ``cost_aware`` override the config's ``acquisition`` section. Returns
    the proposals as a DataFrame. Every proposed design is feasible.
    """
    run_dir = Path(run_dir)
    if not 1 <= n <= MAX_SUGGESTIONS:
        raise InputError(f"--n must be between 1 and {MAX_SUGGESTIONS}, got {n}")
    cfg = read_config(run_dir)
    target = check_output(Path(out) if out is not None else run_dir / SUGGESTIONS, folder=False)
    settings = cfg.acquisition.model_copy()
    if kind is not None:
        if kind not in ("ivr", "maxvar", "ei", "lcb"):
            raise InputError(f"unknown acquisition kind {kind!r}; use ivr, maxvar, ei or lcb")
        settings.kind = kind  # type: ignore[assignment]
    if cost_aware is not None:
        settings.cost_aware = cost_aware
    space = cfg.space.build()
    plans = fidelity_plans(cfg.fidelities, cfg.acquisition.events, run_simulator(cfg, run_dir))
    proposable_fidelities(plans, cfg.fidelity_names, str(cfg.target), cost_aware=settings.cost_aware,
                          fidelities=settings.fidelities)  # before the fit: a config error costs nothing
    table = training_table(run_dir, cfg, space)
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
