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
    """``uniform`` on [low, high] or ``normal`` (mu, sigma) truncated to the bounds"""
    low: float | None = None
    """lower bound, in the parameter's unit (default: the space's bound)"""
    high: float | None = None
    """upper bound, in the parameter's unit (default: the space's bound)"""
    mu: float | None = None
    """normal: mean, in the parameter's unit"""
    sigma: float | None = Field(default=None, gt=0)
    """normal: standard deviation, in the parameter's unit"""

    @model_validator(mode="after")
    def _normal(self) -> "PriorConfig":
        if self.kind == "normal" and (self.mu is None or self.sigma is None):
            raise ValueError("a normal prior needs 'mu' and 'sigma'")
        return self


class ObservationConfig(ConfigModel):
    """An observed local merger rate: median with asymmetric 1σ errors (Gpc⁻³ yr⁻¹; default GWTC-3)."""

    rate: float = 17.0
    """median observed local merger rate, Gpc⁻³ yr⁻¹"""
    plus: float = Field(default=10.0, gt=0)
    """upper 1σ error of ``rate``, Gpc⁻³ yr⁻¹"""
    minus: float = Field(default=6.7, gt=0)
    """lower 1σ error of ``rate``, Gpc⁻³ yr⁻¹"""


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
    """Parquet/CSV file of the delay times of simulated mergers, relative to the config"""
    delay_column: str = "t_merge_myr"
    """column of ``delays`` holding the delay times, Myr"""
    z_param: str = "log10_z"
    """θ name of log10 Z, the median metallicity of star formation today"""
    z_spread_dex: float = Field(default=0.4, ge=0)
    """spread σ_Z of log10 Z at fixed redshift, dex (0: a single metallicity)"""
    z_evolution: bool = True
    """apply the Madau & Fragos (2017) decline of the median metallicity with redshift"""
    grid: int = Field(default=16, ge=2, le=MAX_SAMPLES)
    """cells of the log10 Z integral"""
    h0: float = Field(default=67.66, gt=0)
    """Hubble constant of the flat ΛCDM cosmology, km/s/Mpc"""
    omega_m: float = Field(default=0.3097, gt=0, lt=1)
    """matter density Ω_m of the flat ΛCDM cosmology"""


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
    """a run directory written by ``rarefy fit``, relative to the config (default: fit the config's own surrogate
    on its data)"""
    fidelity: str | None = None
    """the surrogate output used (default: the target)"""
    rate_model: Literal["simple", "full"] = "simple"
    """``simple`` (R = ε · sfrd0) or ``full`` (integrated over formation redshift and metallicity)"""
    full: FullRateConfig | None = None
    """settings of ``rate_model: full``"""
    msun_per_event: float = Field(gt=0)
    """star-forming mass represented per simulated event, M☉"""
    sfrd0: float = Field(default=0.015, gt=0)
    """simple: star-formation rate density at z = 0, M☉ yr⁻¹ Mpc⁻³"""
    observation: ObservationConfig = Field(default_factory=ObservationConfig)
    """the observed local merger rate"""
    priors: dict[str, PriorConfig] = Field(default_factory=dict)
    """prior of each parameter, by name (default: uniform on the space's bounds)"""
    marginalise: bool = True
    """integrate the likelihood over the surrogate's predictive std"""
    walkers: int = Field(default=32, ge=4, le=MAX_SAMPLES)
    """emcee walkers"""
    steps: int = Field(default=3000, ge=10, le=MAX_STEPS)
    """steps of each walker"""
    burn: int = Field(default=1000, ge=0)
    """steps discarded as burn-in"""
    thin: int = Field(default=1, ge=1, le=MAX_STEPS)
    """keep every ``thin``-th step"""
    moves: Literal["de", "stretch"] = "de"
    """emcee proposals: 'de' (differential evolution 0.8 + DE snooker 0.2; autocorrelation times ~3x shorter on
    the BBH posterior) or 'stretch' (emcee's default)"""
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    """random seed (default: the run config's ``seed``)"""

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
