"""The event store of a run directory: Parquet event shards plus a SQLite run catalog.

Layout of ``RUN_DIR``::

    catalog.sqlite     every run request and its state (SQLite, WAL journal)
    events/RUN_ID.parquet   the events of one finished run (one shard per run)
    rates.parquet      one row per finished run (see :meth:`EventStore.rate_frame` and
                       :mod:`rarefy.data.rundir`, its one writer)

The catalog table ``runs`` has one row per run request: ``run_id``, ``idx`` (position in
the campaign's request list), ``fidelity``, ``theta`` (JSON), ``seed``, ``n_requested``,
``state`` (``queued`` / ``running`` / ``done`` / ``failed``), ``attempts``,
``n_produced``, ``k`` (signal count), ``wall_s`` and ``cpu_s`` (seconds, of the last
attempt), ``cost_cpu_h`` (nominal cost, CPU-hours), ``error`` and ``stderr`` (text),
``worker`` and ``updated_at`` (Unix time). ``running`` means handed to the executor.

A run is ``done`` only after its shard has been renamed into place, so a killed campaign
never leaves a ``done`` run without events; a ``running`` row left by a killed campaign
is simply run again (same seed, same shard).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..space import DesignSpace
from .events import EventTable
from .rates import RateTable, count_variance
from .rundir import write_rates

__all__ = ["EventStore", "RunRequest", "STATES", "RATE_COLUMNS"]

log = logging.getLogger(__name__)

STATES = ("queued", "running", "done", "failed")
RATE_COLUMNS = ("fidelity", "k", "n", "rate", "var", "cost_cpu_h", "run_id")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    idx INTEGER NOT NULL UNIQUE,
    fidelity TEXT NOT NULL,
    theta TEXT NOT NULL,
    seed INTEGER NOT NULL,
    n_requested INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    n_produced INTEGER,
    k INTEGER,
    wall_s REAL,
    cpu_s REAL,
    cost_cpu_h REAL,
    error TEXT,
    stderr TEXT,
    worker TEXT,
    updated_at REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class RunRequest:
    """One simulation run: ``n`` events at design ``theta`` and ``fidelity`` with ``seed``.

    ``cost_cpu_h`` is the run's nominal cost in CPU-hours (NaN when unknown).
    """

    run_id: str
    index: int
    fidelity: str
    theta: dict[str, float] = field(hash=False)
    n: int
    seed: int
    cost_cpu_h: float = float("nan")

    def same_as(self, other: "RunRequest") -> bool:
        """True when both describe the same run (θ compared to 1e-12 relative)."""
        if (self.run_id, self.index, self.fidelity, self.n, self.seed) != (
                other.run_id, other.index, other.fidelity, other.n, other.seed):
            return False
        if set(self.theta) != set(other.theta):
            return False
        return all(np.isclose(self.theta[k], other.theta[k], rtol=1e-12, atol=0) for k in self.theta)


class EventStore:
    """Event shards and the run catalog of one run directory (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir).absolute()
        self.events_dir = self.run_dir / "events"
        if self.events_dir.exists() and not self.events_dir.is_dir():
            raise InputError("is a file, expected the folder of event shards", file=self.events_dir)
        self.events_dir.mkdir(parents=True, exist_ok=True)
        self.catalog_path = self.run_dir / "catalog.sqlite"
        if self.catalog_path.is_dir():
            raise InputError("is a folder, expected the run catalog (SQLite)", file=self.catalog_path)
        self._conn = sqlite3.connect(self.catalog_path, timeout=60.0)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            self._conn.commit()
        except sqlite3.DatabaseError as exc:  # not a database, a corrupt one, or another program's
            self._conn.close()
            raise InputError(f"cannot open the run catalog: {exc}", file=self.catalog_path) from None

    def close(self) -> None:
        """Close the catalog connection."""
        self._conn.close()

    def __enter__(self) -> "EventStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- shards
    @staticmethod
    def shard_path(run_dir: str | os.PathLike[str], run_id: str) -> Path:
        """Where the events of ``run_id`` live."""
        return Path(run_dir) / "events" / f"{run_id}.parquet"

    @staticmethod
    def write_shard(run_dir: str | os.PathLike[str], run_id: str, events: EventTable) -> Path:
        """Write one run's events atomically (safe to call from a worker process)."""
        return events.to_parquet(EventStore.shard_path(run_dir, run_id))

    def remove_partial_shards(self) -> int:
        """Delete the temporary files of shard writes that a killed worker left in ``events/``.

        Only safe while no worker writes into this run directory (the campaign engine calls
        it before submitting runs; the jobs hold the run directory's lock). Returns how many.
        """
        partial = list(self.events_dir.glob(".*.parquet.*.tmp"))
        for path in partial:
            path.unlink(missing_ok=True)
        return len(partial)

    @staticmethod
    def shard_columns(run_dir: str | os.PathLike[str], run_id: str) -> list[str]:
        """The column names of one run's event shard (read from its Parquet schema, not its data)."""
        path = EventStore.shard_path(run_dir, run_id)
        if not path.is_file():
            raise InputError("event shard not found (or not a file)", file=path)
        try:
            return list(pq.read_schema(path).names)
        except (OSError, ValueError, pa.ArrowException) as exc:  # pyarrow: ArrowInvalid is a ValueError
            raise InputError(f"cannot read Parquet events: {exc}", file=path) from None

    def events(self, run_id: str) -> EventTable:
        """The events of one finished run."""
        return EventTable.read_parquet(self.shard_path(self.run_dir, run_id))

    def all_events(self, fidelity: str | None = None) -> EventTable:
        """The events of all finished runs (of one fidelity), in run-id order."""
        runs = self.runs(states=("done",))
        if fidelity is not None:
            runs = runs[runs["fidelity"] == fidelity]
        if runs.empty:
            raise InputError("no finished runs in the store", file=self.run_dir)
        return EventTable.concat(self.events(r) for r in runs["run_id"])

    # --------------------------------------------------------------- catalog
    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def check_requests(self, requests: Sequence[RunRequest]) -> list[RunRequest]:
        """The requests the catalog does not hold yet; writes nothing.

        Raises :class:`InputError` when the catalog holds a different run under the same
        id (the run directory belongs to another campaign), so a job can check its plan
        before it writes anything into the run directory.
        """
        known = {r.run_id: r for r in self.requests()}
        new = []
        for req in requests:
            old = known.get(req.run_id)
            if old is None:
                new.append(req)
            elif not old.same_as(req):
                raise InputError(
                    f"run directory holds a different campaign: run {req.run_id} was {old.fidelity}, n={old.n}, "
                    f"seed={old.seed}, θ={old.theta}; the config asks for {req.fidelity}, n={req.n}, seed={req.seed}, "
                    f"θ={req.theta}. Use a new run directory", file=self.catalog_path)
        return new

    def add_requests(self, requests: Sequence[RunRequest]) -> int:
        """Record run requests as ``queued``; requests already in the catalog must match exactly.

        Returns the number of new requests. Raises :class:`InputError` when the catalog
        holds a different run under the same id (see :meth:`check_requests`).
        """
        new = self.check_requests(requests)
        now = time.time()
        with self._conn:
            self._conn.executemany(
                "INSERT INTO runs (run_id, idx, fidelity, theta, seed, n_requested, state, cost_cpu_h, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                [(r.run_id, r.index, r.fidelity, json.dumps(r.theta), int(r.seed), int(r.n),
                  None if not np.isfinite(r.cost_cpu_h) else float(r.cost_cpu_h), now) for r in new])
        return len(new)

    def requests(self, states: Iterable[str] | None = None) -> list[RunRequest]:
        """Run requests in the catalog (optionally only those in ``states``), in request order."""
        sql = "SELECT run_id, idx, fidelity, theta, n_requested, seed, cost_cpu_h, state FROM runs ORDER BY idx"
        wanted = None if states is None else set(states)
        out = []
        for run_id, idx, fid, theta, n, seed, cost, state in self._conn.execute(sql):
            if wanted is None or state in wanted:
                out.append(RunRequest(run_id, idx, fid, json.loads(theta), n, seed,
                                      float("nan") if cost is None else cost))
        return out

    def requeue(self, states: Iterable[str] = ("running",)) -> int:
        """Put runs in ``states`` back to ``queued`` (e.g. runs a killed campaign left ``running``)."""
        states = list(states)
        with self._conn:
            cur = self._conn.execute(
                f"UPDATE runs SET state = 'queued', attempts = 0 WHERE state IN ({','.join('?' * len(states))})", states)
        return cur.rowcount

    def mark_running(self, run_ids: Sequence[str]) -> None:
        """Record that runs were handed to the executor."""
        now = time.time()
        with self._conn:
            self._conn.executemany("UPDATE runs SET state = 'running', updated_at = ? WHERE run_id = ?",
                                   [(now, r) for r in run_ids])

    def mark_attempt_failed(self, run_id: str, attempts: int, error: str) -> None:
        """Record a failed attempt that will be retried (the run stays ``running``)."""
        with self._conn:
            self._conn.execute("UPDATE runs SET attempts = ?, error = ?, updated_at = ? WHERE run_id = ?",
                               (attempts, error, time.time(), run_id))

    def mark_done(self, run_id: str, *, n: int, k: int, wall_s: float, cpu_s: float, attempts: int,
                  stderr: str = "", worker: str = "") -> None:
        """Record a finished run; its shard must already be in place."""
        if not self.shard_path(self.run_dir, run_id).exists():
            raise RuntimeError(f"run {run_id} has no event shard; cannot mark it done")
        with self._conn:
            self._conn.execute(
                "UPDATE runs SET state = 'done', n_produced = ?, k = ?, wall_s = ?, cpu_s = ?, attempts = ?, "
                "error = NULL, stderr = ?, worker = ?, updated_at = ? WHERE run_id = ?",
                (int(n), int(k), float(wall_s), _nan_none(cpu_s), int(attempts), stderr or None, worker,
                 time.time(), run_id))

    def mark_failed(self, run_id: str, *, error: str, attempts: int, wall_s: float = float("nan"),
                    cpu_s: float = float("nan"), stderr: str = "", worker: str = "") -> None:
        """Record a run that failed for good (after its retries)."""
        with self._conn:
            self._conn.execute(
                "UPDATE runs SET state = 'failed', error = ?, attempts = ?, wall_s = ?, cpu_s = ?, stderr = ?, "
                "worker = ?, updated_at = ? WHERE run_id = ?",
                (error, int(attempts), _nan_none(wall_s), _nan_none(cpu_s), stderr or None, worker, time.time(),
                 run_id))

    def runs(self, states: Iterable[str] | None = None) -> pd.DataFrame:
        """The catalog as a DataFrame (θ expanded into one column per parameter), in request order."""
        frame = pd.read_sql_query("SELECT * FROM runs ORDER BY idx", self._conn)
        if states is not None:
            frame = frame[frame["state"].isin(list(states))].reset_index(drop=True)
        thetas = pd.DataFrame([json.loads(t) for t in frame["theta"]], index=frame.index)
        return pd.concat([frame.drop(columns=["theta"]), thetas], axis=1)

    def counts(self) -> dict[str, int]:
        """Number of runs per state."""
        rows = self._conn.execute("SELECT state, COUNT(*) FROM runs GROUP BY state").fetchall()
        out = {s: 0 for s in STATES}
        out.update(dict(rows))
        return out

    # ----------------------------------------------------------- aggregation
    def rate_frame(self, space: DesignSpace) -> pd.DataFrame:
        """One row per finished run: θ columns, fidelity, k, n, rate, var, cost_cpu_h, run_id.

        ``rate = k / n`` (signal probability per event), ``var = count_variance(rate, k, n)``
        (``k/n²``; ``1/n²`` for k = 0), ``cost_cpu_h`` the nominal cost. Rows are sorted
        by ``run_id``. A run that produced no events has no rate: it is left out (and logged).
        """
        runs = self.runs(states=("done",))
        empty = runs["n_produced"].to_numpy(dtype=float) < 1 if len(runs) else np.zeros(0, dtype=bool)
        if empty.any():
            log.warning("%d finished run(s) produced no events and have no rate: %s", int(empty.sum()),
                        ", ".join(runs.loc[empty, "run_id"].astype(str)))
            runs = runs[~empty].reset_index(drop=True)
        missing = [c for c in space.names if c not in runs.columns]
        if len(runs) and missing:
            raise InputError(f"catalog runs lack the design parameters {missing}", file=self.catalog_path)
        k = runs["k"].to_numpy(dtype=float)
        n = runs["n_produced"].to_numpy(dtype=float)
        rate = k / n if len(runs) else np.zeros(0)
        frame = pd.DataFrame({name: runs[name].to_numpy(dtype=float) for name in space.names}
                             if len(runs) else {name: np.zeros(0) for name in space.names})
        frame["fidelity"] = runs["fidelity"].astype(str).to_numpy()
        frame["k"] = k
        frame["n"] = n
        frame["rate"] = rate
        frame["var"] = count_variance(rate, k, n)
        frame["cost_cpu_h"] = runs["cost_cpu_h"].to_numpy(dtype=float)
        frame["run_id"] = runs["run_id"].astype(str).to_numpy()
        return frame.sort_values("run_id", kind="stable").reset_index(drop=True)

    def rate_table(self, space: DesignSpace) -> RateTable:
        """:meth:`rate_frame` as a validated :class:`RateTable`."""
        return RateTable(self.rate_frame(space), space, source=str(self.catalog_path))

    def write_rates(self, space: DesignSpace) -> Path:
        """Write the finished runs into ``RUN_DIR/rates.parquet`` (atomically), keeping the rows and columns
        other jobs added there (:func:`rarefy.data.rundir.write_rates`)."""
        return write_rates(self.run_dir, self.rate_frame(space), space)


def _nan_none(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)
