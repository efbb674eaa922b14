"""Decision sections: acquisition, design optimisation, baseline, verification, the closed loop,
objectives and the Pareto search of multi-objective runs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import MAX_EVENTS, MAX_PARALLEL, MAX_RUNS, MAX_SAMPLES, MAX_STEPS, ConfigModel

__all__ = ["AcquisitionConfig", "OptimizeConfig", "BaselineConfig", "VerifyConfig", "StopConfig", "LoopConfig", "ObjectiveConfig", "ParetoConfig"]


class AcquisitionConfig(ConfigModel):
    """What to simulate next (see :mod:`rarefy.acquisition`).

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
    """``ivr`` (integrated variance reduction), ``maxvar`` (variance reduction at the proposed design), ``ei``
    (expected improvement) or ``lcb`` (lower confidence bound ``mean - beta * std``)"""
    cost_aware: bool = True
    """choose the fidelity too, by value per nominal CPU-hour (false: target-fidelity runs only)"""
    fidelities: list[str] | None = None
    """fidelities that may be proposed (default: all)"""
    events: dict[str, Annotated[int, Field(le=MAX_EVENTS)]] = Field(default_factory=dict)
    """events per proposed run, by fidelity (default: the fidelity's ``events`` or the simulator's default)"""
    beta: float = Field(default=2.0, ge=0)
    """lcb: weight of the std"""
    candidates: int = Field(default=1024, ge=1, le=MAX_SAMPLES)
    """feasible Sobol points that seed the search"""
    reference: int = Field(default=64, ge=1, le=MAX_SAMPLES)
    """ivr: Sobol points over which the variance is integrated"""
    starts: int = Field(default=4, ge=1, le=MAX_SAMPLES)
    """best candidates refined by gradient steps"""
    steps: int = Field(default=20, ge=0, le=MAX_STEPS)
    """gradient steps per refined start"""

    @field_validator("events")
    @classmethod
    def _positive(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: n for k, n in v.items() if n < 1}
        if bad:
            raise ValueError(f"events per run must be >= 1, got {bad}")
        return v


class OptimizeConfig(ConfigModel):
    """Design optimisation (see :mod:`rarefy.optim.design`): minimise the target's predicted
    ``mean`` or the ``ucb`` ``mean + kappa * std`` over the feasible designs, multistart."""

    objective: Literal["mean", "ucb"] = "mean"
    """minimise the predicted ``mean`` or the ``ucb`` ``mean + kappa * std``"""
    kappa: float = Field(default=1.0, ge=0)
    """ucb: weight of the std"""
    candidates: int = Field(default=2048, ge=1, le=MAX_SAMPLES)
    """feasible designs screened (multistart seeds)"""
    starts: int = Field(default=8, ge=1, le=MAX_SAMPLES)
    """best candidates refined by gradient steps"""
    steps: int = Field(default=40, ge=0, le=MAX_STEPS)
    """gradient steps per refined start"""


