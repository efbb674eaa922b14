"""Add runs simulated elsewhere to a run directory (``rarefy ingest RUN_DIR FILES...``).

Each file is a CSV or Parquet table of either

* **runs**: θ columns, ``fidelity``, ``k`` (signal count) and ``n`` (events thrown), optional
  ``run_id`` and ``cost_cpu_h`` (nominal CPU-hours of the run); or
* **events**: θ columns, ``fidelity``, ``outcome`` (0/1), optional ``run_id``: events are
  counted per run (``run_id``, else per distinct θ and fidelity); or
* **data rows** (a file without a ``fidelity`` column, when the config has a ``data``
  section): rows in the format of the config's data files, read like ``rarefy fit`` reads
  them (``data.columns``, each fidelity's ``filter``, ``value`` and ``noise``), so the
  rates keep the data's units (LEGEND: Ge-77 nuclei / (kg yr) with count noise).

Rates of run and event files are ``k/n`` with the count-noise rule of
:func:`rarefy.count_variance`. Every design must be feasible, every fidelity one of the
config's; a bad value is an :class:`InputError` naming the file, column and row. Rows are
appended to ``RUN_DIR/ingested.parquet`` (atomically) under ``run_id`` (default
``ingest:<file stem>:<row>``); ingesting the same file again adds nothing, a different run
under a known ``(run_id, fidelity)`` is an error. The next ``rarefy suggest`` /
``rarefy run`` fits on the run directory's runs (campaign, or the data ``rarefy fit`` was
fitted on) plus the ingested ones.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..acquisition.fidelity import fidelity_plans
from ..config import RunConfig
from ..data.mapping import load_rate_table
from ..data.rates import count_variance
from ..data.readers import read_frame
from ..errors import InputError, fmt_value
from ..io import read_parquet
from ..data.rundir import INGESTED, read_config, run_dir_lock, write_ingested

__all__ = ["IngestResult", "ingest", "run_simulator"]

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    """How many runs were new, how many the run directory now holds ingested, and where."""

    n_new: int
    n_total: int
    path: Path

    def summary(self) -> str:
        """One line: new runs, all ingested runs, where they are."""
        return f"{self.n_new} new runs ingested ({self.n_total} in all) -> {self.path}"


def _numeric(frame: pd.DataFrame, col: str, path: str) -> np.ndarray:
    values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"value {fmt_value(frame[col].iloc[i])} is not a finite number", file=path, column=col, row=i)
    return values


def _read_data_rows(path: Path, cfg: RunConfig) -> pd.DataFrame:
    """A file in the format of the config's data files as run rows (rate and var in the data's units)."""
    rows = load_rate_table(cfg, paths=[path], every_fidelity=False).frame
    rows = rows.drop(columns=["_source"], errors="ignore")
    rows["run_id"] = [f"ingest:{path.stem}:{r}" for r in rows["_row"]]
    for col in ("k", "n"):
        if col not in rows.columns:
            rows[col] = np.nan
    return rows


def _read_runs(path: Path, cfg: RunConfig, names: list[str], fidelities: list[str]) -> pd.DataFrame:
    """One file as run rows: θ, fidelity, k, n, run_id (+ rate, var, cost_cpu_h), validated (not yet for feasibility)."""
    src = str(path)
    frame = read_frame(path)
    if "fidelity" not in frame.columns and cfg.data is not None:
        return _read_data_rows(path, cfg)
    for col in (*names, "fidelity"):
        if col not in frame.columns:
            raise InputError(f"column not found; the file has: {', '.join(map(str, frame.columns))}", file=src, column=col)
    fid = frame["fidelity"].astype(str)
    unknown = ~fid.isin(fidelities)
    if unknown.any():
        i = int(np.argmax(unknown.to_numpy()))
        raise InputError(f"unknown fidelity {fid.iloc[i]!r}; the config defines {fidelities}", file=src,
                         column="fidelity", row=i)
    theta = {n: _numeric(frame, n, src) for n in names}
    if "k" in frame.columns and "n" in frame.columns:
        k, n = _numeric(frame, "k", src), _numeric(frame, "n", src)
        for col, vals, ok in (("n", n, n >= 1), ("k", k, (k >= 0) & (k <= n)),
                              ("k", k, np.isclose(k, np.round(k))), ("n", n, np.isclose(n, np.round(n)))):
            if not ok.all():
                i = int(np.argmax(~ok))
                raise InputError(f"value {fmt_value(vals[i])} is not a valid count (need integers 0 <= k <= n, n >= 1)",
                                 file=src, column=col, row=i)
        out = pd.DataFrame(theta)
        out["fidelity"], out["k"], out["n"] = fid.to_numpy(), k, n
        out["run_id"] = (frame["run_id"].astype(str).to_numpy() if "run_id" in frame.columns
                         else [f"ingest:{path.stem}:{i}" for i in range(len(frame))])
        if "cost_cpu_h" in frame.columns:
            out["cost_cpu_h"] = pd.to_numeric(frame["cost_cpu_h"], errors="coerce").to_numpy(dtype=float)
        out["_row"] = np.arange(len(frame))
        return out
    if "outcome" not in frame.columns:
        raise InputError("a run file needs columns 'k' and 'n'; an event file needs 'outcome'", file=src,
                         column="k" if "n" in frame.columns else "n" if "k" in frame.columns else "outcome")
    y = _numeric(frame, "outcome", src)
    if not np.isin(y, (0.0, 1.0)).all():
        i = int(np.argmax(~np.isin(y, (0.0, 1.0))))
        raise InputError(f"outcome {fmt_value(y[i])} must be 0 or 1", file=src, column="outcome", row=i)
    ev = pd.DataFrame(theta)
    ev["fidelity"], ev["outcome"], ev["_row"] = fid.to_numpy(), y, np.arange(len(frame))
    keys = ["run_id"] if "run_id" in frame.columns else [*names, "fidelity"]
    if "run_id" in frame.columns:
        ev["run_id"] = frame["run_id"].astype(str).to_numpy()
    grouped = ev.groupby(keys, sort=False)
    out = grouped.agg(**{n: (n, "first") for n in names if n not in keys},
                      **({"fidelity": ("fidelity", "first")} if "fidelity" not in keys else {}),
                      k=("outcome", "sum"), n=("outcome", "size"), _row=("_row", "first")).reset_index()
    if "run_id" in frame.columns:
        spread = grouped[names].nunique().max(axis=1) > 1
        if spread.any():
            rid = spread.index[int(np.argmax(spread.to_numpy()))]
            raise InputError(f"run {rid!r} has events at several designs", file=src, column="run_id")
    else:
        out["run_id"] = [f"ingest:{path.stem}:{i}" for i in range(len(out))]
    return out


def run_simulator(cfg: RunConfig, run_dir: Path) -> Any:
    """The config's simulator object (for its fidelities' nominal costs), or None."""
    if cfg.simulator is None:
        return None
    from ..simulators import from_config

    return from_config(cfg.simulator, config_dir=run_dir, scratch_dir=str(run_dir / "scratch"))


def ingest(run_dir: str | os.PathLike[str], files: Sequence[str | os.PathLike[str]]) -> IngestResult:
    """Append the runs in ``files`` to ``RUN_DIR/ingested.parquet``; CLI: ``rarefy ingest RUN_DIR FILES...``.

    All files are validated before anything is written. The run directory's lock is held
    throughout (a second process on it fails at once).
    """
    run_dir = Path(run_dir)
    with run_dir_lock(run_dir, "rarefy ingest"):
        return _ingest(run_dir, files)


def _ingest(run_dir: Path, files: Sequence[str | os.PathLike[str]]) -> IngestResult:
    cfg = read_config(run_dir)
    if not files:
        raise InputError("give at least one file to ingest")
    space = cfg.space.build()
    plans = fidelity_plans(cfg.fidelities, cfg.acquisition.events, run_simulator(cfg, run_dir))
    per_event = {f: (p.cost_cpu_h / p.events if p.events else float("nan")) for f, p in plans.items()}
    new_frames = []
    for file in files:
        path = Path(file)
        if not path.exists():
            raise InputError("file not found", file=path)
        runs = _read_runs(path, cfg, space.names, cfg.fidelity_names)
        rows = runs["_row"].to_numpy()
        space.check_bounds(runs, file=str(path), rows=rows)
        bad = ~space.is_feasible(runs)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"design {dict(runs[space.names].iloc[i])} violates an integer rule or a constraint "
                             f"({'; '.join(space.constraints) or 'integers'})", file=path, row=int(rows[i]))
        if "cost_cpu_h" not in runs.columns:
            runs["cost_cpu_h"] = [per_event[f] * n for f, n in zip(runs["fidelity"], runs["n"])]
        if "rate" not in runs.columns:  # runs and events: k/n with count noise (data rows come with their own)
            rate = runs["k"].to_numpy(float) / runs["n"].to_numpy(float)
            runs["rate"] = rate
            runs["var"] = count_variance(rate, runs["k"].to_numpy(float), runs["n"].to_numpy(float))
        runs["_file"] = str(path)
        new_frames.append(runs)
    new = pd.concat(new_frames, ignore_index=True)
    dup = new.duplicated(["run_id", "fidelity"])
    if dup.any():
        i = int(np.argmax(dup.to_numpy()))
        raise InputError(f"run_id {new['run_id'].iloc[i]!r} appears twice in the ingested files", file=new["_file"].iloc[i],
                         column="run_id", row=int(new["_row"].iloc[i]))
    cols = [*space.names, "fidelity", "rate", "var", "k", "n", "cost_cpu_h", "run_id"]
    target = run_dir / INGESTED
    old = read_parquet(target) if target.exists() else pd.DataFrame(columns=cols)
    known = {(str(r), str(f)): i for i, (r, f) in enumerate(zip(old["run_id"], old["fidelity"]))} if len(old) else {}
    numbers = [*space.names, "rate", "k", "n"]
    keep = np.ones(len(new), dtype=bool)
    for i, key in enumerate(zip(new["run_id"].astype(str), new["fidelity"].astype(str))):
        if key in known:
            rid = key[0]
            o = old.iloc[known[key]][numbers].to_numpy(float)
            same = np.allclose(o, new[numbers].iloc[i].to_numpy(float), equal_nan=True)
            if not same:
                raise InputError(f"run_id {rid!r} is already ingested with different values", file=new["_file"].iloc[i],
                                 column="run_id", row=int(new["_row"].iloc[i]))
            keep[i] = False
    merged = pd.concat([old[cols], new.loc[keep, cols]], ignore_index=True) if len(old) else new.loc[keep, cols]
    write_ingested(run_dir, merged, space)
    log.info("ingested %d new runs (%d already known) -> %s", int(keep.sum()), int((~keep).sum()), target)
    return IngestResult(int(keep.sum()), len(merged), target)
