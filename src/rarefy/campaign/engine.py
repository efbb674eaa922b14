"""Simulation campaigns: plan run requests, run them on Dask, record them, resume after a kill.

:func:`simulate` (CLI: ``rarefy simulate CONFIG --out RUN_DIR``) reads a config's
``simulator`` and ``campaign`` sections, plans the run requests, and runs the ones the
run directory does not have yet:

* **Plan.** Each ``campaign.runs`` block asks for ``runs`` runs of ``events`` events at
  one fidelity. Designs come from the config's design space (scrambled Sobol by default,
  seeded by the config's ``seed`` and the block's position) or repeat an earlier block's
  designs. Run ``i`` is called ``run-{i:05d}`` and its seed is drawn from
  ``numpy.random.SeedSequence(seed, spawn_key=(i,))``, so a run's seed depends only on
  the campaign seed and its position: a resumed campaign reproduces an uninterrupted one.
* **Execute.** Runs go to a dask ``LocalCluster`` (default: one single-threaded worker
  process per core), to SLURM through ``dask_jobqueue.SLURMCluster`` (``executor:
  slurm``), or run in-process one after the other (``executor: sync``). A worker runs the
  simulator, writes the run's Parquet shard atomically and reports counts and timings.
* **Record.** The driver (the only catalog writer) marks a run ``done`` as soon as its
  result arrives. A failed attempt (exception, timeout, unreadable output) is retried up
  to ``max_retries`` times with the same seed, then the run is marked ``failed`` with its
  error text and the campaign goes on. ``rates.parquet`` is rewritten as runs finish
  (at most every few seconds) and at the end.
* **Resume.** Re-running on the same run directory checks that the plan matches the
  catalog, requeues runs a killed campaign left ``running``, and runs only those not
  ``done`` (``failed`` ones too with ``retry_failed``).

**Timeouts.** ``campaign.timeout_s`` limits each run's wall time. An external command is
killed with its process group. A Python simulator runs in a helper thread that cannot be
killed: the run is recorded as failed at once and, when the worker is a separate
process (the default), the driver restarts that worker so the hung call is ended;
with threads-only executors (``processes: false``, ``sync``) the hung call keeps its
thread until it returns on its own.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..io import atomic_path
from ..config import CampaignConfig, ExecutorConfig, RunConfig, dump_config, load_config
from ..data.events import EventTable
from ..data.rates import RateTable
from ..data.store import EventStore, RunRequest
from ..errors import InputError
from ..simulators import from_config as simulator_from_config
from ..simulators.base import as_event_table
from ..simulators.command import SimulatorTimeout
from ..space import DesignSpace

__all__ = ["CampaignResult", "RunOutcome", "plan_requests", "run_campaign", "simulate", "run_seed", "execute_request"]

log = logging.getLogger(__name__)

RATES_EVERY_S = 5.0  # rewrite rates.parquet at most this often while a campaign runs


# ----------------------------------------------------------------- planning
def run_seed(seed: int, index: int) -> int:
    """Seed of run ``index`` of a campaign with seed ``seed`` (63-bit, SeedSequence-derived)."""
    state = np.random.SeedSequence(int(seed), spawn_key=(int(index),)).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def _fidelity_info(cfg: RunConfig, simulator: Any, name: str) -> tuple[float, int | None]:
    """(nominal cost per event in CPU-h or NaN, default events per run or None) of a fidelity."""
    fcfg = cfg.fidelity(name)
    sim_fid = None
    fids = getattr(simulator, "fidelities", None)
    if fids is not None:
        with contextlib.suppress(Exception):
            sim_fid = fids[name]
    cost = fcfg.cost_cpu_h_per_event
    if cost is None and sim_fid is not None:
        cost = sim_fid.cost_cpu_h_per_event
    events = fcfg.events if fcfg.events is not None else (sim_fid.events_per_run if sim_fid is not None else None)
    return (float("nan") if cost is None else float(cost)), events


def plan_requests(cfg: RunConfig, simulator: Any = None, space: DesignSpace | None = None) -> list[RunRequest]:
    """The run requests of a config's campaign, in order (deterministic for the config's seed)."""
    if cfg.campaign is None:
        raise InputError("the config has no 'campaign' section")
    space = space or cfg.space.build()
    check = getattr(simulator, "check_space", None)
    if callable(check):  # a simulator with physical limits refuses a space that leaves them, before any run
        check(space)
    requests: list[RunRequest] = []
    designs_by_fid: dict[str, list[dict[str, float]]] = {}
    for b, block in enumerate(cfg.campaign.runs):
        cost_per_event, default_events = _fidelity_info(cfg, simulator, block.fidelity)
        n = block.events or default_events
        if n is None:
            raise InputError(f"campaign.runs.{b}: give 'events' (fidelity {block.fidelity!r} has no default)")
        if block.designs in ("sobol", "lhs", "random"):
            seed = run_seed(cfg.seed, 1_000_000 + b)
            frame = space.sample(block.runs, method=block.designs, seed=seed % (2**32))
            designs = [{k: float(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
        elif block.designs in designs_by_fid:
            pool = designs_by_fid[block.designs]
            if block.runs > len(pool):
                raise InputError(f"campaign.runs.{b}: {block.runs} runs asked to repeat the designs of "
                                 f"{block.designs!r}, which has only {len(pool)}")
            designs = pool[: block.runs]
        else:
            raise InputError(f"campaign.runs.{b}: 'designs' must be sobol, lhs, random or the fidelity of an "
                             f"earlier block, got {block.designs!r}")
        designs_by_fid.setdefault(block.fidelity, []).extend(designs)
        for theta in designs:
            i = len(requests)
            cost = n * cost_per_event
            requests.append(RunRequest(f"run-{i:05d}", i, block.fidelity, theta, int(n), run_seed(cfg.seed, i), cost))
    sim_space = getattr(simulator, "space", None)
    if isinstance(sim_space, DesignSpace) and requests:
        designs = np.array([[r.theta.get(name, np.nan) for name in sim_space.names] for r in requests])
        bad = ~sim_space.is_feasible(designs)
        if bad.any():
            r = requests[int(np.argmax(bad))]
            raise InputError(f"design {r.theta} of {r.run_id} is not feasible for the simulator's design space "
                             f"(its bounds/constraints: {sim_space.constraints})")
    return requests


# ---------------------------------------------------------------- execution
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


def _get_simulator(spec: Any) -> Any:
    """Build (once per process) the simulator described by ``spec``: a dict or a simulator object."""
    if not isinstance(spec, Mapping):
        return spec
    key = repr(sorted(spec.items(), key=lambda kv: kv[0]))
    with _SIM_LOCK:
        sim = _SIM_CACHE.get(key)
        if sim is None:
            from ..config import SimulatorConfig

            sim = simulator_from_config(SimulatorConfig.model_validate(spec["simulator"]),
                                        config_dir=spec["config_dir"], scratch_dir=spec["scratch_dir"],
                                        timeout_s=spec["timeout_s"])
            _SIM_CACHE[key] = sim
    return sim


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # not on a dask worker
        return f"pid:{os.getpid()}"


def _call(sim: Any, req: RunRequest) -> tuple[Any, float, str]:
    """Run the simulator in this thread: (result, CPU seconds, stderr)."""
    if hasattr(sim, "simulate_detailed"):
        result, info = sim.simulate_detailed(dict(req.theta), req.n, req.fidelity, req.seed, run_id=req.run_id)
        return result, float(info.get("cpu_s", float("nan"))), str(info.get("stderr", ""))
    t0 = time.thread_time()
    result = sim.simulate(dict(req.theta), req.n, req.fidelity, req.seed)
    return result, time.thread_time() - t0, ""


def execute_request(spec: Any, req: RunRequest, run_dir: str, timeout_s: float | None = None) -> RunOutcome:
    """Run one request on this worker: simulate, check, write the shard. Never raises.

    ``spec`` is a simulator or a dict describing one (see :func:`_get_simulator`).
    """
    start = time.perf_counter()
    worker = _worker_name()
    try:
        sim = _get_simulator(spec)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = _call(sim, req)
            except BaseException as exc:  # reported to the driver as the run's error
                box["error"] = exc
                box["tb"] = traceback.format_exc(limit=8)

        t_sim = time.perf_counter()
        if timeout_s is None:
            target()
        else:
            thread = threading.Thread(target=target, name=f"rarefy-{req.run_id}", daemon=True)
            thread.start()
            thread.join(timeout_s)
            if thread.is_alive():
                return RunOutcome(req.run_id, False, wall_s=time.perf_counter() - start,
                                  error=f"timed out after {timeout_s:g} s (simulator still running)",
                                  worker=worker, hung=True)
        sim_s = time.perf_counter() - t_sim
        if "error" in box:
            exc = box["error"]
            stderr = ""
            if isinstance(exc, SimulatorTimeout):
                return RunOutcome(req.run_id, False, wall_s=time.perf_counter() - start, sim_s=sim_s,
                                  error=str(exc), worker=worker)
            return RunOutcome(req.run_id, False, wall_s=time.perf_counter() - start, sim_s=sim_s,
                              error=f"{type(exc).__name__}: {exc}", stderr=stderr or box.get("tb", ""), worker=worker)
        result, cpu_s, stderr = box["value"]
        events = as_event_table(result, req.theta, fidelity=req.fidelity, run_id=req.run_id,
                                source=f"output of run {req.run_id}") if not isinstance(result, EventTable) \
            else result.with_run(fidelity=req.fidelity, run_id=req.run_id, theta=req.theta)
        if events.n != req.n:
            log.warning("run %s: asked for %d events, simulator returned %d", req.run_id, req.n, events.n)
        EventStore.write_shard(run_dir, req.run_id, events)
        return RunOutcome(req.run_id, True, n=events.n, k=events.k, wall_s=time.perf_counter() - start,
                          cpu_s=cpu_s, sim_s=sim_s, stderr=stderr, worker=worker)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a failed run, never a crash
        return RunOutcome(req.run_id, False, wall_s=time.perf_counter() - start,
                          error=f"{type(exc).__name__}: {exc}", stderr=traceback.format_exc(limit=8), worker=worker)


class _SyncFuture:
    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self) -> Any:
        return self._value


class _SyncClient:
    """In-process stand-in for a dask client: runs each task when it is collected."""

    def __init__(self) -> None:
        self.pending: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()

    def submit(self, fn: Callable[..., Any], *args: Any, **_: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return fn, args

    def as_completed(self, tasks: Sequence[Any]) -> "_SyncAsCompleted":
        return _SyncAsCompleted(tasks)


class _SyncAsCompleted:
    def __init__(self, tasks: Sequence[Any]) -> None:
        self.queue = deque(tasks)

    def add(self, task: Any) -> None:
        self.queue.append(task)

    def __iter__(self) -> Iterator[_SyncFuture]:
        while self.queue:
            fn, args = self.queue.popleft()
            yield _SyncFuture(fn(*args))


@contextlib.contextmanager
def _executor(cfg: ExecutorConfig) -> Iterator[tuple[Any, bool]]:
    """Yield (client, workers_are_processes) for the configured executor."""
    if cfg.kind == "sync":
        yield _SyncClient(), False
        return
    from distributed import Client, LocalCluster

    if cfg.kind == "local":
        workers = cfg.workers or os.cpu_count() or 1
        kwargs: dict[str, Any] = dict(n_workers=workers, threads_per_worker=cfg.threads_per_worker,
                                      processes=cfg.processes, dashboard_address=":0")
        if cfg.memory_limit is not None:
            kwargs["memory_limit"] = cfg.memory_limit
        log.info("starting a LocalCluster: %d workers x %d threads (%s)", workers, cfg.threads_per_worker,
                 "processes" if cfg.processes else "threads")
        with LocalCluster(**kwargs) as cluster, Client(cluster) as client:
            yield client, cfg.processes
        return
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise InputError("executor 'slurm' needs dask-jobqueue: pip install 'rarefy[slurm]'") from None
    kwargs = dict(queue=cfg.queue, account=cfg.account, cores=cfg.cores, memory=cfg.memory, walltime=cfg.walltime,
                  processes=1, job_extra_directives=list(cfg.job_extra_directives))
    log.info("starting a SLURMCluster: %d jobs of %d cores, %s, %s", cfg.jobs, cfg.cores, cfg.memory, cfg.walltime)
    with SLURMCluster(**kwargs) as cluster:
        cluster.scale(jobs=cfg.jobs)
        with Client(cluster) as client:
            yield client, True


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

    ``simulator`` is a simulator object or a dict spec (``{"simulator": SimulatorConfig
    dump, "config_dir", "scratch_dir", "timeout_s"}``) that each worker builds once.
    """
    campaign = campaign or CampaignConfig(runs=[])
    run_dir = Path(run_dir).absolute()
    t_start = time.perf_counter()
    store = EventStore(run_dir)
    try:
        store.add_requests(requests)
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
            with _executor(campaign.executor) as (client, processes):
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
    if isinstance(client, _SyncClient):
        as_completed_factory: Callable[[Sequence[Any]], Any] = client.as_completed
        spec = simulator
    else:
        from distributed import as_completed

        as_completed_factory = as_completed
        spec = simulator if isinstance(simulator, Mapping) else client.scatter(simulator, broadcast=True)
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
                    _restart_hung_worker(client, processes, out)
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


