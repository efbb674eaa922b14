"""Infer section: Bayesian inference of θ from an observed merger rate (priors, rate model, sampler)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from .base import MAX_SAMPLES, MAX_SEED, MAX_STEPS, ConfigModel

__all__ = ["PriorConfig", "ObservationConfig", "FullRateConfig", "InferConfig"]


class PriorConfig(ConfigModel):
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


class ObservationConfig(ConfigModel):
    """An observed local merger rate: median with asymmetric 1σ errors (Gpc⁻³ yr⁻¹; default GWTC-3)."""

    rate: float = 17.0
    plus: float = Field(default=10.0, gt=0)
    minus: float = Field(default=6.7, gt=0)


class FullRateConfig(ConfigModel):
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
    grid: int = Field(default=16, ge=2, le=MAX_SAMPLES)
    h0: float = Field(default=67.66, gt=0)
    omega_m: float = Field(default=0.3097, gt=0, lt=1)


#: the most samples (walkers x steps) of one chain, which emcee holds in memory
MAX_CHAIN = 10**9


class InferConfig(ConfigModel):
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
    walkers: int = Field(default=32, ge=4, le=MAX_SAMPLES)
    steps: int = Field(default=3000, ge=10, le=MAX_STEPS)
    burn: int = Field(default=1000, ge=0)
    thin: int = Field(default=1, ge=1, le=MAX_STEPS)
    moves: Literal["de", "stretch"] = Field(
        default="de", description="emcee proposals: 'de' (differential evolution 0.8 + DE snooker 0.2; "
                                  "autocorrelation times ~3x shorter on the BBH posterior) or 'stretch' (emcee's default)")
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)

    @model_validator(mode="after")
    def _burn(self) -> "InferConfig":
        if self.walkers * self.steps > MAX_CHAIN:
            raise ValueError(f"walkers x steps = {self.walkers * self.steps:.3g} exceeds {MAX_CHAIN:.0e} samples "
                             "(the chain is held in memory)")
        if self.burn >= self.steps:
            raise ValueError(f"burn ({self.burn}) must be smaller than steps ({self.steps})")
        if self.rate_model == "full" and self.full is None:
            raise ValueError("rate_model: full needs a 'full' section (at least full.delays)")
        return self
