"""The rates a run directory holds, for fitting: campaign runs, ingested runs, and their cost.

A run directory written by ``rarefy simulate`` / ``rarefy run`` holds ``rates.parquet``
(one row per finished campaign run); ``rarefy ingest`` adds ``ingested.parquet`` (runs
simulated elsewhere); ``rarefy fit`` writes ``training_rates.parquet``. The training table
of a run directory is the union of the first two (or the third when neither exists),
restricted to the config's fidelities, plus — once issue #4 lands — the denoised
``-cnp`` fidelities (see :func:`add_denoised_fidelities`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .config import RunConfig
from .data.rates import RateTable
from .errors import InputError
from .space import DesignSpace

__all__ = ["INGESTED", "training_table", "add_denoised_fidelities", "cost_by_fidelity"]

log = logging.getLogger(__name__)

INGESTED = "ingested.parquet"
KEEP = ("fidelity", "rate", "var", "k", "n", "cost_cpu_h", "run_id")


def add_denoised_fidelities(cfg: RunConfig, run_dir: Path, table: RateTable | None) -> RateTable | None:
    """HOOK for the CNP denoiser (issue #4): add ``<fidelity>-cnp`` rows to the training table.

    With ``denoise: null`` (the default) the raw ``k/n`` rates with their count noise are
    used as they are. Once ``rarefy train`` / ``rarefy denoise`` exist, this is where the
    loop trains (or resumes) the CNP on ``RUN_DIR/events`` and appends the aggregated
    per-run scores (``rarefy.denoise.aggregate``) as extra fidelities, which the config
    then lists in its fidelity chain. ``table=None`` only checks that the hook can run.
    """
    if cfg.denoise is None:
        return table
    raise InputError("denoise: CNP fidelities inside the closed loop arrive with issue #4 (rarefy train / rarefy "
                     "denoise); set 'denoise: null' to fit the raw count rates")


def training_table(run_dir: str | Path, cfg: RunConfig, space: DesignSpace | None = None) -> RateTable:
    """Campaign + ingested rates of ``run_dir`` (config fidelities only), after the denoise hook."""
    run_dir = Path(run_dir)
    space = space or cfg.space.build()
    frames = []
    for name in ("rates.parquet", INGESTED):
        path = run_dir / name
        if path.exists():
            frames.append(pd.read_parquet(path))
    if not frames and (run_dir / "training_rates.parquet").exists():
        frames.append(pd.read_parquet(run_dir / "training_rates.parquet"))
    if not frames:
        raise InputError("the run directory holds no rates (rates.parquet, ingested.parquet or "
                         "training_rates.parquet); run 'rarefy simulate', 'rarefy run' or 'rarefy fit' first",
                         file=run_dir)
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[frame["fidelity"].astype(str).isin(cfg.fidelity_names)]
    cols = [*space.names, *[c for c in KEEP if c in frame.columns]]
    table = RateTable(frame[cols].reset_index(drop=True), space, source=str(run_dir))
    out = add_denoised_fidelities(cfg, run_dir, table)
    assert out is not None
    return out


def cost_by_fidelity(table: RateTable | pd.DataFrame) -> dict[str, float]:
    """Nominal CPU-hours per fidelity (rows without a cost count 0) and ``total``."""
    frame = table.frame if isinstance(table, RateTable) else table
    out: dict[str, float] = {}
    if "cost_cpu_h" in frame.columns and len(frame):
        for fid, group in frame.groupby("fidelity", sort=False):
            out[str(fid)] = float(np.nansum(group["cost_cpu_h"].to_numpy(dtype=float)))
    out["total"] = float(sum(out.values()))
    return out