def _restart_hung_worker(client: Any, processes: bool, out: RunOutcome) -> None:
    if not processes or not out.worker or out.worker.startswith("pid:"):
        log.warning("run %s: the timed-out simulator call keeps running in its thread on %s (threads cannot be "
                    "killed; use process workers to have it ended)", out.run_id, out.worker or "this process")
        return
    try:
        client.restart_workers([out.worker], timeout=60, raise_for_error=False)
        log.info("restarted worker %s to end the hung call of run %s", out.worker, out.run_id)
    except Exception as exc:  # a failed restart must not stop the campaign
        log.warning("could not restart worker %s: %s", out.worker, exc)


# ------------------------------------------------------------------ facade
def simulate(config: RunConfig | str | os.PathLike[str], out: str | os.PathLike[str], *,
             retry_failed: bool = False, progress: bool = True) -> CampaignResult:
    """Run (or resume) the campaign of ``config`` in run directory ``out``; CLI: ``rarefy simulate``.

    Writes ``out/config.yaml`` (the resolved config), ``out/catalog.sqlite``,
    ``out/events/*.parquet`` and ``out/rates.parquet``. Raises :class:`InputError` for a
    bad config or a run directory that holds a different campaign.
    """
    if isinstance(config, RunConfig):
        cfg, config_dir = config, Path.cwd()
    else:
        cfg, config_dir = load_config(config), Path(config).absolute().parent
    if cfg.simulator is None or cfg.campaign is None:
        raise InputError("the config needs 'simulator' and 'campaign' sections to simulate",
                         file=None if isinstance(config, RunConfig) else config)
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    space = cfg.space.build()
    timeout = cfg.campaign.timeout_s
    spec = {"simulator": cfg.simulator.model_dump(mode="json"), "config_dir": str(config_dir),
            "scratch_dir": str(out / "scratch"), "timeout_s": timeout}
    local_sim = _get_simulator(spec)
    requests = plan_requests(cfg, local_sim, space)
    with atomic_path(out / "config.yaml") as tmp:
        dump_config(cfg, tmp)
    return run_campaign(requests, spec, out, space, campaign=cfg.campaign, retry_failed=retry_failed,
                        progress=progress)
