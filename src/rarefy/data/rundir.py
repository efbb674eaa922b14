"""A run directory's files: their names, and the one writer of each table that several jobs touch.

Layout of ``RUN_DIR`` (every file written atomically)::

    config.yaml              the resolved config (rarefy simulate / fit / run / infer)
    catalog.sqlite, events/  run catalog and event shards (rarefy.data.store.EventStore)
    rates.parquet            one row per finished campaign run, plus rows and columns that
                             later jobs add: the ``<fidelity>-cnp`` rows of rarefy denoise and
                             the ``split`` column of rarefy train
    ingested.parquet         runs simulated elsewhere (rarefy ingest)
    training_rates.parquet   the table a surrogate was fitted on (rarefy fit / run)
    fit.json, optimum.json, result.json, suggestions.csv, objectives.parquet
    surrogate/, surrogates/  saved surrogates
    denoise/                 the denoiser: pipeline.json, config.yaml, model.pt, rates_cnp.parquet, ...
    loop/                    the closed loop's per-iteration records (iter-III.json, optimum.json, cv.json)
    report/                  index.html and figures

**rates.parquet has one writer**, :func:`write_rates`, which merges: the rows given
replace the rows with the same ``(run_id, fidelity)``, other rows are kept, and columns
the given rows lack keep their old values. So ``rarefy simulate`` (which writes the
simulated rows from the catalog) can run again after ``rarefy train`` / ``rarefy denoise``
without dropping their ``-cnp`` rows or ``split`` column. Rows are sorted by ``run_id``
then ``fidelity``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..config import RunConfig, dump_config, load_config
from ..errors import InputError
from ..io import atomic_path, read_json, read_parquet
from ..space import DesignSpace
from .rates import RateTable

__all__ = [
    "CONFIG", "CATALOG", "RATES", "INGESTED", "TRAINING_RATES", "FIT", "OPTIMUM", "RESULT", "OBJECTIVES",
    "SUGGESTIONS", "SURROGATE_DIR", "DENOISE_DIR", "CNP_RATES", "PIPELINE", "LOOP_DIR", "REPORT_DIR", "CNP_SUFFIX",
    "SPLIT_COLUMN", "KEY", "write_config", "read_config", "read_rates", "write_rates", "read_runs", "simulated_rows",
    "write_ingested", "write_training_rates", "read_result", "read_loop_records",
]

CONFIG = "config.yaml"
CATALOG = "catalog.sqlite"
RATES = "rates.parquet"
INGESTED = "ingested.parquet"
TRAINING_RATES = "training_rates.parquet"
FIT = "fit.json"
OPTIMUM = "optimum.json"
RESULT = "result.json"
OBJECTIVES = "objectives.parquet"
SUGGESTIONS = "suggestions.csv"
SURROGATE_DIR = "surrogate"
DENOISE_DIR = "denoise"
CNP_RATES = "rates_cnp.parquet"   # in DENOISE_DIR
PIPELINE = "pipeline.json"        # in DENOISE_DIR
LOOP_DIR = "loop"
REPORT_DIR = "report"
CNP_SUFFIX = "-cnp"               # a denoised fidelity's name: "<fidelity>-cnp"
SPLIT_COLUMN = "split"            # train / val / test of the denoiser, per run
KEY = ("run_id", "fidelity")      # what identifies a row of rates.parquet


# ------------------------------------------------------------------ config
def write_config(run_dir: str | os.PathLike[str], cfg: RunConfig) -> Path:
    """Write the resolved config to ``RUN_DIR/config.yaml`` atomically."""
    path = Path(run_dir) / CONFIG
    with atomic_path(path) as tmp:
        dump_config(cfg, tmp)
    return path


def read_config(run_dir: str | os.PathLike[str], *, fitted: bool = False) -> RunConfig:
    """The resolved config of a run directory.

    A folder without ``config.yaml`` (with ``fitted``: or without a saved surrogate,
    ``surrogate/model.json``) raises :class:`InputError`.
    """
    run_dir = Path(run_dir)
    if fitted and not ((run_dir / CONFIG).exists() and (run_dir / SURROGATE_DIR / "model.json").exists()):
        raise InputError("not a fitted run directory: no saved surrogate (run 'rarefy fit' or 'rarefy run' first)",
                         file=run_dir)
    if not (run_dir / CONFIG).exists():
        raise InputError(f"not a run directory (no {CONFIG})", file=run_dir)
    return load_config(run_dir / CONFIG)


# ------------------------------------------------------------------- rates
def read_rates(run_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """``RUN_DIR/rates.parquet`` as it is (all rows and columns), or None when there is none."""
    path = Path(run_dir) / RATES
    return read_parquet(path) if path.exists() else None


def _keys(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([frame[c].astype(str).to_numpy() for c in KEY], names=list(KEY))


def write_rates(run_dir: str | os.PathLike[str], rows: pd.DataFrame, space: DesignSpace, *,
                drop_fidelities: Iterable[str] = ()) -> Path:
    """Merge ``rows`` into ``RUN_DIR/rates.parquet`` (atomically); the only writer of that file.

    Existing rows of ``drop_fidelities`` are removed first. Then each row of ``rows``
    replaces the existing row with the same ``(run_id, fidelity)``, keeping that row's
    values in the columns ``rows`` does not have; rows ``rows`` does not mention are kept
    as they are. The result is validated as a :class:`RateTable` (θ within the space,
    rates and variances finite) and sorted by ``run_id``, then ``fidelity``.
    """
    path = Path(run_dir) / RATES
    rows = rows.reset_index(drop=True)
    old = read_rates(run_dir)
    if old is not None and len(old):
        drop = {str(f) for f in drop_fidelities}
        old = old[~old["fidelity"].astype(str).isin(drop)].reset_index(drop=True)
        old_keys, new_keys = _keys(old), _keys(rows)
        extra = [c for c in old.columns if c not in rows.columns]
        if extra:  # carry the other jobs' columns onto the rewritten rows
            carried = old[extra].set_axis(old_keys)
            carried = carried[~carried.index.duplicated(keep="last")].reindex(new_keys)
            rows = pd.concat([rows, carried.reset_index(drop=True)], axis=1)
        kept = old[~old_keys.isin(new_keys)]
        frame = pd.concat([kept, rows], ignore_index=True) if len(kept) else rows
    else:
        frame = rows
    if len(frame):
        order = np.lexsort((frame["fidelity"].astype(str).to_numpy(), frame["run_id"].astype(str).to_numpy()))
        frame = frame.iloc[order].reset_index(drop=True)
    return RateTable(frame, space, source=str(path)).to_parquet(path)


def read_runs(run_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """Every run of ``run_dir``: ``rates.parquet`` and ``ingested.parquet`` together (None when neither exists)."""
    run_dir = Path(run_dir)
    frames = [read_parquet(run_dir / name) for name in (RATES, INGESTED) if (run_dir / name).exists()]
    return pd.concat(frames, ignore_index=True) if frames else None


def simulated_rows(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every simulated run of ``run_dir`` (``rates.parquet`` + ``ingested.parquet``), without ``-cnp`` rows.

    What the nominal cost is counted on: a denoised row re-scores a run, it costs nothing more.
    """
    frame = read_runs(run_dir)
    if frame is None:
        return pd.DataFrame(columns=["fidelity", "cost_cpu_h", "run_id"])
    return frame[~frame["fidelity"].astype(str).str.endswith(CNP_SUFFIX)].reset_index(drop=True)


