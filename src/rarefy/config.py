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
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InputError
from .space import DesignSpace, Parameter

__all__ = [
    "ParameterConfig", "SpaceConfig", "NoiseConfig", "FidelityConfig", "DataConfig",
    "SurrogateConfig", "RunConfig", "load_config", "dump_config", "format_validation_error", "LOSS_PARAMETERS",
    "EventColumnsConfig", "SimulatorConfig", "CampaignRunsConfig", "ExecutorConfig", "CampaignConfig",
    "DenoiseModelConfig", "DenoiseLossConfig", "MixupConfig", "ImbalancePhaseConfig", "EarlyStoppingConfig",
    "DenoiseConfig", "BenchBackendConfig", "BenchImbalanceConfig", "BenchConfig", "AcquisitionConfig", "OptimizeConfig", "BaselineConfig", "VerifyConfig", "LoopConfig",
    "ObjectiveConfig", "ParetoConfig",
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
    """Settings of the multi-fidelity surrogate.

    ``kind: ar1`` (default): the AR1 Gaussian process, :class:`rarefy.AR1Surrogate`
    (``kernel``, ``rho``, ``nugget``, ``restarts``, ``max_iter``, ``output``).
    ``kind: pce``: the Bayesian multi-fidelity PCE, :class:`rarefy.PCESurrogate`
    (``degree`` or ``max_degree`` with ``cv_folds``, ``nugget``, ``max_iter``, ``output``;
    ``output: poisson`` models the log rate behind the counts ``k`` of ``n`` events, pce only).
    """

    kind: Literal["ar1", "pce"] = "ar1"
    kernel: Literal["matern52", "rbf"] = "matern52"
    rho: Literal["constant", "linear"] = "constant"
    nugget: bool = True
    restarts: int = Field(default=5, ge=1)
    max_iter: int = Field(default=200, ge=1)
    output: Literal["identity", "log", "poisson"] = "identity"
    rho_prior: float | None = Field(default=None, gt=0, description="ar1 and pce: scale s of a Normal(1, s) prior on "
                                    "each constant ρ, in standardised output units (None: flat)")
    mean_uncertainty: bool = Field(default=False, description="ar1: add the uncertainty of the target level's constant "
                                   "mean and ρ to its predictive variance (universal kriging; for few target runs)")
    degree: int | None = Field(default=None, ge=0, description="pce: fixed total degree (default: by cross-validation)")
    max_degree: int = Field(default=4, ge=1, description="pce: highest total degree tried by the cross-validation")
    cv_folds: int = Field(default=5, ge=2, description="pce: folds of the degree cross-validation")
    prior: Literal["ard", "degree"] = Field(
        default="ard", description="pce: coefficient prior — 'ard' (one precision per term) or 'degree' (one "
                                   "precision per fidelity level and total degree; better calibrated intervals)")

    AR1_FIELDS: ClassVar[tuple[str, ...]] = ("kernel", "rho", "nugget", "restarts", "max_iter", "output", "rho_prior",
                                             "mean_uncertainty")
    PCE_FIELDS: ClassVar[tuple[str, ...]] = ("degree", "max_degree", "cv_folds", "nugget", "max_iter", "output",
                                             "prior", "rho_prior")

    @model_validator(mode="after")
    def _poisson_is_pce(self) -> "SurrogateConfig":
        if self.output == "poisson" and self.kind != "pce":
            raise ValueError("output: poisson (a log-rate model of the counts k, n) is only available with kind: pce")
        return self


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


class DenoiseModelConfig(_Model):
    """The CNP (``kind: cnp``), attentive CNP (``attentive``) or factorised CNP (``factorised``).

    Defaults are RESuM-size (≈1e5 parameters). ``rep_dim`` is the representation size
    (default: last encoder width); ``heads`` the attention heads of the attentive variant;
    ``rank`` and ``design_widths`` the low-rank design interaction of the factorised one
    (:class:`rarefy.denoise.FactorisedCNP`; ``design_widths: []`` makes it linear in θ).
    """

    kind: Literal["cnp", "attentive", "factorised"] = "cnp"
    encoder: list[int] = Field(default_factory=lambda: [32, 64, 128, 128, 128, 64, 48, 32])
    decoder: list[int] = Field(default_factory=lambda: [32, 64, 128, 128, 128, 64, 48, 32])
    rep_dim: int | None = Field(default=None, ge=1)
    heads: int = Field(default=4, ge=1)
    rank: int = Field(default=1, ge=1)
    design_widths: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _widths(self) -> "DenoiseModelConfig":
        if any(w < 1 for w in (*self.encoder, *self.decoder, *self.design_widths)):
            raise ValueError("layer widths must be >= 1")
        rep = self.rep_dim or (self.encoder[-1] if self.encoder else 32)
        if self.kind == "attentive" and rep % self.heads:
            raise ValueError(f"the representation size {rep} must be a multiple of heads ({self.heads})")
        return self


#: the denoiser's losses and the parameters each takes (the schema of ``rarefy.nn.losses.LOSSES``)
LOSS_PARAMETERS: dict[str, tuple[str, ...]] = {
    "bce": (),
    "focal": ("alpha_pos", "alpha_neg", "gamma"),
    "logit_adjusted": ("prior", "tau"),
    "gaussian_nll": (),
    "brier": (),
}


class DenoiseLossConfig(_Model):
    """Training loss by name (``bce``, ``focal``, ``logit_adjusted``, ``gaussian_nll``, ``brier``) and its parameters."""

    name: str = "bce"
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _known(self) -> "DenoiseLossConfig":
        if self.name not in LOSS_PARAMETERS:
            raise ValueError(f"unknown loss {self.name!r}; known losses: {', '.join(sorted(LOSS_PARAMETERS))}")
        allowed = LOSS_PARAMETERS[self.name]
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            raise ValueError(f"loss {self.name!r} has no parameter(s) {unknown}; it takes: {list(allowed) or 'none'}")
        return self


class MixupConfig(_Model):
    """Signal–background mixup: ``fraction`` of the batch, λ ~ Uniform(a, b) or Beta(a, b)."""

    enabled: bool = False
    fraction: float = Field(default=0.1, ge=0, le=1)
    distribution: Literal["uniform", "beta"] = "uniform"
    a: float = Field(default=0.5, gt=0)
    b: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _range(self) -> "MixupConfig":
        if self.distribution == "uniform" and not (0 <= self.a <= self.b <= 1):
            raise ValueError(f"uniform mixup needs 0 <= a <= b <= 1, got a={self.a}, b={self.b}")
        return self


class ImbalancePhaseConfig(_Model):
    """One phase of positive oversampling: ``epochs``, pool positives per batch (``null``: natural), reuse cap per epoch."""

    epochs: int = Field(ge=1)
    positive_ratio: float | None = Field(default=None, ge=0, lt=1)
    max_reuse: int = Field(default=10, ge=1)


class EarlyStoppingConfig(_Model):
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs; restore the best weights."""

    enabled: bool = True
    patience: int = Field(default=5, ge=1)
    min_delta: float = Field(default=0.0, ge=0)


class DenoiseConfig(_Model):
    """Event-level denoiser (CNP) training; see :func:`rarefy.denoise.train`.

    ``epochs`` applies without an ``imbalance`` schedule (default 20); with one, training
    runs the phases' epochs. ``lr_schedule: cosine`` anneals the learning rate from ``lr``
    towards 0 over those epochs (epoch ``e`` of ``E`` uses ``lr·(1 + cos(πe/E))/2``). ``batches_per_epoch`` caps an epoch (default: one pass over
    the training targets). ``context_size`` is the per-run context bank, ``context_per_batch``
    the budget of context events encoded per batch (at least ``min_context`` per run).
    ``val_events_per_run`` caps the validation targets per run (they are held in memory:
    set it for streamed data larger than memory). ``seed`` defaults to the run config's
    seed (the caller passes it to :func:`rarefy.denoise.train`).

    Run-directory pipeline (``rarefy train CONFIG --run RUN_DIR``, :func:`rarefy.train_denoiser`):
    ``fidelities`` names the fidelities whose runs train the denoiser (default: the lowest
    one); ``phi`` the per-event φ columns (default: the events' φ columns);
    ``test_blocks`` the (0-based) ``campaign.runs`` blocks whose runs are held out as
    ``split == "test"`` (never trained or validated on; ``split`` then divides the other
    runs); ``stream`` reads the event shards from disk every epoch instead of loading
    them into memory once. ``phi_log`` log-transforms φ columns before standardising:
    ``auto`` picks the strictly positive, right-skewed ones on the training runs
    (:meth:`rarefy.denoise.normalize.PhiMoments.log_mask`), a list names them, ``none``
    (default) logs none. ``ensemble: K`` trains K denoisers, member ``i`` with seed
    ``seed + i`` and so its own random train/validation split of the same non-test runs
    (bagging over runs), and ``rarefy denoise`` averages their probabilities.
    """

    model: DenoiseModelConfig = Field(default_factory=DenoiseModelConfig)
    loss: DenoiseLossConfig = Field(default_factory=DenoiseLossConfig)
    mixup: MixupConfig = Field(default_factory=MixupConfig)
    imbalance: list[ImbalancePhaseConfig] = Field(default_factory=list)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    epochs: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=3000, ge=1)
    batches_per_epoch: int | None = Field(default=None, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: float = Field(default=0.0, ge=0)
    split: list[float] = Field(default_factory=lambda: [0.8, 0.1, 0.1], min_length=3, max_length=3)
    context_size: int = Field(default=64, ge=1)
    context_per_batch: int = Field(default=1024, ge=1)
    min_context: int = Field(default=4, ge=1)
    val_events_per_run: int | None = Field(default=None, ge=1)
    score_folds: int = Field(default=2, ge=2)
    checkpoint: bool = True
    tensorboard: bool = True
    progress: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int | None = None
    fidelities: list[str] | None = Field(default=None, min_length=1)
    phi: list[str] | None = Field(default=None, min_length=1)
    test_blocks: list[int] = Field(default_factory=list)
    stream: bool = False
    phi_log: Literal["auto", "none"] | list[str] = "none"
    ensemble: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _epochs(self) -> "DenoiseConfig":
        if self.imbalance and self.epochs is not None:
            raise ValueError("give either 'epochs' or an 'imbalance' schedule (whose phases set the epochs), not both")
        if any(f < 0 for f in self.split) or self.split[0] <= 0:
            raise ValueError(f"split must be three fractions >= 0 with a positive training share, got {self.split}")
        if self.min_context > self.context_size:
            raise ValueError(f"min_context ({self.min_context}) exceeds context_size ({self.context_size})")
        return self


class BenchBackendConfig(_Model):
    """One backend of ``rarefy bench``: registry ``name`` (or ``custom`` with ``import_path``), options, label.

    ``label`` is its key in ``bench.json`` (default: ``name``; labels must be unique, so the
    same backend can be benched with two option sets). ``options`` go to the backend's
    constructor ``Cls(seed=..., **options)``.
    """

    name: str
    label: str | None = None
    import_path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> "BenchBackendConfig":
        # names are checked against the backend registry by the bench job before any work
        if self.name == "custom":
            if not self.import_path:
                raise ValueError("backend 'custom' needs an 'import_path' ('package.module:Class')")
        elif self.import_path is not None:
            raise ValueError(f"backend {self.name!r}: 'import_path' is only for 'custom' backends")
        if self.import_path is not None and (self.import_path.count(":") != 1 or not all(self.import_path.split(":"))):
            raise ValueError(f"import_path {self.import_path!r} must look like 'package.module:Class'")
        if self.label is None:
            self.label = self.name
        return self


class BenchImbalanceConfig(_Model):
    """A rarer variant of the data: keep ``rate`` × events positives per split part, at least ``min_positives``.

    In each of train / val / test, round(``rate`` · n_part) positives (but at least the
    part's entry of ``min_positives`` = [train, val, test], and at most those there are)
    are kept at random and the other positives are dropped; background is untouched.
    The realised rates are written to ``bench_meta.json``.
    """

    rate: float = Field(gt=0, lt=1)
    min_positives: list[int] = Field(default_factory=lambda: [5, 2, 5], min_length=3, max_length=3)


class BenchConfig(_Model):
    """``rarefy bench``: backends trained and scored on one by-run split (see :mod:`rarefy.zoo.bench`).

    Data: the finished runs of ``fidelities`` (default: the lowest) in ``run_dir`` (a
    directory written by ``rarefy simulate``, relative to the config); without ``run_dir``
    the config's ``campaign`` is simulated into ``OUT/events`` first (resumable). ``phi``:
    per-event columns used (default: the events' φ). ``split``: train / val / test
    fractions of the runs (by run, seeded). ``ece_bins`` / ``ece_binning`` (``mass``:
    equal-count bins, ``width``: equal-width bins of p). ``threads``: torch threads.
    """

    backends: list[BenchBackendConfig] = Field(min_length=1)
    run_dir: Path | None = None
    fidelities: list[str] | None = Field(default=None, min_length=1)
    phi: list[str] | None = Field(default=None, min_length=1)
    split: list[float] = Field(default_factory=lambda: [0.7, 0.1, 0.2], min_length=3, max_length=3)
    imbalance: BenchImbalanceConfig | None = None
    ece_bins: int = Field(default=15, ge=1)
    ece_binning: Literal["mass", "width"] = "mass"
    threads: int = Field(default=1, ge=1)
    save_models: bool = True
    seed: int | None = None

    @model_validator(mode="after")
    def _check(self) -> "BenchConfig":
        labels = [b.label for b in self.backends]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"backend labels must be unique, repeated: {dup} (give 'label')")
        if any(f < 0 for f in self.split) or self.split[0] <= 0 or self.split[2] <= 0:
            raise ValueError(f"split must be three fractions >= 0 with positive train and test shares, got {self.split}")
        return self


class AcquisitionConfig(_Model):
    """What to simulate next (see :mod:`rarefy.acquire`).

    ``kind``: ``ivr`` (integrated variance reduction of the target over the design space),
    ``maxvar`` (target variance reduction at the proposed design), ``ei`` (expected
    improvement, minimisation) or ``lcb`` (lower confidence bound ``mean - beta * std``).
    ``cost_aware``: choose the fidelity too, by value per nominal CPU-hour; otherwise
    propose target-fidelity runs only. ``fidelities`` limits the fidelities that may be
    proposed (default: all); ``events`` sets events per proposed run per fidelity (default:
    the fidelity's ``events`` or the simulator's default). ``candidates`` feasible Sobol
    points seed the search, the best ``starts`` are refined by ``steps`` gradient steps;
    ``reference`` Sobol points integrate the variance for ``ivr``.
    """

    kind: Literal["ivr", "maxvar", "ei", "lcb"] = "ivr"
    cost_aware: bool = True
    fidelities: list[str] | None = None
    events: dict[str, int] = Field(default_factory=dict)
    beta: float = Field(default=2.0, ge=0)
    candidates: int = Field(default=1024, ge=1)
    reference: int = Field(default=64, ge=1)
    starts: int = Field(default=4, ge=1)
    steps: int = Field(default=20, ge=0)

    @field_validator("events")
    @classmethod
    def _positive(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: n for k, n in v.items() if n < 1}
        if bad:
            raise ValueError(f"events per run must be >= 1, got {bad}")
        return v


class OptimizeConfig(_Model):
    """Design optimisation (see :mod:`rarefy.optimize`): minimise the target's predicted
    ``mean`` or the ``ucb`` ``mean + kappa * std`` over the feasible designs, multistart."""

    objective: Literal["mean", "ucb"] = "mean"
    kappa: float = Field(default=1.0, ge=0)
    candidates: int = Field(default=2048, ge=1)
    starts: int = Field(default=8, ge=1)
    steps: int = Field(default=40, ge=0)


class BaselineConfig(_Model):
    """The reference a design's reduction is measured against; give exactly one of

    - ``design``: a design (parameter -> value) whose rate the surrogate predicts (and
      ``rarefy run`` verifies with target-fidelity runs),
    - ``rate`` (with optional ``sigma``): a known rate in the target's units,
    - ``simulator: true``: the simulator's ``baseline_rate(fidelity)`` (the built-in
      ``moderator``: no moderator at all).
    """

    design: dict[str, float] | None = None
    rate: float | None = Field(default=None, gt=0)
    sigma: float | None = Field(default=None, ge=0)
    simulator: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> "BaselineConfig":
        given = [k for k, v in (("design", self.design), ("rate", self.rate), ("simulator", self.simulator or None))
                 if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of 'design', 'rate', 'simulator: true'; got {given or 'none'}")
        return self


class VerifyConfig(_Model):
    """Target-fidelity verification runs at the optimum: ``runs`` runs of ``events`` events (0 runs: none)."""

    runs: int = Field(default=2, ge=0)
    events: int | None = Field(default=None, ge=1)


class LoopConfig(_Model):
    """The closed loop of ``rarefy run`` (see :mod:`rarefy.loop`).

    After the ``campaign`` (the initial design), each of at most ``iterations`` rounds
    refits the surrogate and simulates a ``batch`` of acquired runs. ``budget_cpu_h`` caps
    the nominal cost of everything (initial design, loop and verification runs) in CPU-hours.
    """

    iterations: int = Field(default=10, ge=0)
    batch: int = Field(default=4, ge=1)
    budget_cpu_h: float | None = Field(default=None, gt=0)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    cv_folds: int = Field(default=5, ge=0, description="K-fold cross-validation of the final surrogate over the "
                          "target runs, for the report's calibration plot (0: none)")


class ObjectiveConfig(_Model):
    """One objective of a multi-objective run (``objectives:``; see :mod:`rarefy.pareto`). Every objective is minimised.

    ``statistic`` turns one run into one value with its noise variance:

    - ``rate``: the event outcome's rate k/n (binomial/Poisson noise, as ``rates.parquet``);
    - ``mean`` / ``std`` / ``rel_std``: mean, standard deviation or std/mean of the per-event
      column ``column`` of the run's event shard (analytic standard errors; NaNs skipped).

    ``log10``: fit and optimise log10 of the value (rates spanning decades; a rate uses
    (k + ½)/(n + 1) so that k = 0 stays finite, with variance 1/((k + ½) ln²10)).
    ``scale`` multiplies the value (e.g. 100 for percent). ``max``: an outcome constraint
    (objective ≤ max, in the fitted scale) that the acquisition and the reported front
    respect. ``reference``: the hypervolume reference point of this objective (fitted
    scale; default: the worst observed value plus 10% of the observed range).
    """

    name: str
    statistic: Literal["rate", "mean", "std", "rel_std"] = "rate"
    column: str | None = None
    log10: bool = False
    scale: float = Field(default=1.0, gt=0)
    max: float | None = None
    reference: float | None = None
    unit: str = ""

    @model_validator(mode="after")
    def _column(self) -> "ObjectiveConfig":
        if self.statistic == "rate" and self.column is not None:
            raise ValueError(f"objective {self.name!r}: 'column' is only for mean / std / rel_std statistics")
        if self.statistic != "rate" and not self.column:
            raise ValueError(f"objective {self.name!r}: statistic {self.statistic!r} needs an event 'column'")
        return self


class ParetoConfig(_Model):
    """Multi-objective acquisition and front estimation (see :mod:`rarefy.pareto`).

    ``acquisition``: ``qnehvi`` (botorch's q-log noisy expected hypervolume improvement) or
    ``qparego`` (q-log ParEGO: random Chebyshev scalarisations). Proposed runs are at
    ``fidelity`` (default: the target) with that fidelity's events per run. ``mc_samples``
    quasi-MC posterior samples; the search screens ``candidates`` feasible Sobol designs
    and refines the best ``starts`` with ``steps`` gradient steps. The estimated Pareto set
    is the non-dominated set of posterior means over ``front_candidates`` feasible Sobol
    designs plus the observed ones, thinned to at most ``front_max`` points.
    """

    acquisition: Literal["qnehvi", "qparego"] = "qnehvi"
    fidelity: str | None = None
    mc_samples: int = Field(default=128, ge=8)
    candidates: int = Field(default=512, ge=1)
    starts: int = Field(default=4, ge=1)
    steps: int = Field(default=15, ge=0)
    front_candidates: int = Field(default=2048, ge=16)
    front_max: int = Field(default=25, ge=2)


class PriorConfig(_Model):
    """Prior of one parameter: ``uniform`` on [low, high] (default: the space's bounds) or ``normal``
    (``mu``, ``sigma``) truncated to the bounds."""

    kind: Literal["uniform", "normal"] = "uniform"
    low: float | None = None
    high: float | None = None
    mu: float | None = None
    sigma: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _normal(self) -> "PriorConfig":
        if self.kind == "normal" and (self.mu is None or self.sigma is None):
            raise ValueError("a normal prior needs 'mu' and 'sigma'")
        return self


class ObservationConfig(_Model):
    """An observed local merger rate: median with asymmetric 1σ errors (Gpc⁻³ yr⁻¹; default GWTC-3)."""

    rate: float = 17.0
    plus: float = Field(default=10.0, gt=0)
    minus: float = Field(default=6.7, gt=0)


class FullRateConfig(_Model):
    """The full merger-rate model (:class:`rarefy.inference.rates.FullRateModel`).

    ``delays``: a Parquet/CSV file (relative to the config) whose ``delay_column`` holds the
    delay times (Myr) of simulated mergers, the empirical delay-time distribution.
    ``z_param``: the θ name of log10 Z (the median metallicity of star formation today);
    ``z_spread_dex``: spread σ_Z of log10 Z at fixed redshift (0: a single metallicity);
    ``z_evolution``: Madau & Fragos (2017) decline of the median with redshift; ``grid``:
    cells of the log10 Z integral; ``h0`` (km/s/Mpc) and ``omega_m``: flat ΛCDM.
    """

    delays: Path
    delay_column: str = "t_merge_myr"
    z_param: str = "log10_z"
    z_spread_dex: float = Field(default=0.4, ge=0)
    z_evolution: bool = True
    grid: int = Field(default=16, ge=2)
    h0: float = Field(default=67.66, gt=0)
    omega_m: float = Field(default=0.3097, gt=0, lt=1)


class InferConfig(_Model):
    """Bayesian inference of θ from an observed merger rate with the surrogate as forward model.

    ``surrogate``: a run directory written by ``rarefy fit`` (relative to the config); without
    it the config's own surrogate is fitted on its data. ``fidelity``: the surrogate output
    used (default: the target). ``msun_per_event``: star-forming mass (M☉) represented per
    simulated event, turning a rate per event into a formation efficiency per M☉;
    ``sfrd0``: star-formation rate density at z = 0 (M☉ yr⁻¹ Mpc⁻³) of ``rate_model: simple``
    (R = ε · sfrd0); ``rate_model: full`` integrates over formation redshift and metallicity
    with the settings of the ``full`` section. ``marginalise``: integrate the likelihood over
    the surrogate's predictive std.
    """

    surrogate: Path | None = None
    fidelity: str | None = None
    rate_model: Literal["simple", "full"] = "simple"
    full: FullRateConfig | None = None
    msun_per_event: float = Field(gt=0)
    sfrd0: float = Field(default=0.015, gt=0)
    observation: ObservationConfig = Field(default_factory=ObservationConfig)
    priors: dict[str, PriorConfig] = Field(default_factory=dict)
    marginalise: bool = True
    walkers: int = Field(default=32, ge=4)
    steps: int = Field(default=3000, ge=10)
    burn: int = Field(default=1000, ge=0)
    thin: int = Field(default=1, ge=1)
    moves: Literal["de", "stretch"] = Field(
        default="de", description="emcee proposals: 'de' (differential evolution 0.8 + DE snooker 0.2; "
                                  "autocorrelation times ~3x shorter on the BBH posterior) or 'stretch' (emcee's default)")
    seed: int | None = None

    @model_validator(mode="after")
    def _burn(self) -> "InferConfig":
        if self.burn >= self.steps:
            raise ValueError(f"burn ({self.burn}) must be smaller than steps ({self.steps})")
        if self.rate_model == "full" and self.full is None:
            raise ValueError("rate_model: full needs a 'full' section (at least full.delays)")
        return self


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
    denoise: DenoiseConfig | None = None
    infer: InferConfig | None = None
    bench: BenchConfig | None = None
    acquisition: AcquisitionConfig = Field(default_factory=AcquisitionConfig)
    optimize: OptimizeConfig = Field(default_factory=OptimizeConfig)
    baseline: BaselineConfig | None = None
    loop: LoopConfig | None = None
    objectives: list[ObjectiveConfig] = Field(default_factory=list)
    pareto: ParetoConfig = Field(default_factory=ParetoConfig)

    @model_validator(mode="after")
    def _check_objectives(self) -> "RunConfig":
        if not self.objectives:
            return self
        names = [o.name for o in self.objectives]
        if len(names) < 2:
            raise ValueError(f"objectives: a multi-objective run needs two or more objectives, got {names}")
        if len(set(names)) != len(names):
            raise ValueError(f"objectives: names must be unique, got {names}")
        fids = [f.name for f in self.fidelities]
        if self.pareto.fidelity is not None and self.pareto.fidelity not in fids:
            raise ValueError(f"pareto.fidelity: unknown fidelity {self.pareto.fidelity!r}; defined fidelities: {fids}")
        return self

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
        for key, fids in (("acquisition.fidelities", self.acquisition.fidelities or []),
                          ("acquisition.events", list(self.acquisition.events))):
            unknown = [f for f in fids if f not in names]
            if unknown:
                raise ValueError(f"{key}: unknown fidelities {unknown}; defined fidelities: {names}")
        if self.denoise is not None:
            unknown = [f for f in self.denoise.fidelities or [] if f not in names]
            if unknown:
                raise ValueError(f"denoise.fidelities: unknown fidelities {unknown}; defined fidelities: {names}")
            n_blocks = len(self.campaign.runs) if self.campaign is not None else 0
            bad = [b for b in self.denoise.test_blocks if not 0 <= b < n_blocks]
            if bad:
                raise ValueError(f"denoise.test_blocks: {bad} are not campaign.runs blocks (there are {n_blocks})")
        if self.bench is not None:
            unknown = [f for f in self.bench.fidelities or [] if f not in names]
            if unknown:
                raise ValueError(f"bench.fidelities: unknown fidelities {unknown}; defined fidelities: {names}")
        if self.loop is not None and (self.simulator is None or self.campaign is None):
            raise ValueError("a 'loop' needs 'simulator' and 'campaign' sections (the campaign is the initial design)")
        return self

    @property
    def fidelity_names(self) -> list[str]:
        return [f.name for f in self.fidelities]

    def fidelity(self, name: str) -> FidelityConfig:
        for f in self.fidelities:
            if f.name == name:
                return f
        raise InputError(f"unknown fidelity {name!r}; defined fidelities: {self.fidelity_names}")


def format_validation_error(exc: ValidationError) -> str:
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
        raise InputError(format_validation_error(exc), file=source) from None
    if cfg.data is not None:
        cfg.data.paths = [p if p.is_absolute() else (Path(base) / p).resolve() for p in cfg.data.paths]
    if cfg.bench is not None and cfg.bench.run_dir is not None and not cfg.bench.run_dir.is_absolute():
        cfg.bench.run_dir = (Path(base) / cfg.bench.run_dir).resolve()
    if cfg.infer is not None and cfg.infer.surrogate is not None and not cfg.infer.surrogate.is_absolute():
        cfg.infer.surrogate = (Path(base) / cfg.infer.surrogate).resolve()
    if cfg.infer is not None and cfg.infer.full is not None and not cfg.infer.full.delays.is_absolute():
        cfg.infer.full.delays = (Path(base) / cfg.infer.full.delays).resolve()
    try:
        space = cfg.space.build()
    except InputError as exc:
        raise InputError(f"space: {exc.reason}", file=source) from None
    if cfg.baseline is not None and cfg.baseline.design is not None:
        design = cfg.baseline.design
        if sorted(design) != sorted(space.names):
            raise InputError(f"baseline.design must give exactly the parameters {space.names}, got {sorted(design)}",
                             file=source)
    return cfg


def dump_config(cfg: RunConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML (absolute data paths)."""
    data = cfg.model_dump(mode="json")
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
