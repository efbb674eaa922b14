"""The rates a run directory holds, for fitting: campaign runs, ingested runs, denoised runs, and their cost.

A run directory written by ``rarefy simulate`` / ``rarefy run`` holds ``rates.parquet``
(one row per finished campaign run); ``rarefy ingest`` adds ``ingested.parquet`` (runs
simulated elsewhere); ``rarefy fit`` writes ``training_rates.parquet`` (file names and
writers: :mod:`rarefy.data.rundir`). The training table of a run directory is its runs
(``rates.parquet``, or in a directory that ``rarefy fit`` wrote, ``training_rates.parquet``)
plus the ingested ones, restricted to the config's fidelities, plus the ``<fidelity>-denoised`` fidelities the config's
chain names (``RUN_DIR/denoise/rates_denoised.parquet``, see :func:`add_denoised_fidelities` and
:func:`update_denoised`, which trains and runs the denoiser when needed).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..data.rates import RateTable
from ..data.rundir import DENOISE_DIR, INGESTED, PIPELINE, RATES, TRAINING_RATES, denoised_base, denoised_rates_path, \
    read_runs, simulated_rows
from ..errors import InputError
from ..io import read_parquet
from ..space import DesignSpace

__all__ = ["INGESTED", "training_table", "add_denoised_fidelities", "denoised_fidelities", "update_denoised",
           "cost_by_fidelity",
           "simulated_rows"]

log = logging.getLogger(__name__)

KEEP = ("fidelity", "rate", "var", "k", "n", "cost_cpu_h", "run_id")


def denoised_fidelities(cfg: RunConfig) -> dict[str, str]:
    """The config's denoised fidelities and what they denoise: ``{"lf-denoised": "lf", ...}``.

    A ``<base>-denoised`` fidelity needs a ``denoise`` section and ``base`` among the
    fidelities (or the simulator's); a ``denoise`` section in a loop needs at least one
    ``-denoised`` fidelity in the chain (else the denoiser would be trained for nothing).
    The old suffix ``-cnp`` is read as ``-denoised`` (:func:`rarefy.data.rundir.denoised_base`).
    """
    bases = {f: denoised_base(f) for f in cfg.fidelity_names}
    denoised = {f: b for f, b in bases.items() if b is not None}
    if denoised and cfg.denoise is None:
        raise InputError(f"fidelities {sorted(denoised)} are denoised rates: add a 'denoise' section (the "
                         "denoiser's settings) or drop them from 'fidelities'")
    return denoised


def update_denoised(cfg: RunConfig, run_dir: str | Path, *, progress: bool = False) -> list[str]:
    """Train the denoiser once (``RUN_DIR/denoise``) and score the runs it has not scored yet; returns the new run ids.

    The closed loop calls this after every simulation round when the config has a
    ``denoise`` section and ``-denoised`` fidelities: the first call trains the denoiser on the
    finished runs of ``denoise.fidelities`` (default: the fidelities the ``-denoised`` names
    denoise) with :func:`rarefy.train_denoiser` (resumable from its checkpoint); every
    call with unscored runs re-scores the runs of those fidelities with
    :func:`rarefy.denoise_run` (deterministic for the seed), which writes
    ``RUN_DIR/denoise/rates_denoised.parquet``. The model is not retrained as runs arrive.
    """
    from .denoise import denoise_run, member_dirs, train_denoiser

    denoised = denoised_fidelities(cfg)
    if not denoised or cfg.denoise is None:
        return []
    run_dir = Path(run_dir)
    bases = sorted(set(denoised.values()))
    ddir = run_dir / DENOISE_DIR
    trained = all((d / "model.pt").exists() for d in member_dirs(ddir, cfg.denoise.ensemble))
    if not ((ddir / PIPELINE).exists() and trained):
        dcfg = cfg.denoise if cfg.denoise.fidelities else cfg.denoise.model_copy(update={"fidelities": bases})
        train_denoiser(cfg.model_copy(update={"denoise": dcfg}), run_dir,
                       progress=None if progress else (lambda done, total: None))
    rates = read_parquet(run_dir / RATES, columns=["run_id", "fidelity"])
    wanted = set(rates.loc[rates["fidelity"].astype(str).isin(bases), "run_id"].astype(str))
    scored_path = denoised_rates_path(run_dir)
    scored = set(read_parquet(scored_path, columns=["run_id"])["run_id"].astype(str)) if scored_path.exists() else set()
    new = sorted(wanted - scored)
    if new:
        denoise_run(run_dir, fidelities=bases, new_only=True)
    return new


def add_denoised_fidelities(cfg: RunConfig, run_dir: Path, table: RateTable | None) -> RateTable | None:
    """Add the ``<fidelity>-denoised`` rows of ``RUN_DIR/denoise/rates_denoised.parquet`` that the config's chain names.

    Rows and files of the old names (``-cnp``, ``rates_cnp.parquet``) are read too, under
    the config's names. Without ``-denoised`` fidelities the raw ``k/n`` rates with their
    count noise are used as they are. ``table=None`` only checks the config (before any simulation).
    """
    denoised = denoised_fidelities(cfg)
    if table is None or not denoised:
        return table
    path = denoised_rates_path(run_dir)
    if not path.exists():
        raise InputError(f"the config's fidelities {sorted(denoised)} need denoised rates: run 'rarefy train CONFIG "
                         "--run RUN_DIR' and 'rarefy denoise RUN_DIR' (rarefy run does both)", file=path)
    space = table.space
    rows = read_parquet(path)
    name_of = {base: name for name, base in denoised.items()}   # the config's name for each denoised base
    fid = rows["fidelity"].astype(str).map(lambda f: name_of.get(denoised_base(f) or ""))
    rows = rows.assign(fidelity=fid)[fid.notna()].assign(cost_cpu_h=0.0)  # the raw run carries the cost
    cols = [*space.names, *[c for c in KEEP if c in rows.columns]]
    frame = pd.concat([table.frame, rows[cols]], ignore_index=True)
    return RateTable(frame, space, source=str(path))


def training_table(run_dir: str | Path, cfg: RunConfig, space: DesignSpace | None = None) -> RateTable:
    """Campaign (or fitted) + ingested rates of ``run_dir`` (config fidelities only), after the denoise hook."""
    run_dir = Path(run_dir)
    space = space or cfg.space.build()
    frame = read_runs(run_dir)
    if not (run_dir / RATES).exists() and (run_dir / TRAINING_RATES).exists():  # 'rarefy fit': its data + ingested
        fitted = read_parquet(run_dir / TRAINING_RATES)
        frame = fitted if frame is None else pd.concat([fitted, frame], ignore_index=True)
    if frame is None:
        raise InputError(f"the run directory holds no rates ({RATES}, {INGESTED} or {TRAINING_RATES}); run "
                         "'rarefy simulate', 'rarefy run' or 'rarefy fit' first", file=run_dir)
    denoised = denoised_fidelities(cfg)
    raw = [f for f in cfg.fidelity_names if f not in denoised]  # denoised rows come from denoise/ only
    frame = frame[frame["fidelity"].astype(str).isin(raw)]
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
