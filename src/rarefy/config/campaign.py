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
    runs: int = Field(ge=0, le=MAX_RUNS)
    events: int | None = Field(default=None, ge=1, le=MAX_EVENTS)
    designs: str = "sobol"


class LocalExecutorConfig(ConfigModel):
    """``kind: local``: a dask ``LocalCluster`` of ``workers`` (default one per core) of ``threads_per_worker``,
    worker processes (or threads with ``processes: false``) with an optional ``memory_limit`` each."""

    kind: Literal["local"] = "local"
    workers: int | None = Field(default=None, ge=1, le=MAX_PARALLEL)
    threads_per_worker: int = Field(default=1, ge=1, le=MAX_PARALLEL)
    processes: bool = True
    memory_limit: str | None = None


class SlurmExecutorConfig(ConfigModel):
    """``kind: slurm``: dask-jobqueue's ``SLURMCluster``; per job ``queue``, ``account``, ``cores``, ``memory``,
    ``walltime`` (HH:MM:SS) and ``job_extra_directives``; scaled to ``jobs`` jobs."""

    kind: Literal["slurm"] = "slurm"
    queue: str | None = None
    account: str | None = None
    cores: int = Field(default=1, ge=1, le=MAX_PARALLEL)
    memory: str = "4GB"
    walltime: str = "01:00:00"
    jobs: int = Field(default=1, ge=1, le=MAX_PARALLEL)
    job_extra_directives: list[str] = Field(default_factory=list)


class SyncExecutorConfig(ConfigModel):
    """``kind: sync``: in-process, one run after the other (no dask: fast simulators, tests, loops of few runs)."""

    kind: Literal["sync"] = "sync"


#: Where runs execute, chosen by ``kind``: ``local`` (default), ``slurm`` or ``sync``; each kind takes only its
#: own settings. A plain string is shorthand for the kind (``executor: slurm``).
ExecutorConfig = Annotated[Union[LocalExecutorConfig, SlurmExecutorConfig, SyncExecutorConfig],
                           Field(discriminator="kind")]


class CampaignConfig(ConfigModel):
    """A simulation campaign: blocks of run requests, retries, per-run timeout, executor."""

    runs: list[CampaignRunsConfig]
    max_retries: int = Field(default=2, ge=0, le=MAX_PARALLEL)
    timeout_s: float | None = Field(default=None, gt=0, description="wall-clock limit of one run, seconds")
    executor: ExecutorConfig = Field(default_factory=LocalExecutorConfig)

    @field_validator("executor", mode="before")
    @classmethod
    def _executor_kind(cls, v: Any) -> Any:
        if isinstance(v, str):  # shorthand: the kind alone
            return {"kind": v}
        if isinstance(v, dict) and "kind" not in v:
            return {**v, "kind": "local"}
        return v
