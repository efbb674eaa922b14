"""Data interfaces of the denoiser: in-memory :class:`EventData` and streaming chunk sources.

**In memory.** :class:`EventData` holds events **sorted by run**: φ as one float32
array (n, dφ), labels as float32 0/1, and θ once per run (R, dθ); ``run_starts`` (R+1)
delimits the runs. Batches are built by integer indexing into these arrays, no
per-event Python loops. Build it with :meth:`EventData.from_arrays` (per-event θ, φ, y,
run_id) or :func:`from_event_table`.

**Streaming.** A *chunk source* is a zero-argument callable returning a fresh iterator
of :class:`EventData` chunks, each holding **whole runs** (a run never spans chunks; run
ids unique over the source). The trainer reads it once to set up (split, normalisation,
context banks, positive pool) and once per epoch. :func:`parquet_shards` streams one
Parquet file per run with pyarrow; :func:`from_event_store` streams the finished runs of
a :class:`rarefy.EventStore`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence, Union

import numpy as np
import pyarrow.parquet as pq

from ..errors import InputError, fmt_value

if TYPE_CHECKING:
    from ..data.events import EventTable
    from ..data.store import EventStore

__all__ = ["EventData", "ChunkSource", "Source", "iter_chunks", "parquet_shards", "from_event_table",
           "from_event_store", "split_runs"]


@dataclass
class EventData:
    """Events of one or more runs, sorted by run (see the module docstring).

    Attributes
    ----------
    theta: (R, dθ) float64, the design of each run, in parameter units.
    phi: (n, dφ) float32, per-event features, in their own units.
    y: (n,) float32, outcome 0/1.
    run_starts: (R+1,) int64, events of run r are ``run_starts[r]:run_starts[r+1]``.
    run_ids: R run ids (str).
    fidelity: R fidelity names, or None.
    """

    theta: np.ndarray
    phi: np.ndarray
    y: np.ndarray
    run_starts: np.ndarray
    run_ids: list[str]
    theta_names: list[str] = field(default_factory=list)
    phi_names: list[str] = field(default_factory=list)
    fidelity: list[str] | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        self.theta = np.atleast_2d(np.asarray(self.theta, dtype=np.float64))
        self.phi = np.asarray(self.phi, dtype=np.float32)
        if self.phi.ndim == 1:
            self.phi = self.phi[:, None]
        self.y = np.asarray(self.y, dtype=np.float32)
        self.run_starts = np.asarray(self.run_starts, dtype=np.int64)
        self.run_ids = [str(r) for r in self.run_ids]
        if not self.theta_names:
            self.theta_names = [f"theta{j}" for j in range(self.theta.shape[1])]
        if not self.phi_names:
            self.phi_names = [f"phi{j}" for j in range(self.phi.shape[1])]
        self._validate()

    def _validate(self) -> None:
        src = self.source
        n = len(self.y)
        if n == 0:
            raise InputError("no events", file=src)
        if self.phi.shape[1] == 0:
            raise InputError("no φ columns: the denoiser needs at least one per-event feature", file=src)
        if len(self.phi) != n:
            raise InputError(f"φ has {len(self.phi)} rows but there are {n} outcomes", file=src)
        r = len(self.run_ids)
        if self.theta.shape[0] != r or len(self.run_starts) != r + 1:
            raise InputError(f"{r} run ids but θ has {self.theta.shape[0]} rows and run_starts {len(self.run_starts)}",
                             file=src)
        if self.run_starts[0] != 0 or self.run_starts[-1] != n or np.any(np.diff(self.run_starts) <= 0):
            raise InputError("run_starts must rise strictly from 0 to the number of events (no empty runs)", file=src)
        if len(set(self.run_ids)) != r:
            raise InputError("run ids are not unique", file=src)
        if len(self.theta_names) != self.theta.shape[1] or len(self.phi_names) != self.phi.shape[1]:
            raise InputError("θ/φ names do not match the array widths", file=src)
        for name, arr, cols in (("θ", self.theta, self.theta_names), ("φ", self.phi, self.phi_names)):
            bad = ~np.isfinite(arr)
            if bad.any():
                i, j = map(int, np.argwhere(bad)[0])
                raise InputError(f"{name} value {fmt_value(arr[i, j])} is not a finite number", file=src,
                                 column=cols[j], row=i)
        bad = (self.y != 0) & (self.y != 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"outcome {fmt_value(self.y[i])} is not 0 or 1", file=src, column="outcome", row=i)

    # ---------------------------------------------------------- constructors
    @classmethod
    def from_arrays(cls, theta: np.ndarray, phi: np.ndarray, y: np.ndarray, run_id: Sequence[object] | np.ndarray,
                    *, theta_names: Sequence[str] | None = None, phi_names: Sequence[str] | None = None,
                    fidelity: Sequence[str] | np.ndarray | None = None, source: str | None = None) -> "EventData":
        """Build from per-event arrays: θ (n, dθ), φ (n, dφ), y (n,), run_id (n,), fidelity (n,) optional.

        Events are re-ordered by run (stable, run ids sorted as strings); θ (and
        fidelity) must be constant within a run.
        """
        y = np.asarray(y)
        n = len(y)
        if n == 0:
            raise InputError("no events", file=source)
        theta = np.asarray(theta, dtype=np.float64).reshape(n, -1)
        phi = np.asarray(phi, dtype=np.float32)
        phi = phi.reshape(n, -1) if phi.size else np.zeros((n, 0), np.float32)
        ids = np.asarray(run_id).astype(str)
        if len(ids) != n or len(phi) != n:
            raise InputError(f"θ, φ, y and run_id must have the same length, got {len(theta)}, {len(phi)}, {n}, {len(ids)}",
                             file=source)
        names, codes = np.unique(ids, return_inverse=True)
        order = np.argsort(codes, kind="stable")
        codes = codes[order]
        starts = np.searchsorted(codes, np.arange(len(names) + 1))
        theta_s = theta[order]
        run_theta = theta_s[starts[:-1]]
        varies = np.any(np.abs(theta_s - np.repeat(run_theta, np.diff(starts), axis=0)) > 0, axis=1)
        if varies.any():
            i = int(order[np.argmax(varies)])
            raise InputError(f"θ varies within run {ids[i]!r}; a run is one design", file=source, row=i)
        fid = None
        if fidelity is not None:
            f = np.asarray(fidelity).astype(str)[order]
            fid = list(f[starts[:-1]])
            if np.any(f != np.repeat(np.asarray(fid), np.diff(starts))):
                raise InputError("fidelity varies within a run", file=source)
        return cls(run_theta, phi[order], np.asarray(y, dtype=np.float32)[order], starts, list(names),
                   list(theta_names or []), list(phi_names or []), fid, source)

    # ---------------------------------------------------------------- access
    @property
    def n(self) -> int:
        """Number of events."""
        return len(self.y)

    @property
    def n_runs(self) -> int:
        return len(self.run_ids)

    @property
    def run_sizes(self) -> np.ndarray:
        return np.diff(self.run_starts)

    def run_of(self, idx: np.ndarray) -> np.ndarray:
        """Run position (0..R-1) of event indices ``idx``."""
        return np.searchsorted(self.run_starts, idx, side="right") - 1

    def run_k(self) -> np.ndarray:
        """Signal count per run, (R,) int64."""
        c = np.concatenate([[0.0], np.cumsum(self.y, dtype=np.float64)])
        return np.rint(c[self.run_starts[1:]] - c[self.run_starts[:-1]]).astype(np.int64)

    def select_runs(self, runs: np.ndarray | Sequence[int]) -> "EventData":
        """The events of runs at positions ``runs`` (in the given order), as new EventData."""
        runs = np.asarray(runs, dtype=np.int64)
        if not len(runs):
            raise InputError("no runs selected", file=self.source)
        sizes = self.run_sizes[runs]
        idx = np.concatenate([np.arange(self.run_starts[r], self.run_starts[r + 1]) for r in runs])
        return EventData(self.theta[runs], self.phi[idx], self.y[idx], np.concatenate([[0], np.cumsum(sizes)]),
                         [self.run_ids[r] for r in runs], self.theta_names, self.phi_names,
                         None if self.fidelity is None else [self.fidelity[r] for r in runs], self.source)


ChunkSource = Callable[[], Iterable[EventData]]
Source = Union[EventData, ChunkSource]


def iter_chunks(source: Source) -> Iterator[EventData]:
    """Chunks of ``source``: the EventData itself, or a fresh pass over a chunk source."""
    if isinstance(source, EventData):
        yield source
        return
    if not callable(source):
        raise InputError(f"a denoiser data source must be EventData or a callable returning chunks, got {type(source).__name__}")
    yield from source()


def from_event_table(table: "EventTable", fidelity: str | None = None, phi: Sequence[str] | None = None) -> EventData:
    """In-memory EventData from a :class:`rarefy.EventTable` (``run_id`` column required).

    ``phi`` selects the φ columns (any numeric columns of the table, e.g. auxiliary
    ones; default: the table's φ columns); a missing one raises :class:`InputError`.
    """
    from ..data.events import FIDELITY, RUN_ID

    cols = table.table.column_names
    if RUN_ID not in cols:
        raise InputError("event table has no run_id column; the denoiser needs runs", file=table.source, column=RUN_ID)
    if table.n == 0:
        raise InputError("no events", file=table.source)
    fid = table.table.column(FIDELITY).to_numpy(zero_copy_only=False) if FIDELITY in cols else None
    if fidelity is not None:
        fid = np.full(table.n, fidelity)
    if phi is None:
        phi_names, phi_arr = table.phi_names, table.phi()
    else:
        phi_names = list(phi)
        missing = [c for c in phi_names if c not in cols]
        if missing:
            raise InputError(f"events lack the φ column(s) {missing} (has: {', '.join(cols)})", file=table.source)
        try:
            phi_arr = np.column_stack([table.table.column(c).to_numpy(zero_copy_only=False).astype(np.float32)
                                       for c in phi_names]) if phi_names else np.zeros((table.n, 0), np.float32)
        except (TypeError, ValueError):
            raise InputError(f"φ columns {phi_names} must be numeric", file=table.source) from None
    return EventData.from_arrays(table.theta(), phi_arr, table.outcome,
                                 table.table.column(RUN_ID).to_numpy(zero_copy_only=False),
                                 theta_names=table.theta_names, phi_names=phi_names, fidelity=fid, source=table.source)


def parquet_shards(paths: Sequence[str | os.PathLike[str]], theta: Sequence[str], phi: Sequence[str], *,
                   outcome: str = "outcome", run_id: str | None = "run_id", fidelity: str | None = None) -> ChunkSource:
    """Stream Parquet files, **one run per file**, as EventData chunks (read with pyarrow, column subset).

    ``theta``/``phi`` name the columns; ``run_id`` names the run-id column (None: the
    file stem is the run id); ``fidelity`` is stored as every run's fidelity. Missing
    files or columns raise :class:`InputError` when the source is first read.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("no event shards given")
    theta, phi = list(theta), list(phi)
    if not phi:
        raise InputError("no φ columns given: the denoiser needs at least one per-event feature")

    def read(path: Path) -> EventData:
        if not path.exists():
            raise InputError("event shard not found", file=path)
        schema = pq.read_schema(path)
        wanted = [*theta, *phi, outcome] + ([run_id] if run_id else [])
        missing = [c for c in wanted if c not in schema.names]
        if missing:
            raise InputError(f"event shard is missing the column(s) {missing} (has: {', '.join(schema.names)})", file=path)
        t = pq.read_table(path, columns=list(dict.fromkeys(wanted)))
        n = t.num_rows
        if n == 0:
            raise InputError("no events", file=path)
        th = np.column_stack([t.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in theta]) if theta \
            else np.zeros((n, 0))
        ph = np.column_stack([t.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in phi])
        y = t.column(outcome).to_numpy(zero_copy_only=False)
        ids = t.column(run_id).to_numpy(zero_copy_only=False).astype(str) if run_id else np.full(n, path.stem)
        return EventData.from_arrays(th, ph, y, ids, theta_names=theta, phi_names=phi,
                                     fidelity=None if fidelity is None else np.full(n, fidelity), source=str(path))

    def chunks() -> Iterator[EventData]:
        for p in paths:
            yield read(p)

    return chunks


def from_event_store(store: "EventStore", fidelity: str | None = None, phi: Sequence[str] | None = None
                     ) -> ChunkSource:
    """Stream the finished runs of a :class:`rarefy.EventStore`, one run per chunk.

    ``fidelity`` keeps only that fidelity's runs; ``phi`` selects the φ columns (see
    :func:`from_event_table`). Raises :class:`InputError` when there are no such runs.
    """
    runs = store.runs(states=("done",))
    if fidelity is not None:
        runs = runs[runs["fidelity"] == fidelity]
    if runs.empty:
        raise InputError("no finished runs in the store" + (f" for fidelity {fidelity!r}" if fidelity else ""),
                         file=store.run_dir)
    pairs = sorted(zip(runs["run_id"].astype(str), runs["fidelity"].astype(str)))

    def chunks() -> Iterator[EventData]:
        for rid, fid in pairs:
            table = store.events(rid).with_run(fidelity=fid, run_id=rid)
            yield from_event_table(table, phi=phi)

    return chunks


def split_runs(run_ids: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
               ) -> tuple[list[str], list[str], list[str]]:
    """Split run ids into train / validation / test, deterministically for ``seed``.

    Runs are sorted, permuted with ``numpy.random.default_rng(seed)``, and cut by the
    fractions (rounded; at least one training run, and at least one
    validation / test run when its fraction is positive and there are enough runs). Events never cross the split.
    """
    ids = sorted(set(map(str, run_ids)))
    if len(ids) != len(run_ids):
        raise InputError("run ids are not unique")
    f = np.asarray(fractions, dtype=float)
    if len(f) != 3 or np.any(f < 0) or f.sum() <= 0 or f[0] <= 0:
        raise InputError(f"split fractions must be three numbers >= 0 with a positive training share, got {list(fractions)}")
    if not ids:
        raise InputError("no runs to split")
    f = f / f.sum()
    perm = np.random.default_rng(seed).permutation(len(ids))
    n_val = int(round(f[1] * len(ids)))
    n_test = int(round(f[2] * len(ids)))
    if f[1] > 0 and len(ids) >= 2:
        n_val = max(n_val, 1)
    if f[2] > 0 and len(ids) >= 3:
        n_test = max(n_test, 1)
    n_val = min(n_val, max(len(ids) - 1, 0))
    n_test = min(n_test, max(len(ids) - 1 - n_val, 0))
    val = [ids[i] for i in perm[:n_val]]
    test = [ids[i] for i in perm[n_val:n_val + n_test]]
    train = [ids[i] for i in perm[n_val + n_test:]]
    return sorted(train), sorted(val), sorted(test)
