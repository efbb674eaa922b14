"""Running a campaign: execute run requests on an executor, record them, resume after a kill.

:func:`run_campaign` runs the requests a run directory does not have yet (the plan comes
from :func:`rarefy.campaign.plan.plan_requests`; the job ``rarefy simulate`` is
:func:`rarefy.jobs.simulate.simulate`):

* **Execute.** Runs go to the executor of ``campaign.executor``
  (:func:`rarefy.campaign.executors.open_executor`: a dask ``LocalCluster``, SLURM, or
  in-process). A worker builds the simulator once from its :class:`SimulatorSpec`, runs
  it, writes the run's Parquet shard atomically and reports counts and timings.
* **Record.** The driver (the only catalog writer) marks a run ``done`` as soon as its
  result arrives. A failed attempt (exception, timeout, unreadable or empty output, lost
  worker) is retried up to ``max_retries`` times with the same seed, then the run is
  marked ``failed`` with its error text and the campaign goes on. ``rates.parquet`` is rewritten as runs finish
  (at most every few seconds) and at the end, through its one writer
  (:func:`rarefy.data.rundir.write_rates`, which keeps rows and columns other jobs added).
* **Resume.** Re-running on the same run directory checks that the plan matches the
  catalog, requeues runs a killed campaign left ``running``, and runs only those not
  ``done`` (``failed`` ones too with ``retry_failed``).

**Timeouts.** ``campaign.timeout_s`` limits each run's wall time; an external command's
own ``timeout_s`` (where the simulator section sets one) limits it too, and whichever
fires first ends the run as failed. An external command is killed with its whole process
group before the attempt is reported, so no command outlives its run. A Python simulator
runs in a helper thread that cannot be killed: the run is recorded as failed at once and,
when the worker is a separate process (the default), the driver restarts that worker so
the hung call is ended; with threads-only executors (``processes: false``, ``sync``) the
hung call keeps its thread until it returns on its own.

**Empty runs.** A run that returns no events (a command whose output file is empty or
has only a header, a Python simulator returning no rows) is a failed attempt, retried
like any other; it never becomes a ``done`` run with ``n = 0``.

**What is guaranteed.**

* Each run is ``done`` at most once, with exactly one shard (``events/RUN_ID.parquet``,
  renamed into place before the catalog says ``done``), and ``rates.parquet`` has one
  row per ``done`` run. A re-executed attempt uses the run's seed, so it writes the same
  events.
* No run is lost: a worker that dies mid-run (killed, out of memory) has its run
  rescheduled by dask or retried by the driver; a driver killed at any moment (even
  ``kill -9``) leaves ``running`` rows that the next call runs again, and ``done`` runs
  are never run again. The partial shard files a killed write leaves in ``events/`` are
  removed when the campaign resumes.
* External commands end with their run: on timeout (either timer), when a dask worker
  closes or is restarted (its :class:`rarefy.campaign.workers.CommandReaper` kills the
  commands it still runs), and on Ctrl-C of the driver. Only a ``kill -9`` of the process
  that started a command (the driver with ``sync``, else a worker) can leave it running.

The engine takes only its own sections: :class:`rarefy.config.CampaignConfig` and the
simulator (an object, or a :class:`SimulatorSpec` each worker builds it from).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import CampaignConfig, SimulatorConfig
from ..data.events import EventTable
from ..data.rates import RateTable
from ..data.store import EventStore, RunRequest
from ..simulators import from_config as simulator_from_config
from ..simulators.base import as_event_table
from ..simulators.command import CommandSimulator, SimulatorTimeout
from ..space import DesignSpace
from .executors import as_completed_for, open_executor, restart_hung_worker

__all__ = ["CampaignResult", "RunOutcome", "SimulatorSpec", "run_campaign", "execute_request", "build_simulator"]

log = logging.getLogger(__name__)

RATES_EVERY_S = 5.0  # rewrite rates.parquet at most this often while a campaign runs
CANCEL_WAIT_S = 30.0  # how long a timed-out command call may take to end once its process group is killed


@dataclass(frozen=True)
class SimulatorSpec:
    """What a worker needs to build the simulator itself: its config section and where to work.

    ``config_dir`` resolves the simulator's relative paths, ``scratch_dir`` holds an
    external command's working folders, ``timeout_s`` is the default limit of one
    command request (seconds). Picklable, so it travels to dask workers instead of the
    simulator object.
    """

    simulator: SimulatorConfig
    config_dir: str
    scratch_dir: str
    timeout_s: float | None = None

    def build(self) -> Any:
        """A new simulator of this spec."""
        return simulator_from_config(self.simulator, config_dir=self.config_dir, scratch_dir=self.scratch_dir,
                                     timeout_s=self.timeout_s)


@dataclass
class RunOutcome:
    """What a worker reports about one attempt of one run."""

    run_id: str
    ok: bool
    n: int = 0
    k: int = 0
    wall_s: float = float("nan")
    cpu_s: float = float("nan")
    sim_s: float = float("nan")
    error: str = ""
    stderr: str = ""
    worker: str = ""
    hung: bool = False


_SIM_CACHE: dict[str, Any] = {}
_SIM_LOCK = threading.Lock()


def build_simulator(spec: Any) -> Any:
    """The simulator ``spec`` describes, built once per process; a simulator object is returned as it is."""
    if not isinstance(spec, SimulatorSpec):
        return spec
    key = repr(spec)
    with _SIM_LOCK:
        sim = _SIM_CACHE.get(key)
        if sim is None:
            sim = _SIM_CACHE[key] = spec.build()
    return sim


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # not on a dask worker
        return f"pid:{os.getpid()}"


def _call(sim: Any, req: RunRequest, cancel: threading.Event) -> tuple[Any, float, str]:
    """Run the simulator in this thread: (result, CPU seconds, stderr)."""
    if hasattr(sim, "simulate_detailed"):
        stop = {"cancel": cancel} if isinstance(sim, CommandSimulator) else {}
        result, info = sim.simulate_detailed(dict(req.theta), req.n, req.fidelity, req.seed, run_id=req.run_id,
                                             **stop)
        return result, float(info.get("cpu_s", float("nan"))), str(info.get("stderr", ""))
    t0 = time.thread_time()
    result = sim.simulate(dict(req.theta), req.n, req.fidelity, req.seed)
    return result, time.thread_time() - t0, ""


def execute_request(spec: Any, req: RunRequest, run_dir: str, timeout_s: float | None = None) -> RunOutcome:
    """Run one request on this worker: simulate, check, write the shard. Never raises (but on Ctrl-C).

    ``spec`` is a simulator or a :class:`SimulatorSpec` (see :func:`build_simulator`).
    A run that returns no events fails; one past ``timeout_s`` seconds fails, and an
    external command is killed with its process group before this returns.
    """
    start = time.perf_counter()
    worker = _worker_name()
    try:
        sim = build_simulator(spec)
        box: dict[str, Any] = {}
        cancel, finished = threading.Event(), threading.Event()

        def target() -> None:
            try:
                box["value"] = _call(sim, req, cancel)
            except BaseException as exc:  # reported to the driver as the run's error
                box["error"] = exc
                box["tb"] = traceback.format_exc(limit=8)
            finally:
                finished.set()  # (not Thread.join: an interrupted join may report a running thread as ended)

        t_sim = time.perf_counter()
        if timeout_s is None:
            target()
        else:
            threading.Thread(target=target, name=f"rarefy-{req.run_id}", daemon=True).start()
            try:
                finished.wait(timeout_s)
            finally:  # timed out, or Ctrl-C while the driver runs the simulator itself
                if not finished.is_set():
                    cancel.set()  # an external command is killed at once; a Python call cannot be stopped
                    if isinstance(sim, CommandSimulator):
                        finished.wait(CANCEL_WAIT_S)
            if not finished.is_set():
                return RunOutcome(req.run_id, False, wall_s=time.perf_counter() - start,
                                  error=f"timed out after {timeout_s:g} s (simulator still running)",
                                  worker=worker, hung=True)
        sim_s = time.perf_counter() - t_sim
        if "error" in box:
            exc = box["error"]
            if isinstance(exc, KeyboardInterrupt):
                raise exc
            if isinstance(exc, SimulatorTimeout):
                error = f"timed out after {timeout_s:g} s: {exc}" if cancel.is_set() else str(exc)
                return RunOutcome(req.run_id, False, wall_s=time.perf_counter() - start, sim_s=sim_s,
                                  error=error, worker=worker)
            return RunOutcome(req.run_id, False, wall_s=time.perf_counter() - start, sim_s=sim_s,
                              error=f"{type(exc).__name__}: {exc}", stderr=box.get("tb", ""), worker=worker)
        result, cpu_s, stderr = box["value"]
        events = as_event_table(result, req.theta, fidelity=req.fidelity, run_id=req.run_id,
                                source=f"output of run {req.run_id}") if not isinstance(result, EventTable) \
            else result.with_run(fidelity=req.fidelity, run_id=req.run_id, theta=req.theta)
        if events.n == 0:
            return RunOutcome(req.run_id, False, wall_s=time.perf_counter() - start, cpu_s=cpu_s, sim_s=sim_s,
                              error=f"simulator returned no events (asked for {req.n})", stderr=stderr,
                              worker=worker)
        if events.n != req.n:
            log.warning("run %s: asked for %d events, simulator returned %d", req.run_id, req.n, events.n)
        EventStore.write_shard(run_dir, req.run_id, events)
        return RunOutcome(req.run_id, True, n=events.n, k=events.k, wall_s=time.perf_counter() - start,
                          cpu_s=cpu_s, sim_s=sim_s, stderr=stderr, worker=worker)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a failed run, never a crash
        return RunOutcome(req.run_id, False, wall_s=time.perf_counter() - start,
                          error=f"{type(exc).__name__}: {exc}", stderr=traceback.format_exc(limit=8), worker=worker)


@dataclass
class CampaignResult:
    """Summary of a campaign call: where things are and how it went.

    ``wall_s`` is the whole call (cluster start-up included), ``span_s`` the time from
    the first submission to the last result, ``sim_s`` the summed wall time spent inside
    the simulator by the runs that succeeded (seconds).
    """

    run_dir: Path
    rates_path: Path
    n_runs: int
    n_done: int
    n_failed: int
    n_executed: int
    wall_s: float
    sim_s: float = 0.0
    workers: int = 1
    span_s: float = 0.0
    outcomes: list[RunOutcome] = field(default_factory=list, repr=False)
    space: DesignSpace | None = field(default=None, repr=False)

    def summary(self) -> str:
        """One line: runs done / failed / executed now, seconds, where the rates are."""
        return (f"{self.n_done} runs done, {self.n_failed} failed of {self.n_runs} ({self.n_executed} executed now) "
                f"in {self.wall_s:.1f} s -> {self.rates_path}")

    @property
    def rates(self) -> RateTable:
        """The campaign's ``rates.parquet`` as a :class:`RateTable`."""
        if self.space is None:
            raise ValueError("the result carries no design space")
        return RateTable.read_parquet(self.rates_path, self.space)


