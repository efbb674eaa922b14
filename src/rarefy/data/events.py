"""Event tables: one row per simulated primary (e.g. one neutron), backed by Arrow.

An :class:`EventTable` holds, for every event,

===============  ============================================================
θ columns        the design the event was simulated at (one per parameter)
φ columns        per-event parameters (birth position, energy, time, ...)
``outcome``      1 if the rare event happened (e.g. a Ge-77 capture), else 0
``weight``       optional per-event weight (carried along; rates use counts)
``fidelity``     optional fidelity name (str)
``run_id``       optional id of the simulation run the event belongs to
===============  ============================================================

Any further columns (e.g. a simulator's per-event truth) are kept as auxiliary columns:
they are neither θ nor φ. The θ/φ split is stored in the Arrow schema metadata, so a
Parquet file written by :meth:`EventTable.to_parquet` reads back with it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..io import atomic_path
from ..errors import InputError, fmt_value

__all__ = ["EventTable", "OUTCOME", "WEIGHT", "FIDELITY", "RUN_ID"]

OUTCOME, WEIGHT, FIDELITY, RUN_ID = "outcome", "weight", "fidelity", "run_id"
_META_KEY = b"rarefy.events"


class EventTable:
    """A validated table of simulated events (see the module docstring for the columns).

    ``outcome`` must hold only 0 and 1; ``weight`` (if present) must be finite and >= 0.

    Parameters
    ----------
    table:
        The events as a :class:`pyarrow.Table` with the canonical column names.
    theta, phi:
        Names of the θ and φ columns, in order. Both must be numeric and finite.
    source:
        Optional file name, used in error messages.
    """

    def __init__(self, table: pa.Table, theta: Sequence[str], phi: Sequence[str], source: str | None = None) -> None:
        self.theta_names = list(theta)
        self.phi_names = list(phi)
        self.source = source
        self._table = self._validate(table)

    # ------------------------------------------------------------ validation
    def _validate(self, table: pa.Table) -> pa.Table:
        names = set(table.column_names)
        overlap = set(self.theta_names) & set(self.phi_names)
        if overlap:
            raise InputError(f"columns {sorted(overlap)} are declared both as θ and as φ", file=self.source)
        for col in (*self.theta_names, *self.phi_names, OUTCOME):
            if col not in names:
                raise InputError(f"event table is missing the column (has: {', '.join(table.column_names)})",
                                 file=self.source, column=col)
        casts: dict[str, pa.DataType] = {c: pa.float64() for c in (*self.theta_names, *self.phi_names)}
        casts[OUTCOME] = pa.int8()
        if WEIGHT in names:
            casts[WEIGHT] = pa.float64()
        for col, dtype in casts.items():
            values = self._numeric(table, col)
            if col == OUTCOME:
                bad = ~np.isin(values, (0.0, 1.0))
                what = "is not 0 or 1"
            elif col == WEIGHT:
                bad = ~np.isfinite(values) | (values < 0)
                what = "is not a finite number >= 0"
            else:
                bad = ~np.isfinite(values)
                what = "is not a finite number"
            if bad.any():
                i = int(np.argmax(bad))
                raise InputError(f"value {fmt_value(table.column(col)[i].as_py())} {what}",
                                 file=self.source, column=col, row=i)
            table = table.set_column(table.column_names.index(col), col, pa.array(values.astype(dtype.to_pandas_dtype())))
        for col in (FIDELITY, RUN_ID):
            if col in names and not pa.types.is_string(table.schema.field(col).type):
                table = table.set_column(table.column_names.index(col), col, table.column(col).cast(pa.string()))
        meta = dict(table.schema.metadata or {})
        meta[_META_KEY] = json.dumps({"theta": self.theta_names, "phi": self.phi_names}).encode()
        return table.replace_schema_metadata(meta)

    def _numeric(self, table: pa.Table, col: str) -> np.ndarray:
        column = table.column(col)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type)):
            try:
                values = pd.to_numeric(column.to_pandas(), errors="coerce").to_numpy(dtype=float)
            except (TypeError, ValueError):
                values = np.full(len(column), np.nan)
        else:
            values = column.to_numpy(zero_copy_only=False).astype(float)
        if column.null_count:
            values = values.copy()
            values[np.asarray(column.is_null().to_numpy(zero_copy_only=False))] = np.nan
        return values

    # ---------------------------------------------------------- constructors
    @classmethod
    def from_pandas(
        cls,
        frame: pd.DataFrame,
        theta: Sequence[str],
        phi: Sequence[str],
        *,
        fidelity: str | None = None,
        run_id: str | None = None,
        source: str | None = None,
    ) -> "EventTable":
        """Build from a DataFrame whose columns already carry the canonical names.

        ``fidelity`` / ``run_id``, when given, fill (or overwrite) those columns.
        """
        frame = frame.reset_index(drop=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        return cls(table, theta, phi, source=source).with_run(fidelity=fidelity, run_id=run_id)

    @classmethod
    def from_arrays(
        cls,
        theta: Mapping[str, float],
        phi: Mapping[str, np.ndarray],
        outcome: np.ndarray,
        *,
        weight: np.ndarray | None = None,
        fidelity: str | None = None,
        run_id: str | None = None,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> "EventTable":
        """Build from per-event arrays and one design ``theta`` (name -> value) shared by all events."""
        n = len(outcome)
        cols: dict[str, Any] = {k: np.full(n, float(v)) for k, v in theta.items()}
        cols.update({k: np.asarray(v, dtype=float) for k, v in phi.items()})
        cols[OUTCOME] = np.asarray(outcome, dtype=np.int8)
        if weight is not None:
            cols[WEIGHT] = np.asarray(weight, dtype=float)
        for k, v in (extra or {}).items():
            cols[k] = np.asarray(v)
        table = pa.table(cols)
        return cls(table, list(theta), list(phi)).with_run(fidelity=fidelity, run_id=run_id)

    def with_run(self, *, fidelity: str | None = None, run_id: str | None = None,
                 theta: Mapping[str, float] | None = None) -> "EventTable":
        """Return a copy with the ``fidelity`` / ``run_id`` columns (and θ columns) set to constants."""
        table = self._table
        n = table.num_rows
        theta_names = list(self.theta_names)
        fills: dict[str, pa.Array] = {}
        if fidelity is not None:
            fills[FIDELITY] = pa.repeat(pa.scalar(fidelity, type=pa.string()), n)
        if run_id is not None:
            fills[RUN_ID] = pa.repeat(pa.scalar(run_id, type=pa.string()), n)
        for k, v in (theta or {}).items():
            fills[k] = pa.repeat(pa.scalar(float(v), type=pa.float64()), n)
            if k not in theta_names:
                theta_names.append(k)
        for name, arr in fills.items():
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, arr)
            else:
                table = table.append_column(name, arr)
        if not fills:
            return self
        for k, v in (theta or {}).items():
            if not np.isfinite(float(v)):
                raise InputError(f"value {fmt_value(v)} is not a finite number", file=self.source, column=k)
        if set(fills) & set(self.phi_names):
            return EventTable(table, theta_names, self.phi_names, source=self.source)
        # only constant, already checked columns changed: skip the full re-validation
        out = object.__new__(EventTable)
        out.theta_names, out.phi_names, out.source = theta_names, list(self.phi_names), self.source
        meta = dict(table.schema.metadata or {})
        meta[_META_KEY] = json.dumps({"theta": theta_names, "phi": out.phi_names}).encode()
        out._table = table.replace_schema_metadata(meta)
        return out

    @classmethod
    def concat(cls, tables: Iterable["EventTable"]) -> "EventTable":
        """Stack event tables with the same θ and φ columns."""
        tables = list(tables)
        if not tables:
            raise ValueError("nothing to concatenate")
        first = tables[0]
        for t in tables[1:]:
            if t.theta_names != first.theta_names or t.phi_names != first.phi_names:
                raise InputError("event tables with different θ/φ columns cannot be concatenated", file=t.source)
        table = pa.concat_tables([t.table for t in tables], promote_options="default")
        return cls(table, first.theta_names, first.phi_names)

    # ---------------------------------------------------------------- access
    @property
    def table(self) -> pa.Table:
        """The Arrow table (canonical column names; θ/φ split in the schema metadata)."""
        return self._table

    def to_pandas(self) -> pd.DataFrame:
        """The events as a pandas DataFrame."""
        return self._table.to_pandas()

    def __len__(self) -> int:
        return self._table.num_rows

    @property
    def n(self) -> int:
        """Number of events."""
        return self._table.num_rows

    @property
    def outcome(self) -> np.ndarray:
        """Per-event outcome, int8 array of 0/1."""
        return self._table.column(OUTCOME).to_numpy()

    @property
    def k(self) -> int:
        """Number of signal events (outcome = 1)."""
        return int(self.outcome.sum(dtype=np.int64))

    @property
    def weights(self) -> np.ndarray | None:
        """Per-event weights, or None when the table has none."""
        return self._table.column(WEIGHT).to_numpy() if WEIGHT in self._table.column_names else None

    @property
    def aux_names(self) -> list[str]:
        """Columns that are none of θ, φ, outcome, weight, fidelity, run_id."""
        known = {*self.theta_names, *self.phi_names, OUTCOME, WEIGHT, FIDELITY, RUN_ID}
        return [c for c in self._table.column_names if c not in known]

    def phi(self) -> np.ndarray:
        """φ as an (n, p) float array, in :attr:`phi_names` order."""
        if not self.phi_names:
            return np.zeros((self.n, 0))
        return np.column_stack([self._table.column(c).to_numpy() for c in self.phi_names])

    def theta(self) -> np.ndarray:
        """θ as an (n, d) float array, in :attr:`theta_names` order."""
        if not self.theta_names:
            return np.zeros((self.n, 0))
        return np.column_stack([self._table.column(c).to_numpy() for c in self.theta_names])

    # ------------------------------------------------------------------- I/O
    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write the events to Parquet atomically; the θ/φ split travels in the metadata."""
        path = Path(path)
        with atomic_path(path) as tmp:
            # dictionary-encode only the constant/text columns: trying it on random floats costs time
            floats = set(self.phi_names) | {WEIGHT}
            pq.write_table(self._table, tmp, compression="lz4", write_statistics=False,
                           use_dictionary=[c for c in self._table.column_names if c not in floats])
        return path

    @classmethod
    def read_parquet(cls, path: str | os.PathLike[str]) -> "EventTable":
        """Read a Parquet file written by :meth:`to_parquet` (θ/φ from its metadata)."""
        path = Path(path)
        if not path.exists():
            raise InputError("file not found", file=path)
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise InputError(f"cannot read Parquet events: {exc}", file=path) from None
        meta = (table.schema.metadata or {}).get(_META_KEY)
        if meta is None:
            raise InputError("Parquet file has no rarefy event metadata; use rarefy.read_events with a column spec",
                             file=path)
        spec = json.loads(meta)
        return cls(table, spec["theta"], spec["phi"], source=str(path))

    def __repr__(self) -> str:
        return (f"EventTable({self.n} events, k={self.k}, θ={self.theta_names}, φ={self.phi_names}"
                f"{', aux=' + str(self.aux_names) if self.aux_names else ''})")
