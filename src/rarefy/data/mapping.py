"""Turn user rate files into a :class:`RateTable` using a config's column mapping.

Each fidelity is a row filter plus a value column (and a noise rule), so one file can feed
several fidelities: LEGEND's HF rows give both ``hf-cnp`` (from ``y_cnp``) and ``hf``
(from ``y_rGe77``). Rows taken from the same file row share a ``run_id``
(``"<file stem>:<row>"``), which cross-validation uses to hold whole runs out.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from ..config import FidelityConfig, NoiseConfig, RunConfig
from ..errors import InputError, fmt_value
from ..space import DesignSpace
from .rates import RateTable, count_variance
from .readers import read_frame

__all__ = ["load_rate_table", "extract_fidelity"]

log = logging.getLogger(__name__)


def _mapped(path: Path, mapping: dict[str, str]) -> pd.DataFrame:
    frame = read_frame(path)
    frame = frame.rename(columns=mapping)
    frame.attrs["mapped_from"] = {new: old for old, new in mapping.items()}
    frame["_source"] = str(path)
    frame["_row"] = np.arange(len(frame))
    return frame


def _require(frame: pd.DataFrame, column: str, path: str, what: str) -> None:
    if column not in frame.columns:
        shown = [c for c in frame.columns if not c.startswith("_")]
        source = frame.attrs.get("mapped_from", {}).get(column)
        origin = f" (mapped from {source!r} by the config's data.columns)" if source else ""
        raise InputError(f"{what} column not found{origin}; the file has: {', '.join(shown)}", file=path, column=column)


def _finite(frame: pd.DataFrame, column: str, path: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"value {fmt_value(frame[column].iloc[i])} is not a finite number",
                         file=path, column=column, row=int(frame["_row"].iloc[i]))
    return values


def _select(frame: pd.DataFrame, filt: dict, path: str, strict: bool = True) -> pd.DataFrame:
    keep = np.ones(len(frame), dtype=bool)
    for column, wanted in filt.items():
        if not strict and column not in frame.columns:
            log.warning("%s: filter column %r not found; taking all rows", path, column)
            continue
        _require(frame, column, path, "filter")
        options = wanted if isinstance(wanted, list) else [wanted]
        col = frame[column]
        if pd.api.types.is_numeric_dtype(col):
            keep &= np.isin(col.to_numpy(dtype=float), np.asarray(options, dtype=float))
        else:
            keep &= col.astype(str).isin([str(o) for o in options]).to_numpy()
    return frame[keep]


def extract_fidelity(frame: pd.DataFrame, fid: FidelityConfig, space: DesignSpace, path: str,
                     strict: bool = True) -> pd.DataFrame:
    """Rows of one file that belong to fidelity ``fid``, as RateTable columns (may be empty).

    ``strict=False`` (used to read validation data) skips filter columns the file lacks,
    treats missing noise columns as zero noise, and only warns about designs outside the
    bounds; each of these is logged.
    """
    rows = _select(frame, fid.filter, path, strict)
    for col in (*space.names, fid.value):
        _require(frame, col, path, "design" if col in space.names else "value")
    noise = fid.noise
    noise_cols = [c for c in (noise.std, noise.variance, noise.counts, noise.events) if c is not None]
    if not strict and any(c not in frame.columns for c in noise_cols):
        log.warning("%s: noise column(s) %s not found; taking the values as exact", path, noise_cols)
        noise = NoiseConfig()
    else:
        for col in noise_cols:
            _require(frame, col, path, "noise")
    out = pd.DataFrame({name: _finite(rows, name, path) for name in space.names})
    if strict:
        space.check_bounds(out, file=path, rows=rows["_row"].to_numpy())
    elif not space.in_bounds(out).all():
        log.warning("%s: %d design(s) lie outside the design-space bounds; predicting by extrapolation",
                    path, int((~space.in_bounds(out)).sum()))
    rate = _finite(rows, fid.value, path)
    out["fidelity"] = fid.name
    out["rate"] = rate
    if noise.std is not None:
        std = _finite(rows, noise.std, path)
        _nonneg(std, rows, noise.std, path)
        var = std**2
    elif noise.variance is not None:
        var = _finite(rows, noise.variance, path)
        _nonneg(var, rows, noise.variance, path)
    elif noise.counts is not None:
        k = _finite(rows, noise.counts, path)
        _nonneg(k, rows, noise.counts, path)
        n = _finite(rows, noise.events, path) if noise.events else None
        pos = k >= 1
        scale = float(np.median(rate[pos] / k[pos])) if pos.any() else None
        if scale is None and n is None and len(k):
            raise InputError("all counts are 0: give an 'events' column so the k = 0 noise rule has a scale",
                             file=path, column=noise.counts)
        var = count_variance(rate, k, n, scale)
        out["k"] = k
        if n is not None:
            out["n"] = n
    else:
        var = np.zeros(len(rows))
    out["var"] = var
    if fid.cost_cpu_h is not None:
        out["cost_cpu_h"] = fid.cost_cpu_h
    out["run_id"] = [f"{Path(path).stem}:{r}" for r in rows["_row"]]
    out["_source"] = path
    out["_row"] = rows["_row"].to_numpy()
    return out


def _nonneg(values: np.ndarray, rows: pd.DataFrame, column: str, path: str) -> None:
    bad = values < 0
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"value {values[i]} must be >= 0", file=path, column=column, row=int(rows["_row"].iloc[i]))


def load_rate_table(cfg: RunConfig, paths: Sequence[Path] | None = None,
                    fidelities: Sequence[str] | None = None, strict: bool = True,
                    every_fidelity: bool = True) -> RateTable:
    """Read the config's data files (or ``paths``) into one RateTable of the config's fidelities.

    Raises :class:`InputError` for a missing column, a non-finite value, a design out of
    bounds, or a fidelity that matches no row in any file (with ``every_fidelity=False``:
    only when no fidelity matches a row). ``strict=False``: see :func:`extract_fidelity`.
    """
    space = cfg.space.build()
    if paths is None and cfg.data is None:
        raise InputError("the config has no 'data' section: name the rate files in data.paths")
    paths = list(cfg.data.paths if paths is None else paths)
    wanted = [cfg.fidelity(n) for n in (fidelities or cfg.fidelity_names)]
    with _warnings_after_checks():  # bad input shows its one error line, not warnings about the same files first
        frames = [(str(p), _mapped(Path(p), cfg.data.columns)) for p in paths]
        parts = []
        for fid in wanted:
            got = [extract_fidelity(frame, fid, space, path, strict) for path, frame in frames]
            got = [g for g in got if len(g)]
            if not got and every_fidelity:
                where = ", ".join(p for p, _ in frames)
                raise InputError(f"fidelity {fid.name!r} has no rows (filter {fid.filter}, column {fid.value!r})",
                                 file=where)
            parts.extend(got)
        if not parts:
            where = ", ".join(p for p, _ in frames)
            raise InputError(f"no row matches a fidelity's filter "
                             f"({'; '.join(f'{f.name}: {f.filter}' for f in wanted)})", file=where)
        frame = pd.concat(parts, ignore_index=True)
        return RateTable(frame, space, check_bounds=strict)


@contextlib.contextmanager
def _warnings_after_checks() -> Iterator[None]:
    """Hold this module's log records back and emit them only when the block succeeds."""
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    log.addFilter(hold)
    try:
        yield
    finally:
        log.removeFilter(hold)
    for record in held:  # reached only when the block raised nothing
        log.handle(record)
