"""A run directory's files: their names, and the one writer of each table that several jobs touch.

Layout of ``RUN_DIR`` (every file written atomically)::

    config.yaml              the resolved config (rarefy simulate / fit / run / infer)
    catalog.sqlite, events/  run catalog and event shards (rarefy.data.store.EventStore)
    rates.parquet            one row per finished campaign run, plus rows and columns that
                             later jobs add: the ``<fidelity>-denoised`` rows of rarefy denoise and
                             the ``split`` column of rarefy train
    ingested.parquet         runs simulated elsewhere (rarefy ingest)
    training_rates.parquet   the table a surrogate was fitted on (rarefy fit / run)
    fit.json, optimum.json, result.json, suggestions.csv, objectives.parquet
    surrogate/, surrogates/  saved surrogates
    generate/                the event generator p(φ | θ): model.pt, generator.json, history.json, ...
    denoise/                 the denoiser: pipeline.json, config.yaml, model.pt, rates_denoised.parquet, ...
    loop/                    the closed loop's per-iteration records (iter-III.json, optimum.json, cv.json)
    report/                  index.html and figures

**rates.parquet has one writer**, :func:`write_rates`, which merges: the rows given
replace the rows with the same ``(run_id, fidelity)``, other rows are kept, and columns
the given rows lack keep their old values. So ``rarefy simulate`` (which writes the
simulated rows from the catalog) can run again after ``rarefy train`` / ``rarefy denoise``
without dropping their ``-denoised`` rows or ``split`` column. Rows are sorted by ``run_id``
then ``fidelity``.

**One process at a time.** Every job that writes a run directory holds its lock for the
whole job (:func:`run_dir_lock`): ``RUN_DIR/.rarefy.lock`` is locked with ``flock``
(:class:`filelock.FileLock`), so the kernel releases it when its process ends, however it
ends, and ``RUN_DIR/.rarefy.holder.json`` names the holder (job, pid, host, command line,
start time). A second process fails at once with one :class:`InputError` line naming the
directory and the holder; a holder file left by a killed process is replaced by the next
job. The lock is re-entrant within one thread, so a job that calls another on the same
directory (``rarefy run`` training the denoiser and writing the report) takes it once.
Which function takes it for which command:

=====================  ===========================================================
lock taken by          command
=====================  ===========================================================
``simulate``           ``rarefy simulate`` (and ``rarefy bench`` on ``DIR/events``)
``run``                ``rarefy run`` (single- and multi-objective)
``fit`` / ``validate`` ``rarefy fit`` / ``rarefy validate``
``train_denoiser``     ``rarefy train``
``denoise_run``        ``rarefy denoise``
``train_generator``    ``rarefy generate train``
``infer``              ``rarefy infer``
``suggest``            ``rarefy suggest``
``ingest``             ``rarefy ingest``
``optimize_run``       ``rarefy optimize``
``loop_report``        ``rarefy report``
``bench``              ``rarefy bench``
=====================  ===========================================================

**Whose directory.** The jobs that create a run directory from a config (``--out``:
simulate, run, fit, infer, bench) write ``RUN_DIR/.rarefy.run.json``, recording the
directory's kind, and refuse (before any work, :func:`check_out_dir`) a directory that
holds files but is no run directory (a project folder with the user's own
``config.yaml``), or a run directory of another kind. ``simulate`` and ``run`` share
their directories by design (the loop's initial design is ``rarefy simulate``'s
campaign); the other kinds each keep their own. A missing or empty directory is always
accepted, and a directory written before the marker existed is recognised by its files
(``catalog.sqlite``, ``fit.json``, ``posterior.nc``, ``bench.json``). ``rarefy train``,
``denoise``, ``suggest``, ``ingest``, ``optimize``, ``report`` and ``validate`` work in an
existing run directory and only take its lock.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from ..config import RunConfig, dump_config, load_config
from ..errors import InputError
from ..io import atomic_path, read_json, read_parquet, write_json
from ..space import DesignSpace
from .rates import RateTable

log = logging.getLogger(__name__)

__all__ = [
    "CONFIG", "CATALOG", "RATES", "INGESTED", "TRAINING_RATES", "FIT", "OPTIMUM", "RESULT", "OBJECTIVES",
    "SUGGESTIONS", "SURROGATE_DIR", "DENOISE_DIR", "GENERATE_DIR", "DENOISED_RATES", "PIPELINE", "LOOP_DIR", "REPORT_DIR",
    "DENOISED_SUFFIX", "LEGACY_NAMES", "denoised_base", "denoised_rates_path", "SPLIT_COLUMN", "KEY", "write_config",
    "read_config", "read_rates", "write_rates", "read_runs", "simulated_rows",
    "write_ingested", "write_training_rates", "read_result", "read_loop_records",
    "LOCK", "HOLDER", "MARKER", "KINDS", "run_dir_lock", "read_holder", "check_out_dir", "read_marker",
]

CONFIG = "config.yaml"
CATALOG = "catalog.sqlite"
RATES = "rates.parquet"
INGESTED = "ingested.parquet"
TRAINING_RATES = "training_rates.parquet"
FIT = "fit.json"
OPTIMUM = "optimum.json"
RESULT = "result.json"
SURFACE = "surface.parquet"       # a surface loop's prediction over its Sobol designs
OBJECTIVES = "objectives.parquet"
SUGGESTIONS = "suggestions.csv"
SURROGATE_DIR = "surrogate"
DENOISE_DIR = "denoise"
GENERATE_DIR = "generate"
DENOISED_RATES = "rates_denoised.parquet"   # in DENOISE_DIR
PIPELINE = "pipeline.json"        # in DENOISE_DIR
LOOP_DIR = "loop"
REPORT_DIR = "report"
DENOISED_SUFFIX = "-denoised"     # a denoised fidelity's name: "<fidelity>-denoised"
#: names that earlier versions wrote, old -> current: read (with one warning), never written
LEGACY_NAMES = {"-cnp": DENOISED_SUFFIX, "rates_cnp.parquet": DENOISED_RATES}
SPLIT_COLUMN = "split"            # train / val / test of the denoiser, per run
KEY = ("run_id", "fidelity")      # what identifies a row of rates.parquet
LOCK = ".rarefy.lock"             # flock'ed while a job works in the directory
HOLDER = ".rarefy.holder.json"    # who holds the lock: job, pid, host, command line, start time
MARKER = ".rarefy.run.json"       # the directory's kind: which job created it
KINDS = ("simulate", "run", "fit", "infer", "bench", "anomaly", "unfold")   # the jobs that create a run directory (--out)
_SHARED = {"simulate": ("simulate", "run"), "run": ("simulate", "run")}  # kinds that share a directory
_OWN_PREFIX = ".rarefy."          # the lock, holder and marker (and their temporary files)


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


@functools.lru_cache(maxsize=None)
def _warn_legacy(old: str, new: str) -> None:
    """Log once per process that ``old`` is read as ``new``."""
    log.warning("%r is an old name: it is now %r (read as such; please rename it)", old, new)


def denoised_base(name: str) -> str | None:
    """The fidelity that the denoised fidelity ``name`` denoises (``"lf"`` for ``"lf-denoised"``); None if not denoised.

    The old suffix ``-cnp`` (:data:`LEGACY_NAMES`) is still recognised, with one log warning
    naming the new name.
    """
    if name.endswith(DENOISED_SUFFIX) and len(name) > len(DENOISED_SUFFIX):
        return name[: -len(DENOISED_SUFFIX)]
    for old, new in LEGACY_NAMES.items():
        if old.startswith("-") and name.endswith(old) and len(name) > len(old):
            base = name[: -len(old)]
            _warn_legacy(name, base + new)
            return base
    return None


def denoised_rates_path(run_dir: str | os.PathLike[str]) -> Path:
    """``RUN_DIR/denoise/rates_denoised.parquet``; an old run directory's ``rates_cnp.parquet`` if only that exists."""
    path = Path(run_dir) / DENOISE_DIR / DENOISED_RATES
    if not path.exists():
        for old, new in LEGACY_NAMES.items():
            if new == DENOISED_RATES and (path.parent / old).exists():
                _warn_legacy(old, new)
                return path.parent / old
    return path