class BaselineConfig(ConfigModel):
    """The reference a design's reduction is measured against; give exactly one of

    - ``design``: a design (parameter -> value) whose rate the surrogate predicts (and
      ``rarefy run`` verifies with target-fidelity runs),
    - ``rate`` (with optional ``sigma``): a known rate in the target's units,
    - ``simulator: true``: the simulator's ``baseline_rate(fidelity)`` (the built-in
      ``moderator``: no moderator at all).
    """

    design: dict[str, float] | None = None
    """a design (parameter -> value, in the parameters' units) whose rate the surrogate predicts"""
    rate: float | None = Field(default=None, gt=0)
    """a known baseline rate, in the target's units"""
    sigma: float | None = Field(default=None, ge=0)
    """1σ error of ``rate``, in the target's units"""
    simulator: bool = False
    """use the simulator's ``baseline_rate(fidelity)``"""

    @model_validator(mode="after")
    def _exactly_one(self) -> "BaselineConfig":
        given = [k for k, v in (("design", self.design), ("rate", self.rate), ("simulator", self.simulator or None))
                 if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of 'design', 'rate', 'simulator: true'; got {given or 'none'}")
        return self


class VerifyConfig(ConfigModel):
    """Target-fidelity verification runs at the optimum: ``runs`` runs of ``events`` events (0 runs: none).

    With ``reduction_sigma`` the verification is sized to the predicted gain: enough runs
    that the verified reduction's 1σ is at most ``reduction_sigma`` × the predicted
    reduction (from the predicted rates and Poisson counts), at least ``runs`` and at most
    ``max_runs`` runs. ``max_runs`` is the verification's compute cap; ``loop.budget_cpu_h``
    reserves only ``runs`` of them.
    """

    runs: int = Field(default=2, ge=0, le=MAX_RUNS)
    """target-fidelity verification runs at the optimum (0: none); with ``reduction_sigma``, the fewest"""
    events: int | None = Field(default=None, ge=1, le=MAX_EVENTS)
    """events per verification run (default: the target fidelity's ``events`` or the simulator's default)"""
    reduction_sigma: float | None = Field(default=None, gt=0, le=1)
    """size the verification so that the verified reduction's 1σ is at most this fraction of the predicted
    reduction (e.g. 0.33; default: a fixed number of ``runs``)"""
    max_runs: int = Field(default=32, ge=0, le=MAX_RUNS)
    """with ``reduction_sigma``: the most verification runs (at the optimum; as many again at a baseline design)"""


class StopConfig(ConfigModel):
    """When a ``goal: surface`` loop has learned the target rate well enough (the truth is never needed).

    Over ``designs`` feasible Sobol designs of the space the surrogate's target prediction
    gives a mean μ(θ) and a latent σ(θ) [target units]; the loop stops before a round when
    ``metric`` is at most ``below``:

    - ``sigma_over_spread``: RMS σ over the designs ÷ the range of μ over their central 99%
      (0.5th to 99.5th percentile), the surface's expected RMS error as a fraction of its range;
    - ``rel_sigma``: the mean of σ/|μ| over the designs (the rate's relative error).
    """

    metric: Literal["sigma_over_spread", "rel_sigma"] = "sigma_over_spread"
    """``sigma_over_spread`` (RMS σ ÷ range of μ over the central 99%) or ``rel_sigma`` (mean σ/|μ|) over the
    designs"""
    below: float = Field(gt=0)
    """stop when the metric is at most this (dimensionless)"""
    designs: int = Field(default=1024, ge=16, le=MAX_SAMPLES)
    """feasible Sobol designs the metric is averaged over"""


class LoopConfig(ConfigModel):
    """The closed loop of ``rarefy run`` (see :mod:`rarefy.jobs.loop`).

    After the ``campaign`` (the initial design), each of at most ``iterations`` rounds
    refits the surrogate and simulates a ``batch`` of acquired runs. ``budget_cpu_h`` caps
    the nominal cost of everything (initial design, loop and verification runs) in CPU-hours.
    ``goal: optimum`` ends with the design of lowest predicted target rate and its verification;
    ``goal: surface`` learns the target rate over the space and also stops when ``stop`` holds.
    """

    goal: Literal["optimum", "surface"] = "optimum"
    """``optimum``: find the design with the lowest target rate and verify it; ``surface``: learn the target rate
    over the whole design space until ``stop`` holds"""
    stop: StopConfig | None = None
    """``goal: surface``: the stopping rule (required there)"""
    iterations: int = Field(default=10, ge=0, le=MAX_STEPS)
    """most rounds of refit and acquisition after the initial design"""
    batch: int = Field(default=4, ge=1, le=MAX_RUNS)
    """acquired runs simulated per round"""
    budget_cpu_h: float | None = Field(default=None, gt=0)
    """cap on the nominal cost of all runs (initial design, loop and verification), CPU-hours (default: none)"""
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    """verification runs at the optimum"""
    cv_folds: int = Field(default=5, ge=0, le=MAX_PARALLEL)
    """K-fold cross-validation of the final surrogate over the target runs, for the report's calibration
    plot (0: none)"""

    @model_validator(mode="after")
    def _goal(self) -> "LoopConfig":
        if self.goal == "surface" and self.stop is None:
            raise ValueError("goal 'surface' needs a 'stop' rule, e.g. stop: {metric: sigma_over_spread, below: 0.1}")
        if self.goal == "optimum" and self.stop is not None:
            raise ValueError("'stop' is for goal 'surface'; an 'optimum' loop stops at 'iterations' or 'budget_cpu_h'")
        return self


class ObjectiveConfig(ConfigModel):
    """One objective of a multi-objective run (``objectives:``; see :mod:`rarefy.jobs.pareto`). Every objective is minimised.

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
    """name of the objective (unique)"""
    statistic: Literal["rate", "mean", "std", "rel_std"] = "rate"
    """what turns one run into one value: ``rate`` (outcome rate k/n), or ``mean`` / ``std`` / ``rel_std`` of the
    per-event ``column``"""
    column: str | None = None
    """mean / std / rel_std: the per-event column"""
    log10: bool = False
    """fit and optimise log10 of the value"""
    scale: float = Field(default=1.0, gt=0)
    """factor applied to the value (e.g. 100 for percent)"""
    max: float | None = None
    """outcome constraint: objective ≤ max, in the fitted scale (default: none)"""
    reference: float | None = None
    """hypervolume reference point of this objective, in the fitted scale (default: the worst observed value plus
    10% of the observed range)"""
    unit: str = ""
    """unit of the objective, shown on plots and in tables ('' for none)"""

    @model_validator(mode="after")
    def _column(self) -> "ObjectiveConfig":
        if self.statistic == "rate" and self.column is not None:
            raise ValueError(f"objective {self.name!r}: 'column' is only for mean / std / rel_std statistics")
        if self.statistic != "rate" and not self.column:
            raise ValueError(f"objective {self.name!r}: statistic {self.statistic!r} needs an event 'column'")
        return self


class ParetoConfig(ConfigModel):
    """Multi-objective acquisition and front estimation (see :mod:`rarefy.jobs.pareto`).

    ``acquisition``: ``qnehvi`` (botorch's q-log noisy expected hypervolume improvement) or
    ``qparego`` (q-log ParEGO: random Chebyshev scalarisations). Proposed runs are at
    ``fidelity`` (default: the target) with that fidelity's events per run. ``mc_samples``
    quasi-MC posterior samples; the search screens ``candidates`` feasible Sobol designs
    and refines the best ``starts`` with ``steps`` gradient steps. The estimated Pareto set
    is the non-dominated set of posterior means over ``front_candidates`` feasible Sobol
    designs plus the observed ones, thinned to at most ``front_max`` points.
    """

    acquisition: Literal["qnehvi", "qparego"] = "qnehvi"
    """``qnehvi`` (q-log noisy expected hypervolume improvement) or ``qparego`` (q-log ParEGO)"""
    fidelity: str | None = None
    """fidelity of the proposed runs (default: the target)"""
    mc_samples: int = Field(default=128, ge=8, le=MAX_SAMPLES)
    """quasi-MC posterior samples of the acquisition"""
    candidates: int = Field(default=512, ge=1, le=MAX_SAMPLES)
    """feasible Sobol designs screened per proposal"""
    starts: int = Field(default=4, ge=1, le=MAX_SAMPLES)
    """best screened designs refined by gradient steps"""
    steps: int = Field(default=15, ge=0, le=MAX_STEPS)
    """gradient steps per refined start"""
    front_candidates: int = Field(default=2048, ge=16, le=MAX_SAMPLES)
    """feasible Sobol designs of the estimated front"""
    front_max: int = Field(default=25, ge=2, le=MAX_SAMPLES)
    """most points kept on the estimated front (evenly thinned)"""
