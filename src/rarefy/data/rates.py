"""Rate tables: one row per (simulation run, fidelity) with the rate and its noise.

A :class:`RateTable` is the hand-over point between the simulation side (campaigns,
event stores, denoisers) and the surrogate side. Columns:

===============  ===========================================================
θ columns        one per design parameter, named as in the DesignSpace
``fidelity``     fidelity name (str)
``rate``         the observed rate, in the fidelity's own units
``var``          known noise variance of ``rate`` (same units squared), >= 0
``k``            optional: signal count behind the rate, a whole number >= 0
``n``            optional: number of events thrown in the run, a whole number >= 1
                 and >= ``k``
``cost_cpu_h``   optional: nominal cost of the run in CPU-hours, >= 0
``run_id``       optional: identifies the simulation run; several fidelities
                 derived from one run (e.g. ``hf`` and ``hf-denoised``) share it
===============  ===========================================================

The optional columns may be empty (NaN) in rows that lack them (e.g. fidelities
without counts). Every rule is checked when a table is built; a row that breaks one is
an :class:`~rarefy.errors.InputError` naming the file, column and row and the values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from ..io import atomic_path, read_parquet
from ..errors import InputError, fmt_value
from ..space import DesignSpace

__all__ = ["RateTable", "count_variance"]

REQUIRED = ("fidelity", "rate", "var")
OPTIONAL = ("k", "n", "cost_cpu_h", "run_id")


def count_variance(rate: np.ndarray, k: np.ndarray, n: np.ndarray | None = None, scale: float | None = None) -> np.ndarray:
    """Poisson/binomial noise variance of a rate estimated from ``k`` signal counts.

    For ``k >= 1`` the relative error of a count is ``1/sqrt(k)``, so
    ``var = rate**2 / k`` (for ``rate = k/n`` this is ``k/n**2``, the binomial variance
    at small probability).

    **Rule for k = 0** (finite, documented): the variance is that of a single count,
    ``var = s**2`` where ``s`` is the rate one count corresponds to. ``s = 1/n`` when the
    number of events ``n`` is known (rates per event); otherwise ``s = scale``, which
    callers set to the median of ``rate / k`` over the rows with ``k >= 1`` (the
    run-to-rate conversion factor); with every count 0 and neither ``n`` nor ``scale``
    there is no such factor, and this is a ValueError (no variance in absolute units is
    made up). This is the usual "at most about one count" upper bound, and keeps every
    variance positive and finite.
    """
    rate = np.asarray(rate, dtype=float)
    k = np.asarray(k, dtype=float)
    out = np.empty_like(rate)
    pos = k >= 1
    out[pos] = rate[pos] ** 2 / k[pos]
    zero = ~pos
    if zero.any():
        if n is not None:
            out[zero] = 1.0 / np.asarray(n, dtype=float)[zero] ** 2
        else:
            if scale is None:
                if not pos.any():
                    raise ValueError("every count is 0 and neither n nor scale is given: the k = 0 rule has no "
                                     "rate per count to take the variance from")
                scale = float(np.median(rate[pos] / k[pos]))
            out[zero] = scale**2
    return out


def _refuse(bad: np.ndarray, frame: pd.DataFrame, source: str | None, column: str,
            reason: Callable[[int], str]) -> None:
    """Raise an InputError for the first ``bad`` row, naming its file and row.

    Rows read from user files carry ``_source`` and ``_row`` (the file and its 0-based
    data row, see :mod:`rarefy.data.mapping`); otherwise ``source`` and the table's row.
    """
    if not bad.any():
        return
    i = int(np.argmax(bad))
    file, row = source, i
    if "_source" in frame.columns and isinstance(frame["_source"].iloc[i], str):
        file = frame["_source"].iloc[i]
        if "_row" in frame.columns and pd.notna(frame["_row"].iloc[i]):
            row = int(frame["_row"].iloc[i])
    raise InputError(reason(i), file=file, column=column, row=row)


class RateTable:
    """A validated table of per-run rates (see module docstring for the columns).

    Parameters
    ----------
    frame:
        The data. θ columns must match ``space.names``.
    space:
        The design space the θ columns live in; designs outside its bounds are an error.
    source:
        Optional file name, used in error messages.
    check_bounds:
        Raise for designs outside the space's bounds (default). Off only for
        validation data, where extrapolation is allowed.

    Attributes
    ----------
    frame:
        The validated DataFrame (shared, not copied: do not modify it in place).
    """

    def __init__(self, frame: pd.DataFrame, space: DesignSpace, source: str | None = None,
                 check_bounds: bool = True) -> None:
        self.space = space
        self._check_bounds = check_bounds
        self.frame = self._validate(frame.reset_index(drop=True), space, source, check_bounds)

    @staticmethod
    def _validate(frame: pd.DataFrame, space: DesignSpace, source: str | None, check_bounds: bool) -> pd.DataFrame:
        for col in (*space.names, *REQUIRED):
            if col not in frame.columns:
                raise InputError(f"rate table is missing the column (has: {', '.join(map(str, frame.columns))})",
                                 file=source, column=col)
        frame = frame.copy()
        frame["fidelity"] = frame["fidelity"].astype(str)
        optional = [c for c in ("k", "n", "cost_cpu_h") if c in frame.columns]
        for col in (*space.names, "rate", "var", *optional):
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
            # optional columns may be missing (NaN) for some rows, e.g. fidelities without counts
            bad = np.isinf(values) if col in optional else ~np.isfinite(values)
            if col in optional:  # a value that is not a number at all is not a missing one
                bad |= np.isnan(values) & frame[col].notna().to_numpy()
            _refuse(bad, frame, source, col, lambda i: f"value {fmt_value(frame[col].iloc[i])} is not a finite number")
            frame[col] = values
        var = frame["var"].to_numpy()
        _refuse(var < 0, frame, source, "var", lambda i: f"noise variance {float(var[i])!r} is negative")
        counts = {c: frame[c].to_numpy() for c in ("k", "n") if c in frame.columns}
        for col, values in counts.items():
            known = ~np.isnan(values)
            _refuse(known & (values != np.round(values)), frame, source, col,
                    lambda i: f"count {col} = {float(values[i])!r} is not a whole number")
        if "k" in counts:
            k = counts["k"]
            _refuse(k < 0, frame, source, "k", lambda i: f"signal count k = {float(k[i])!r} is negative")
        if "n" in counts:
            n = counts["n"]
            _refuse(n < 1, frame, source, "n", lambda i: f"event count n = {float(n[i])!r} must be at least 1")
        if len(counts) == 2:
            k, n = counts["k"], counts["n"]
            _refuse(k > n, frame, source, "k",
                    lambda i: f"signal count k = {float(k[i])!r} exceeds the events thrown n = {float(n[i])!r}")
        if "cost_cpu_h" in frame.columns:
            cost = frame["cost_cpu_h"].to_numpy()
            _refuse(cost < 0, frame, source, "cost_cpu_h", lambda i: f"cost {float(cost[i])!r} CPU-hours is negative")
        if check_bounds:
            space.check_bounds(frame, file=source)
        return frame

    # ---------------------------------------------------------------- access
    def to_pandas(self) -> pd.DataFrame:
        """A copy of :attr:`frame`."""
        return self.frame.copy()

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def fidelities(self) -> list[str]:
        """Fidelity names present, in order of first appearance."""
        return list(dict.fromkeys(self.frame["fidelity"]))

    def subset(self, fidelity: str | Sequence[str] | None = None, mask: np.ndarray | None = None) -> "RateTable":
        """Rows of one or several fidelities and/or a boolean mask, as a new RateTable."""
        keep = np.ones(len(self), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if fidelity is not None:
            names = [fidelity] if isinstance(fidelity, str) else list(fidelity)
            keep &= self.frame["fidelity"].isin(names).to_numpy()
        return RateTable(self.frame[keep], self.space, check_bounds=self._check_bounds)

    def designs(self, fidelity: str | None = None) -> np.ndarray:
        """θ of the rows (of one fidelity), shape (n, d), in parameter units."""
        f = self.frame if fidelity is None else self.frame[self.frame["fidelity"] == fidelity]
        return f[self.space.names].to_numpy(dtype=float)

    @classmethod
    def concat(cls, tables: Iterable["RateTable"]) -> "RateTable":
        tables = list(tables)
        return cls(pd.concat([t.frame for t in tables], ignore_index=True), tables[0].space)

    # ------------------------------------------------------------------- I/O
    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write the table to Parquet atomically (temporary file, then rename)."""
        with atomic_path(path) as tmp:
            self.frame.to_parquet(tmp, index=False)
        return Path(path)

    @classmethod
    def read_parquet(cls, path: str | os.PathLike[str], space: DesignSpace) -> "RateTable":
        return cls(read_parquet(path), space, source=str(path))

    def __repr__(self) -> str:
        counts = self.frame["fidelity"].value_counts().to_dict()
        return f"RateTable({len(self)} rows, fidelities={counts})"