def read_runs(run_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """Every run of ``run_dir``: ``rates.parquet`` and ``ingested.parquet`` together (None when neither exists)."""
    run_dir = Path(run_dir)
    frames = [read_parquet(run_dir / name) for name in (RATES, INGESTED) if (run_dir / name).exists()]
    return pd.concat(frames, ignore_index=True) if frames else None


def simulated_rows(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every simulated run of ``run_dir`` (``rates.parquet`` + ``ingested.parquet``), without denoised rows.

    What the nominal cost is counted on: a denoised row re-scores a run, it costs nothing more.
    """
    frame = read_runs(run_dir)
    if frame is None:
        return pd.DataFrame(columns=["fidelity", "cost_cpu_h", "run_id"])
    denoised = frame["fidelity"].astype(str).map(lambda f: denoised_base(f) is not None)
    return frame[~denoised.astype(bool)].reset_index(drop=True)


def write_training_rates(run_dir: str | os.PathLike[str], table: RateTable) -> Path:
    """Write ``RUN_DIR/training_rates.parquet``, the table a surrogate was fitted on (atomically)."""
    return table.to_parquet(Path(run_dir) / TRAINING_RATES)


def write_surface(run_dir: str | os.PathLike[str], frame: pd.DataFrame) -> Path:
    """Write ``RUN_DIR/surface.parquet``: a surface loop's target prediction (θ columns, ``mean``, ``sigma``)."""
    path = Path(run_dir) / SURFACE
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


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


# -------------------------------------------------------------- ownership
def _legacy_kind(run_dir: Path) -> str | None:
    """The kind of a run directory written before markers existed, recognised by its files (None: not one)."""
    if (run_dir / CATALOG).exists():
        return "run" if (run_dir / RESULT).exists() or (run_dir / LOOP_DIR).is_dir() else "simulate"
    if (run_dir / FIT).exists() and (run_dir / SURROGATE_DIR / "model.json").exists():
        return "fit"
    if (run_dir / "posterior.nc").exists() and (run_dir / "summary.json").exists():
        return "infer"
    if (run_dir / "bench.json").exists() or (run_dir / "bench_meta.json").exists():
        return "bench"
    return None


def read_marker(run_dir: str | os.PathLike[str]) -> str | None:
    """The kind recorded in ``RUN_DIR/.rarefy.run.json`` (``simulate``, ``fit``, ...), None without one."""
    path = Path(run_dir) / MARKER
    try:
        return str(json.loads(path.read_text())["kind"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _own_files(run_dir: Path) -> list[str]:
    """The entries of ``run_dir`` other than rarefy's lock, holder and marker files, sorted."""
    return sorted(e.name for e in run_dir.iterdir() if not e.name.startswith(_OWN_PREFIX))


def check_out_dir(run_dir: str | os.PathLike[str], kind: str) -> None:
    """Refuse an output directory that job ``kind`` must not write into; creates nothing.

    Accepted: a missing or empty directory (rarefy's own lock and marker files aside), or
    a run directory of ``kind`` or of a kind that shares directories with it (``simulate``
    and ``run``). Refused with :class:`InputError`: a file, a directory with other files
    and no marker (e.g. a project folder with the user's own ``config.yaml``), a run
    directory of another kind.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown run-directory kind {kind!r}; one of {KINDS}")
    path = Path(run_dir)
    if not path.exists():
        return
    if not path.is_dir():
        raise InputError("the output is a file, not a run directory; give a new or empty directory", file=path)
    others = _own_files(path)
    if not others:
        return
    have = read_marker(path) or _legacy_kind(path)
    if have is None:
        listed = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise InputError(f"not a rarefy run directory (no {MARKER}) and not empty ({listed}): rarefy {kind} would "
                         "overwrite files there; give a new or empty directory", file=path)
    if have not in _SHARED.get(kind, (kind,)):
        raise InputError(f"a run directory of 'rarefy {have}', not of 'rarefy {kind}'; give a new or empty "
                         "directory", file=path)


def _write_marker(run_dir: Path, kind: str) -> None:
    """Record ``kind`` in ``RUN_DIR/.rarefy.run.json`` (after :func:`check_out_dir` accepted the directory).

    A marker of a kind that shares the directory is kept; a directory written before
    markers existed is marked with the kind its files show.
    """
    have = read_marker(run_dir)
    if have is not None and have in _SHARED.get(kind, (kind,)):
        return
    legacy = _legacy_kind(run_dir) if have is None else None
    write_json(run_dir / MARKER, {"kind": legacy or kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


# ------------------------------------------------------------------- lock
@dataclass
class _Held:
    thread: int
    job: str
    depth: int = 1


_HELD: dict[str, _Held] = {}       # run directories this process holds, by real path
_HELD_GUARD = threading.Lock()


def read_holder(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who holds (or last held, if it was killed) the lock of ``run_dir``: ``RUN_DIR/.rarefy.holder.json``."""
    try:
        data = json.loads((Path(run_dir) / HOLDER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(holder: dict[str, Any]) -> bool:
    """False only for a holder on this host whose process is gone."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return True
    return True


def _busy(run_dir: Path) -> InputError:
    """The one-line error for a run directory whose lock another process holds."""
    holder = read_holder(run_dir)
    for _ in range(20):  # the new holder may not have replaced a killed one's file yet
        if holder is None or _alive(holder):
            break
        time.sleep(0.05)
        holder = read_holder(run_dir)
    if holder is None:
        return InputError(f"run directory {run_dir} is in use by another rarefy process")
    started = float(holder.get("started", 0.0))
    fmt = "%H:%M:%S" if time.localtime(started)[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M:%S"
    return InputError(f"run directory {run_dir} is in use by {holder.get('job', 'rarefy')}, pid {holder.get('pid')} "
                      f"on host {holder.get('host')} since {time.strftime(fmt, time.localtime(started))}")


def _is_run_dir(run_dir: Path) -> bool:
    return run_dir.is_dir() and any((run_dir / name).exists() for name in (CONFIG, MARKER, CATALOG))


@contextlib.contextmanager
def run_dir_lock(run_dir: str | os.PathLike[str], job: str, *, kind: str | None = None) -> Iterator[Path]:
    """Hold the lock of ``run_dir`` for ``job`` (e.g. ``"rarefy simulate"``) while the block runs.

    Another process holding it raises :class:`InputError` at once, naming the holder. The
    lock is released on exit, exception included (and by the kernel when the process
    dies). Within one thread the lock is re-entrant: a nested call on the same directory
    does nothing; another thread of this process is refused like another process.

    With ``kind`` (the jobs that create a run directory) the directory is created if
    needed, checked with :func:`check_out_dir` under the lock and marked as ``kind``; when
    the job fails before writing anything into a directory it created, the directory is
    removed again.
    Without it (jobs working in an existing run directory) a folder that is no run
    directory gets no lock file: the job refuses it itself. Yields the absolute path.
    """
    path = Path(run_dir).absolute()
    if kind is None and not _is_run_dir(path):
        yield path
        return
    created = False
    if kind is not None:
        check_out_dir(path, kind)
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(path)
    me = threading.get_ident()
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None:
            if held.thread != me:
                raise InputError(f"run directory {path} is in use by {held.job} in another thread of this process")
            held.depth += 1
    if held is not None:  # nested in a job that holds the lock already
        try:
            yield path
        finally:
            with _HELD_GUARD:
                held.depth -= 1
        return
    lock = FileLock(str(path / LOCK), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise _busy(path) from None
    failed = True
    try:
        with _HELD_GUARD:
            _HELD[key] = _Held(me, job)
        write_json(path / HOLDER, {"job": job, "pid": os.getpid(), "host": socket.gethostname(),
                                   "command": " ".join(sys.argv), "started": time.time(),
                                   "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        if kind is not None:
            check_out_dir(path, kind)  # again: another process may have filled it before we got the lock
            _write_marker(path, kind)
        yield path
        failed = False
    finally:
        with _HELD_GUARD:
            _HELD.pop(key, None)
        try:
            (path / HOLDER).unlink(missing_ok=True)
            if failed and created and not _own_files(path):  # a failed job leaves no new empty directory
                (path / MARKER).unlink(missing_ok=True)
                (path / LOCK).unlink(missing_ok=True)  # still held: a process waiting on it retries (filelock)
        finally:
            lock.release()
        if failed and created:
            with contextlib.suppress(OSError):  # not empty: another job came in meanwhile
                path.rmdir()
