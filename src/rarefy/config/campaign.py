"""Campaign section: blocks of run requests, retries, timeouts and the executor."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator

from .base import MAX_EVENTS, MAX_PARALLEL, MAX_RUNS, ConfigModel

__all__ = ["CampaignRunsConfig", "LocalExecutorConfig", "SlurmExecutorConfig", "SyncExecutorConfig", "ExecutorConfig",
           "CampaignConfig"]


class CampaignRunsConfig(ConfigModel):
    """One block of run requests: ``runs`` runs of ``events`` events each at one fidelity.

    ``designs`` is a sampling method (``sobol``, ``lhs``, ``random``) over the config's
    design space, or the fidelity name of an earlier block whose first ``runs`` designs
    are repeated (nested designs, as multi-fidelity surrogates like them).
    """

    fidelity: str
    """fidelity of the block's runs"""
    runs: int = Field(ge=0, le=MAX_RUNS)
    """number of runs of the block"""
    events: int | None = Field(default=None, ge=1, le=MAX_EVENTS)
    """events per run (default: the fidelity's ``events`` or the simulator's default)"""
    designs: str = "sobol"
    """``sobol``, ``lhs`` or ``random`` sampling of the design space, or the fidelity name of an earlier block
    whose first ``runs`` designs are repeated"""


class LocalExecutorConfig(ConfigModel):
    """``kind: local``: a dask ``LocalCluster`` of ``workers`` (default one per core) of ``threads_per_worker``,
    worker processes (or threads with ``processes: false``) with an optional ``memory_limit`` each."""

    kind: Literal["local"] = "local"
    """``local``: a dask ``LocalCluster`` on this machine"""
    workers: int | None = Field(default=None, ge=1, le=MAX_PARALLEL)
    """number of workers (default: one per core)"""
    threads_per_worker: int = Field(default=1, ge=1, le=MAX_PARALLEL)
    """threads of each worker"""
    processes: bool = True
    """workers are processes (false: threads)"""
    memory_limit: str | None = None
    """memory limit of each worker, dask syntax (e.g. ``4GB``; default: none)"""


class SlurmExecutorConfig(ConfigModel):
    """``kind: slurm``: dask-jobqueue's ``SLURMCluster``; per job ``queue``, ``account``, ``cores``, ``memory``,
    ``walltime`` (HH:MM:SS) and ``job_extra_directives``; scaled to ``jobs`` jobs."""

    kind: Literal["slurm"] = "slurm"
    """``slurm``: dask-jobqueue's ``SLURMCluster``"""
    queue: str | None = None
    """SLURM partition of each job"""
    account: str | None = None
    """SLURM account charged for each job"""
    cores: int = Field(default=1, ge=1, le=MAX_PARALLEL)
    """cores of each job"""
    memory: str = "4GB"
    """memory of each job, dask syntax (e.g. ``4GB``)"""
    walltime: str = "01:00:00"
    """wall-clock limit of each job, HH:MM:SS"""
    jobs: int = Field(default=1, ge=1, le=MAX_PARALLEL)
    """number of SLURM jobs the cluster is scaled to"""
    job_extra_directives: list[str] = Field(default_factory=list)
    """extra ``#SBATCH`` directives of each job (e.g. ``--gres=gpu:1``)"""


class SyncExecutorConfig(ConfigModel):
    """``kind: sync``: in-process, one run after the other (no dask: fast simulators, tests, loops of few runs)."""

    kind: Literal["sync"] = "sync"
    """``sync``: in-process, one run after the other (no dask)"""


#: Where runs execute, chosen by ``kind``: ``local`` (default), ``slurm`` or ``sync``; each kind takes only its
#: own settings. A plain string is shorthand for the kind (``executor: slurm``).
ExecutorConfig = Annotated[Union[LocalExecutorConfig, SlurmExecutorConfig, SyncExecutorConfig],
                           Field(discriminator="kind")]


class CampaignConfig(ConfigModel):
    """A simulation campaign: blocks of run requests, retries, per-run timeout, executor."""

    runs: list[CampaignRunsConfig]
    """the blocks of run requests"""
    max_retries: int = Field(default=2, ge=0, le=MAX_PARALLEL)
    """retries of a failed attempt (exception, timeout, unreadable or empty output, lost worker), with the same
    seed; then the run is marked failed"""
    timeout_s: float | None = Field(default=None, gt=0)
    """wall-clock limit of one run, seconds"""
    executor: ExecutorConfig = Field(default_factory=LocalExecutorConfig)
    """where runs execute: ``local`` (default), ``slurm`` or ``sync``; a plain string is shorthand for the kind"""

    @field_validator("executor", mode="before")
    @classmethod
    def _executor_kind(cls, v: Any) -> Any:
        if isinstance(v, str):  # shorthand: the kind alone
            return {"kind": v}
        if isinstance(v, dict) and "kind" not in v:
            return {**v, "kind": "local"}
        return v
