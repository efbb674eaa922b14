"""The observed merger rate as an asymmetric likelihood, marginalised over the surrogate's uncertainty.

The observation is a median R_obs with asymmetric 1σ errors (GWTC-3: 17 +10 / −6.7
Gpc⁻³ yr⁻¹). As a function of the true rate R it is a split normal: width ``plus``
for R > R_obs and ``minus`` below, peak at R_obs, normalised as a density in R_obs.
The surrogate predicts R ~ N(μ_R, s_R²); the marginal likelihood
∫ L(R) N(R; μ_R, s_R²) dR has a closed form (one Gaussian product per half-line),
computed in :func:`marginal_loglike`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr

__all__ = ["RateLikelihood", "split_normal_logpdf", "marginal_loglike"]


def split_normal_logpdf(r: np.ndarray, obs: float, plus: float, minus: float) -> np.ndarray:
    """log L(R): width ``plus`` for R > obs, ``minus`` for R < obs (normalised: sqrt(2/π)/(plus+minus))."""
    r = np.asarray(r, dtype=float)
    width = np.where(r >= obs, plus, minus)
    return math.log(math.sqrt(2 / math.pi) / (plus + minus)) - 0.5 * ((r - obs) / width) ** 2


def _half(mu: np.ndarray, s2: np.ndarray, obs: float, w: float, upper: bool) -> np.ndarray:
    """log ∫_{half-line} exp(−(R−obs)²/(2w²)) N(R; μ, s²) dR (lower half R < obs or upper R > obs)."""
    tot = s2 + w**2
    log_gauss = -0.5 * np.log(2 * np.pi * tot) - 0.5 * (mu - obs) ** 2 / tot + 0.5 * np.log(2 * np.pi * w**2)
    v = 1.0 / (1.0 / s2 + 1.0 / w**2)
    c = v * (mu / s2 + obs / w**2)
    arg = (c - obs) / np.sqrt(v)
    return log_gauss + (log_ndtr(arg) if upper else log_ndtr(-arg))


def marginal_loglike(mu: np.ndarray, sd: np.ndarray, obs: float, plus: float, minus: float) -> np.ndarray:
    """log ∫ L(R) N(R; μ, sd²) dR for the split-normal L of :func:`split_normal_logpdf`."""
    mu = np.asarray(mu, dtype=float)
    s2 = np.maximum(np.asarray(sd, dtype=float) ** 2, 1e-300 + 1e-12 * (plus + minus) ** 2)
    norm = math.log(math.sqrt(2 / math.pi) / (plus + minus))
    return norm + np.logaddexp(_half(mu, s2, obs, minus, upper=False), _half(mu, s2, obs, plus, upper=True))


@dataclass(frozen=True)
class RateLikelihood:
    """Observed local rate ``obs`` (+``plus`` / −``minus``), all in Gpc⁻³ yr⁻¹.

    ``marginalise``: integrate over the surrogate's predictive std (default); off, the
    surrogate mean is used as if exact.
    """

    obs: float = 17.0
    plus: float = 10.0
    minus: float = 6.7
    marginalise: bool = True

    def __post_init__(self) -> None:
        if not (self.plus > 0 and self.minus > 0):
            raise ValueError("the observation's errors must be positive")

    def loglike(self, r_mean: np.ndarray, r_std: np.ndarray) -> np.ndarray:
        """Log-likelihood of predicted rates with mean ``r_mean`` and std ``r_std`` (Gpc⁻³ yr⁻¹)."""
        if self.marginalise:
            return marginal_loglike(r_mean, r_std, self.obs, self.plus, self.minus)
        return split_normal_logpdf(r_mean, self.obs, self.plus, self.minus)

    def sample_observation(self, r_true: float, rng: np.random.Generator) -> float:
        """Draw an observed median given the true rate (the generative model of this likelihood)."""
        # obs − R is split normal: width `plus` below 0 (R above obs), `minus` above
        if rng.random() < self.plus / (self.plus + self.minus):
            return float(r_true - abs(rng.normal(0, self.plus)))
        return float(r_true + abs(rng.normal(0, self.minus)))
