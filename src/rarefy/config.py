"""Run configuration: YAML in, validated typed objects out.

This is the only module that knows YAML. :func:`load_config` reads a file, validates it
with pydantic once, resolves relative data paths against the config's folder, and
returns a :class:`RunConfig`; every inner function takes these typed objects.

A minimal config::

    name: legend
    seed: 0
    space:
      parameters:
        radius: {low: 0, high: 265, unit: cm}
        npanels: {low: 0, high: 360, integer: true}
      constraints: ["npanels * 2 <= radius"]
    data:
      paths: [data/rates.csv]
      columns: {"Radius[cm]": radius, "NPanels": npanels}
    fidelities:                     # ordered from lowest to highest fidelity
      - name: lf
        filter: {Fidelity: 0}
        value: rate
        noise: {counts: y_raw}
      - name: hf
        filter: {Fidelity: 1}
        value: rate
        noise: {counts: y_raw}
    target: hf
    surrogate: {kind: ar1, kernel: matern52, rho: constant, restarts: 5}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InputError
from .space import DesignSpace, Parameter

__all__ = [
    "ParameterConfig", "SpaceConfig", "NoiseConfig", "FidelityConfig", "DataConfig",
    "SurrogateConfig", "RunConfig", "load_config", "dump_config",
    "EventColumnsConfig", "SimulatorConfig", "CampaignRunsConfig", "ExecutorConfig", "CampaignConfig",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParameterConfig(_Model):
    """Bounds (inclusive, in ``unit``) of one design parameter."""

    low: float
    high: float
    integer: bool = False
    unit: str = ""


class SpaceConfig(_Model):
    """Design parameters, constraints (``lhs <= rhs`` expressions) and helper definitions."""

    parameters: dict[str, ParameterConfig]
    constraints: list[str] = Field(default_factory=list)
    definitions: dict[str, str] = Field(default_factory=dict)

    def build(self) -> DesignSpace:
        params = [Parameter(n, p.low, p.high, p.integer, p.unit) for n, p in self.parameters.items()]
        return DesignSpace(params, list(self.constraints), dict(self.definitions))


class NoiseConfig(_Model):
    """Where a fidelity's per-point noise variance comes from (at most one source).

    - ``std``: a column holding the 1σ error of the value;
    - ``variance``: a column holding the noise variance;
    - ``counts``: a column of signal counts k; var = value² / k (Poisson/binomial), with
      the k = 0 rule of :func:`rarefy.data.count_variance`; ``events`` optionally names
      the column of events thrown n, used for k = 0;
    - none of them: the value is taken as exact (the surrogate may still learn a nugget).
    """

    std: str | None = None
    variance: str | None = None
    counts: str | None = None
    events: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "NoiseConfig":
        given = [k for k in ("std", "variance", "counts") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of std / variance / counts, got {given}")
        if self.events is not None and self.counts is None:
            raise ValueError("'events' only makes sense together with 'counts'")
        return self


class FidelityConfig(_Model):
    """One fidelity: which rows (``filter``: column -> value or list of values), which value column."""

    name: str
    value: str
    filter: dict[str, Any] = Field(default_factory=dict)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    cost_cpu_h: float | None = Field(default=None, ge=0, description="nominal cost of one run, CPU-hours")
    cost_cpu_h_per_event: float | None = Field(
        default=None, ge=0, description="campaigns: nominal cost of one event, CPU-hours (default: the simulator's)")
    events: int | None = Field(default=None, ge=1, description="campaigns: default number of events of one run")


class DataConfig(_Model):
    """Input rate files and the column mapping (file column name -> rarefy name)."""

    paths: list[Path]
    columns: dict[str, str] = Field(default_factory=dict)

    @field_validator("paths", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, (str, os.PathLike)) else v


class SurrogateConfig(_Model):
    """Settings of the multi-fidelity surrogate (see :class:`rarefy.AR1Surrogate`)."""

    kind: Literal["ar1"] = "ar1"
    kernel: Literal["matern52", "rbf"] = "matern52"
    rho: Literal["constant", "linear"] = "constant"
    nugget: bool = True
    restarts: int = Field(default=5, ge=1)
    max_iter: int = Field(default=200, ge=1)
    output: Literal["identity", "log"] = "identity"


class EventColumnsConfig(_Model):
    """How event files map to rarefy's event columns (file column -> rarefy name, then θ/φ/outcome/weight).

    ``phi: null`` takes every remaining numeric column as φ; ``key`` names the HDF5
    key/group or ROOT TTree where a file holds several.
    """

    columns: dict[str, str] = Field(default_factory=dict)
    theta: list[str] = Field(default_factory=list)
    phi: list[str] | None = None
    outcome: str = "outcome"
    weight: str | None = None
    key: str | None = None


class SimulatorConfig(_Model):
    """Which simulator a campaign drives.

    - ``kind: builtin``: ``name`` from :func:`rarefy.simulators.get` (e.g. ``moderator``);
    - ``kind: python``: ``target`` is an import path ``package.module:attribute`` naming a
      function ``f(theta, n, fidelity, seed, **options)``, or a class / factory called with
      ``options`` that returns an object with ``simulate``;
    - ``kind: command``: ``command`` is an argument list (no shell) whose items are
      ``str.format`` templates with ``{n}``, ``{seed}``, ``{fidelity}``, ``{output}``,
      ``{run_id}`` and ``{theta[NAME]}``; the command writes ``output`` (CSV, Parquet,
      HDF5 or ROOT, by suffix) which is read back with ``events``.
    """

    kind: Literal["builtin", "python", "command"] = "builtin"
    name: str | None = None
    target: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    command: list[str] | None = None
    output: str = "events.parquet"
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0, description="wall-clock limit of one request, seconds")
    events: EventColumnsConfig = Field(default_factory=EventColumnsConfig)

    @model_validator(mode="after")
    def _fields_for_kind(self) -> "SimulatorConfig":
        need = {"builtin": "name", "python": "target", "command": "command"}[self.kind]
        if not getattr(self, need):
            raise ValueError(f"a simulator of kind {self.kind!r} needs '{need}'")
        return self


class CampaignRunsConfig(_Model):
    """One block of run requests: ``runs`` runs of ``events`` events each at one fidelity.

    ``designs`` is a sampling method (``sobol``, ``lhs``, ``random``) over the config's
    design space, or the fidelity name of an earlier block whose first ``runs`` designs
    are repeated (nested designs, as multi-fidelity surrogates like them).
    """

    fidelity: str
    runs: int = Field(ge=0)
    events: int | None = Field(default=None, ge=1)
    designs: str = "sobol"


class ExecutorConfig(_Model):
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


class CampaignConfig(_Model):
    """A simulation campaign: blocks of run requests, retries, per-run timeout, executor."""

    runs: list[CampaignRunsConfig]
    max_retries: int = Field(default=2, ge=0)
    timeout_s: float | None = Field(default=None, gt=0, description="wall-clock limit of one run, seconds")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @field_validator("executor", mode="before")
    @classmethod
    def _executor_shorthand(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v


class RunConfig(_Model):
    """A whole run: design space, data, fidelities (low to high), target, surrogate, seed."""

    name: str = "run"
    seed: int = 0
    space: SpaceConfig
    data: DataConfig | None = None
    fidelities: list[FidelityConfig]
    target: str | None = None
    surrogate: SurrogateConfig = Field(default_factory=SurrogateConfig)
    cv_design_tolerance: float = Field(
        default=0.01, ge=0,
        description="cross-validation holds out, with each target run, all runs whose design is within "
                    "this distance (per coordinate, as a fraction of the parameter's range)",
    )
    simulator: SimulatorConfig | None = None
    campaign: CampaignConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> "RunConfig":
        names = [f.name for f in self.fidelities]
        if not names:
            raise ValueError("at least one fidelity is needed")
        if len(set(names)) != len(names):
            raise ValueError(f"fidelity names must be unique, got {names}")
        if self.target is None:
            self.target = names[-1]
        elif self.target not in names:
            raise ValueError(f"unknown fidelity {self.target!r} in 'target'; defined fidelities: {names}")
        if self.campaign is not None:
            if self.simulator is None:
                raise ValueError("a 'campaign' needs a 'simulator'")
            for i, block in enumerate(self.campaign.runs):
                if block.fidelity not in names:
                    raise ValueError(f"campaign.runs.{i}: unknown fidelity {block.fidelity!r}; defined fidelities: {names}")
        return self

    @property
    def fidelity_names(self) -> list[str]:
        return [f.name for f in self.fidelities]

    def fidelity(self, name: str) -> FidelityConfig:
        for f in self.fidelities:
            if f.name == name:
                return f
        raise InputError(f"unknown fidelity {name!r}; defined fidelities: {self.fidelity_names}")


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a YAML run config; data paths are resolved against its folder."""
    path = Path(path)
    if not path.exists():
        raise InputError("config file not found", file=path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", file=path) from None
    if not isinstance(raw, dict):
        raise InputError("config must be a YAML mapping", file=path)
    return config_from_dict(raw, base=path.parent, source=str(path))


def config_from_dict(raw: dict[str, Any], base: str | os.PathLike[str] = ".", source: str = "<config>") -> RunConfig:
    """Validate a config given as a dict (the Python equivalent of a YAML file)."""
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise InputError(_format_validation_error(exc), file=source) from None
    if cfg.data is not None:
        cfg.data.paths = [p if p.is_absolute() else (Path(base) / p).resolve() for p in cfg.data.paths]
    try:
        cfg.space.build()
    except InputError as exc:
        raise InputError(f"space: {exc.reason}", file=source) from None
    return cfg


def dump_config(cfg: RunConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML (absolute data paths)."""
    data = cfg.model_dump(mode="json")
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
