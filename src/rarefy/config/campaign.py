"""Campaign section: blocks of run requests, retries, timeouts and the executor."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import ConfigModel

__all__ = ["CampaignRunsConfig", "ExecutorConfig", "CampaignConfig"]


class CampaignRunsConfig(ConfigModel):
    """One block of run requests: ``runs`` runs of ``events`` events each at one fidelity.

    ``designs`` is a sampling method (``sobol``, ``lhs``, ``random``) over the config's
    design space, or the fidelity name of an earlier block whose first ``runs`` designs
    are repeated (nested designs, as multi-fidelity surrogates like them).
    """

    fidelity: str
    runs: int = Field(ge=0)
    events: int | None = Field(default=None, ge=1)
    designs: str = "sobol"


class ExecutorConfig(ConfigModel):
    """Where runs execute: ``local`` (dask LocalCluster), ``slurm`` (dask-jobqueue) or ``sync`` (in-process).

    ``local``: ``workers`` (default one per core), ``threads_per_worker``, ``processes``,
    ``memory_limit``. ``slurm``: ``queue``, ``account``, ``cores``, ``memory``, ``walltime``
    per job, ``jobs`` to scale to, ``job_extra_directives``. A plain string is shorthand
    for the kind (``executor: slurm``).
    """

    kind: Literal["local", "slurm", "sync"] = "local"
    workers: int | None = Field(default=None, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    processes: bool = True
    memory_limit: str | None = None
    queue: str | None = None
    account: str | None = None
    cores: int = Field(default=1, ge=1)
    memory: str = "4GB"
    walltime: str = "01:00:00"
    jobs: int = Field(default=1, ge=1)
    job_extra_directives: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v


class CampaignConfig(ConfigModel):
    """A simulation campaign: blocks of run requests, retries, per-run timeout, executor."""

    runs: list[CampaignRunsConfig]
    max_retries: int = Field(default=2, ge=0)
    timeout_s: float | None = Field(default=None, gt=0, description="wall-clock limit of one run, seconds")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @field_validator("executor", mode="before")
    @classmethod
    def _executor_shorthand(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v