def write_training_rates(run_dir: str | os.PathLike[str], table: RateTable) -> Path:
    """Write ``RUN_DIR/training_rates.parquet``, the table a surrogate was fitted on (atomically)."""
    return table.to_parquet(Path(run_dir) / TRAINING_RATES)


def read_result(run_dir: str | os.PathLike[str], what: str = "closed-loop") -> dict[str, Any]:
    """``RUN_DIR/result.json`` of a finished loop; a missing one raises :class:`InputError` (``what`` names the run)."""
    path = Path(run_dir) / RESULT
    if not path.exists():
        raise InputError(f"no {RESULT}: not a finished {what} run directory (run 'rarefy run')", file=run_dir)
    return read_json(path)


def read_loop_records(run_dir: str | os.PathLike[str], iterations: int | None = None) -> list[dict[str, Any]]:
    """The loop's per-iteration records ``RUN_DIR/loop/iter-III.json`` in order (only the first ``iterations``)."""
    records = [read_json(p) for p in sorted((Path(run_dir) / LOOP_DIR).glob("iter-*.json"))]
    return [r for r in records if iterations is None or r.get("iteration", 0) <= iterations]


def write_ingested(run_dir: str | os.PathLike[str], frame: pd.DataFrame, space: DesignSpace) -> Path:
    """Write ``RUN_DIR/ingested.parquet`` (the whole table, validated, atomically)."""
    path = Path(run_dir) / INGESTED
    return RateTable(frame.reset_index(drop=True), space, source=str(path)).to_parquet(path)
