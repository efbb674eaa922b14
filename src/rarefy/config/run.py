"""The whole run config: one typed section per stage, checked against each other once."""

from __future__ import annotations

from pydantic import Field, model_validator

from ..errors import InputError
from .base import MAX_SEED, ConfigModel
from .bench import BenchConfig
from .campaign import CampaignConfig
from .data import DataConfig, FidelityConfig
from .denoise import DenoiseConfig
from .generate import GenerateConfig
from .infer import InferConfig
from .loop import AcquisitionConfig, BaselineConfig, LoopConfig, ObjectiveConfig, OptimizeConfig, ParetoConfig
from .simulator import SimulatorConfig
from .space import SpaceConfig
from .surrogate import SurrogateConfig

__all__ = ["RunConfig"]


def _denoised_base(name: str) -> str | None:
    """``lf`` for a denoised fidelity ``lf-denoised`` (or the older ``lf-cnp``), else None (names:
    :mod:`rarefy.data.rundir`)."""
    for suffix in ("-denoised", "-cnp"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _check_known(key: str, fidelities: list[str], names: list[str]) -> None:
    """Raise when ``fidelities`` (listed under config key ``key``) are not all among ``names``."""
    unknown = [f for f in fidelities if f not in names]
    if unknown:
        raise ValueError(f"{key}: unknown fidelities {unknown}; defined fidelities: {names}")


class RunConfig(ConfigModel):
    """A whole run: design space, data, fidelities (low to high), target, surrogate, seed."""

    name: str = "run"
    """name of the run, shown in report titles"""
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    """random seed (sections without their own ``seed`` use it); the same seed gives the same results"""
    space: SpaceConfig
    """the design space: parameters, constraints and definitions"""
    data: DataConfig | None = None
    """input rate files and their column mapping"""
    fidelities: list[FidelityConfig]
    """the fidelities, ordered from lowest to highest"""
    target: str | None = None
    """the target fidelity, the one predicted and optimised (default: the last, highest one)"""
    surrogate: SurrogateConfig = Field(default_factory=SurrogateConfig)
    """the multi-fidelity surrogate"""
    cv_design_tolerance: float = Field(default=0.01, ge=0)
    """cross-validation holds out, with each target run, all runs whose design is within this distance (per
    coordinate, as a fraction of the parameter's range)"""
    simulator: SimulatorConfig | None = None
    """the simulator a campaign drives (needed by ``campaign`` and ``loop``)"""
    campaign: CampaignConfig | None = None
    """the simulation campaign (needs ``simulator``; the initial design of a ``loop``)"""
    denoise: DenoiseConfig | None = None
    """the event-level denoiser and its training"""
    generate: GenerateConfig | None = None
    """the conditional normalizing-flow event generator p(φ | θ) of ``rarefy generate train``"""
    infer: InferConfig | None = None
    """Bayesian inference of θ from an observed merger rate"""
    bench: BenchConfig | None = None
    """the backends ``rarefy bench`` trains and scores"""
    acquisition: AcquisitionConfig = Field(default_factory=AcquisitionConfig)
    """what to simulate next"""
    optimize: OptimizeConfig = Field(default_factory=OptimizeConfig)
    """the design optimisation"""
    baseline: BaselineConfig | None = None
    """the reference a design's reduction is measured against"""
    loop: LoopConfig | None = None
    """the closed loop of ``rarefy run`` (needs ``simulator`` and ``campaign``)"""
    objectives: list[ObjectiveConfig] = Field(default_factory=list)
    """the objectives of a multi-objective run (two or more, unique names; empty: a single-objective run)"""
    pareto: ParetoConfig = Field(default_factory=ParetoConfig)
    """multi-objective acquisition and front estimation (used with ``objectives``)"""

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
        # a denoised fidelity '<base>-denoised' is observed by simulating '<base>' runs
        scored = {b for b in map(_denoised_base, names) if b is not None}
        if self.campaign is not None:
            if self.simulator is None:
                raise ValueError("a 'campaign' needs a 'simulator'")
            for i, block in enumerate(self.campaign.runs):
                if block.fidelity not in names and block.fidelity not in scored:
                    raise ValueError(f"campaign.runs.{i}: unknown fidelity {block.fidelity!r}; defined fidelities: {names}")
        _check_known("acquisition.fidelities", self.acquisition.fidelities or [], names)
        _check_known("acquisition.events", list(self.acquisition.events), names)
        if self.denoise is not None:
            _check_known("denoise.fidelities", self.denoise.fidelities or [], names + sorted(scored))
            n_blocks = len(self.campaign.runs) if self.campaign is not None else 0
            bad = [b for b in self.denoise.test_blocks if not 0 <= b < n_blocks]
            if bad:
                raise ValueError(f"denoise.test_blocks: {bad} are not campaign.runs blocks (there are {n_blocks})")
        if self.generate is not None and self.generate.fidelity is not None:
            _check_known("generate.fidelity", [self.generate.fidelity], names + sorted(scored))
        if self.bench is not None:
            _check_known("bench.fidelities", self.bench.fidelities or [], names)
        if self.loop is not None and (self.simulator is None or self.campaign is None):
            raise ValueError("a 'loop' needs 'simulator' and 'campaign' sections (the campaign is the initial design)")
        return self

    @property
    def simulated_fidelities(self) -> list[FidelityConfig]:
        """The fidelities a campaign may simulate: the config's own, plus ``<base>`` for each denoised
        ``<base>-denoised`` fidelity whose base is not in the chain (raw ``k/n`` with count noise, the denoised
        fidelity's events, cost and unit): the denoiser is trained on and scores those runs."""
        names = self.fidelity_names
        out = list(self.fidelities)
        for f in self.fidelities:
            base = _denoised_base(f.name)
            if base is not None and base not in names:
                out.append(FidelityConfig(name=base, filter={"fidelity": base}, value="rate", value_unit=f.value_unit,
                                          noise={"counts": "k", "events": "n"}, events=f.events,
                                          cost_cpu_h=f.cost_cpu_h, cost_cpu_h_per_event=f.cost_cpu_h_per_event))
        return out

    @property
    def fidelity_names(self) -> list[str]:
        """The fidelity names, lowest to highest."""
        return [f.name for f in self.fidelities]

    def fidelity(self, name: str) -> FidelityConfig:
        """The section of fidelity ``name``; an unknown name raises :class:`InputError`."""
        for f in self.fidelities:
            if f.name == name:
                return f
        raise InputError(f"unknown fidelity {name!r}; defined fidelities: {self.fidelity_names}")