def _progress(enabled: bool) -> Any:
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("[green]{task.fields[done]} done[/] [red]{task.fields[failed]} failed[/]"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=False)


def run_campaign(
    requests: Sequence[RunRequest],
    simulator: Any,
    run_dir: str | os.PathLike[str],
    space: DesignSpace,
    *,
    campaign: CampaignConfig | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> CampaignResult:
    """Run the requests not yet done in ``run_dir`` and write ``rates.parquet``.

    ``simulator`` is a simulator object or a :class:`SimulatorSpec` that each worker builds
    once. ``campaign`` gives the executor, retries and per-run timeout (default: a local
    cluster, 2 retries, no timeout).
    """
    campaign = campaign or CampaignConfig(runs=[])
    run_dir = Path(run_dir).absolute()
    t_start = time.perf_counter()
    store = EventStore(run_dir)
    try:
        store.add_requests(requests)
        if store.remove_partial_shards():
            log.info("removed the partial event shards of runs a killed campaign left unfinished")
        requeued = store.requeue(("running", "failed") if retry_failed else ("running",))
        if requeued:
            log.info("resuming: %d unfinished runs go back to the queue", requeued)
        wanted = {r.run_id for r in requests}
        todo = [r for r in store.requests(states=("queued",)) if r.run_id in wanted]
        counts = store.counts()
        log.info("%d runs planned: %d done, %d failed, %d to run", len(requests), counts["done"], counts["failed"],
                 len(todo))
        outcomes: list[RunOutcome] = []
        workers = 1
        span = 0.0
        if todo:
            with open_executor(campaign.executor) as (client, processes):
                if hasattr(client, "nthreads"):
                    workers = max(1, len(client.nthreads()))
                t_submit = time.perf_counter()
                outcomes = _drive(client, processes, todo, simulator, store, space, campaign, progress, len(requests))
                span = time.perf_counter() - t_submit
        rates_path = store.write_rates(space)
        counts = store.counts()
    finally:
        store.close()
    wall = time.perf_counter() - t_start
    sim_s = float(np.nansum([o.sim_s for o in outcomes if o.ok])) if outcomes else 0.0
    result = CampaignResult(run_dir, rates_path, len(requests), counts["done"], counts["failed"], len(outcomes), wall,
                            sim_s, workers, span, outcomes, space)
    log.info("campaign finished: %d done, %d failed of %d runs in %.1f s", result.n_done, result.n_failed,
             result.n_runs, wall)
    return result


def _drive(client: Any, processes: bool, todo: list[RunRequest], simulator: Any, store: EventStore,
           space: DesignSpace, campaign: CampaignConfig, show: bool, n_total: int) -> list[RunOutcome]:
    """Submit, collect, retry and record; returns the outcomes of the final attempts."""
    as_completed_factory = as_completed_for(client)
    spec = simulator if isinstance(simulator, SimulatorSpec) or not hasattr(client, "scatter") \
        else client.scatter(simulator, broadcast=True)
    by_id = {r.run_id: r for r in todo}
    attempts = {r.run_id: 0 for r in todo}
    run_dir = str(store.run_dir)
    timeout = campaign.timeout_s

    def submit(req: RunRequest) -> Any:
        attempts[req.run_id] += 1
        return client.submit(execute_request, spec, req, run_dir, timeout, pure=False,
                             key=f"rarefy-{req.run_id}-a{attempts[req.run_id]}-{os.getpid()}-{time.time_ns()}")

    store.mark_running([r.run_id for r in todo])
    futures = [submit(r) for r in todo]
    finals: list[RunOutcome] = []
    counts = store.counts()
    done0, failed0 = counts["done"], counts["failed"]
    last_rates = time.monotonic()
    with _progress(show) as bar:
        task = None
        if bar is not None:
            task = bar.add_task("runs", total=n_total, completed=done0 + failed0, done=done0, failed=failed0)
        ac = as_completed_factory(futures)
        del futures  # only as_completed holds pending futures; collected ones are released below
        n_done, n_failed = done0, failed0
        for fut in ac:
            try:
                out: RunOutcome = fut.result()
            except Exception as exc:  # the worker died (e.g. killed, out of memory)
                key = getattr(fut, "key", "")
                run_id = next((rid for rid in by_id if f"rarefy-{rid}-" in str(key)), None)
                if run_id is None:
                    log.error("a task failed outside any run: %s", exc)
                    continue
                out = RunOutcome(run_id, False, error=f"worker lost: {type(exc).__name__}: {exc}")
            if hasattr(fut, "release"):
                fut.release()  # a finished run's result must not be recomputed if its worker restarts
            req = by_id[out.run_id]
            if out.ok:
                store.mark_done(req.run_id, n=out.n, k=out.k, wall_s=out.wall_s, cpu_s=out.cpu_s,
                                attempts=attempts[req.run_id], stderr=out.stderr, worker=out.worker)
                finals.append(out)
                n_done += 1
            else:
                log.warning("run %s attempt %d failed: %s", req.run_id, attempts[req.run_id], out.error)
                if out.hung:
                    restart_hung_worker(client, processes, out.worker, out.run_id)
                if attempts[req.run_id] <= campaign.max_retries:
                    store.mark_attempt_failed(req.run_id, attempts[req.run_id], out.error)
                    ac.add(submit(req))
                    continue
                store.mark_failed(req.run_id, error=out.error, attempts=attempts[req.run_id], wall_s=out.wall_s,
                                  cpu_s=out.cpu_s, stderr=out.stderr, worker=out.worker)
                finals.append(out)
                n_failed += 1
            if bar is not None:
                bar.update(task, completed=n_done + n_failed, done=n_done, failed=n_failed)
            if time.monotonic() - last_rates > RATES_EVERY_S:
                store.write_rates(space)
                last_rates = time.monotonic()
    return finals
