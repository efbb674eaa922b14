"""Where campaign runs execute: in-process (``sync``), a dask ``LocalCluster`` or SLURM via dask-jobqueue.

:func:`open_executor` yields a client with dask's ``submit`` and an ``as_completed``
factory; :class:`SyncClient` is the in-process stand-in that runs each task when it
is collected (no dask needed). Dask workers get the
:class:`rarefy.campaign.workers.CommandReaper` plugin: a worker that closes kills the
simulator commands it still runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from typing import Any, Callable, Iterator, Sequence

from ..config import ExecutorConfig, SlurmExecutorConfig
from ..optional import require

__all__ = ["SyncClient", "open_executor", "as_completed_for", "restart_hung_worker", "slurm_cluster"]

log = logging.getLogger(__name__)


class SyncFuture:
    """The finished result of an in-process task."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self) -> Any:
        """The task's return value."""
        return self._value


class SyncAsCompleted:
    """In-process ``as_completed``: runs the queued tasks one after the other; more can be added."""

    def __init__(self, tasks: Sequence[Any]) -> None:
        self.queue = deque(tasks)

    def add(self, task: Any) -> None:
        """Queue one more task (a retry)."""
        self.queue.append(task)

    def __iter__(self) -> Iterator[SyncFuture]:
        while self.queue:
            fn, args = self.queue.popleft()
            yield SyncFuture(fn(*args))


class SyncClient:
    """In-process stand-in for a dask client: runs each task when it is collected."""

    def submit(self, fn: Callable[..., Any], *args: Any, **_: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """Record the task; it runs when :class:`SyncAsCompleted` yields it."""
        return fn, args

    def as_completed(self, tasks: Sequence[Any]) -> SyncAsCompleted:
        """The tasks, run in submission order."""
        return SyncAsCompleted(tasks)


def as_completed_for(client: Any) -> Callable[[Sequence[Any]], Any]:
    """The ``as_completed`` that fits ``client`` (dask's for a dask client)."""
    if isinstance(client, SyncClient):
        return client.as_completed
    from distributed import as_completed

    return as_completed


@contextlib.contextmanager
def open_executor(cfg: ExecutorConfig) -> Iterator[tuple[Any, bool]]:
    """Yield ``(client, workers_are_processes)`` for the configured executor; shut it down after."""
    if cfg.kind == "sync":
        yield SyncClient(), False
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
            _install_reaper(client)
            yield client, cfg.processes
        return
    log.info("starting a SLURMCluster: %d jobs of %d cores, %s, %s", cfg.jobs, cfg.cores, cfg.memory, cfg.walltime)
    with slurm_cluster(cfg) as cluster:
        cluster.scale(jobs=cfg.jobs)
        with Client(cluster) as client:
            _install_reaper(client)
            yield client, True


def slurm_cluster(cfg: SlurmExecutorConfig, cluster_class: Any = None) -> Any:
    """dask-jobqueue's ``SLURMCluster`` with the job settings of ``cfg``, not scaled yet (close it after use).

    Each job is one worker process of ``cores`` threads (one run per thread) with ``memory``
    and ``walltime``, in partition ``queue`` under ``account`` (unset ones are left to
    dask-jobqueue's configuration), with the extra ``#SBATCH`` lines of
    ``job_extra_directives``. ``cluster_class`` replaces ``SLURMCluster`` by another
    dask-jobqueue ``JobQueueCluster`` taking these settings (``dask_jobqueue.local.LocalCluster``
    runs the same worker command as local processes).
    """
    cls = cluster_class or require("dask_jobqueue").SLURMCluster
    kwargs = dict(queue=cfg.queue, account=cfg.account, cores=cfg.cores, memory=cfg.memory, walltime=cfg.walltime,
                  processes=1, job_extra_directives=list(cfg.job_extra_directives))
    return cls(**{key: value for key, value in kwargs.items() if value is not None})


def _install_reaper(client: Any) -> None:
    """Have every worker (also those that join later) kill its running simulator commands when it closes."""
    from .workers import CommandReaper

    client.register_plugin(CommandReaper())


def restart_hung_worker(client: Any, processes: bool, worker: str, run_id: str) -> None:
    """Restart the dask worker process ``worker`` to end a simulator call that timed out in it.

    Threads cannot be killed: with thread workers (or in-process) the call keeps running.
    The closing worker kills the external commands it still runs
    (:class:`rarefy.campaign.workers.CommandReaper`).
    """
    if not processes or not worker or worker.startswith("pid:"):
        log.warning("run %s: the timed-out simulator call keeps running in its thread on %s (threads cannot be "
                    "killed; use process workers to have it ended)", run_id, worker or "this process")
        return
    try:
        client.restart_workers([worker], timeout=60, raise_for_error=False)
        log.info("restarted worker %s to end the hung call of run %s", worker, run_id)
    except Exception as exc:  # a failed restart must not stop the campaign
        log.warning("could not restart worker %s: %s", worker, exc)
