"""Predicted local merger rate R(θ) from the BBH formation efficiency ε(θ).

The surrogate predicts the rate per evolved massive binary (k/n); the formation efficiency
is ε = rate / m_b with m_b the star-forming mass (M☉) represented per evolved binary
(:meth:`rarefy.simulators.cosmic.CosmicBBH.msun_per_binary`).

Both models write R as a weighted sum of surrogate predictions at quadrature points,
``R(θ) = Σ_g w_g(θ) · rate(x_g(θ)) / m_b × 1e9`` (R in Gpc⁻³ yr⁻¹, w in M☉ yr⁻¹ Mpc⁻³),
which :meth:`points` returns; the caller turns the surrogate's joint predictive mean and
covariance at the x_g into the mean and std of R (it is linear in the rates).

**Simplified** (:class:`SimpleRateModel`): R = ε(θ) × SFRD(z = 0), one point, w = sfrd0
(default 0.015 M☉ yr⁻¹ Mpc⁻³).

**Full** (:class:`FullRateModel`): mergers today of binaries formed at every redshift,
with the metallicity spread of star formation::

    R(θ) = ∫ dt_d p(t_d) · ψ(z(t_d)) · ∫ d log10 Z  N(log10 Z; μ(z(t_d)), σ_Z) · ε(log10 Z, α_CE, σ_BH, σ_NS)

- t_d: delay time from star formation to merger; a binary merging today with delay t_d
  formed at lookback time t_d, i.e. redshift z(t_d) (flat ΛCDM,
  :class:`rarefy.inference.cosmology.FlatLCDM`). p(t_d) is the empirical delay-time
  distribution of the simulated mergers (``t_merge_myr`` of the event shards), so the
  integral over formation redshift is an average over those delay times. Using one
  pooled p(t_d) for all θ assumes the delay times depend less on θ than ε does (the
  simulated mergers are too few to resolve p(t_d | θ)).
- ψ(z): the Madau & Dickinson (2014) SFRD.
- Metallicity: log10 Z of star formation at redshift z is normal with median
  μ(z) = log10_z(θ) + Δ(z), Δ(z) = −0.074 z^1.34 (Madau & Fragos 2017), and spread σ_Z
  (``z_spread_dex``). θ's metallicity thus becomes the *median metallicity of star
  formation today*. The integral over log10 Z uses a fixed grid of ``grid`` cells over
  the surrogate's metallicity range, each weighted by the normal probability of its cell;
  the tails beyond the range (where COSMIC/SSE cannot go) are lumped into the end cells.
  With σ_Z = 0 the metallicity is evaluated at μ(z) exactly (one point per delay time).

Check by hand: with every delay time equal to τ and σ_Z = 0 and no metallicity evolution,
R = ε(θ) · ψ(z(τ)); for τ → 0 that is the simplified model with sfrd0 = ψ(0) = 0.01496.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.special import ndtr

from .cosmology import FlatLCDM, madau_dickinson_sfrd, madau_fragos_dlogz

__all__ = ["SimpleRateModel", "FullRateModel", "MPC3_PER_GPC3"]

MPC3_PER_GPC3 = 1e9


@dataclass(frozen=True)
class SimpleRateModel:
    """R [Gpc⁻³ yr⁻¹] = rate / msun_per_event [M☉⁻¹] × sfrd0 [M☉ yr⁻¹ Mpc⁻³] × 1e9 [Mpc³ Gpc⁻³]."""

    msun_per_event: float
    sfrd0: float = 0.015

    def __post_init__(self) -> None:
        if not (self.msun_per_event > 0 and self.sfrd0 > 0):
            raise ValueError("msun_per_event and sfrd0 must be positive")

    @property
    def scale(self) -> float:
        """Factor turning a rate per event into R in Gpc⁻³ yr⁻¹."""
        return self.sfrd0 * MPC3_PER_GPC3 / self.msun_per_event

    def local_rate(self, rate_mean: np.ndarray, rate_std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of R from the surrogate's mean and std of the rate per event (linear map)."""
        return np.asarray(rate_mean) * self.scale, np.asarray(rate_std) * self.scale

    def points(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature points (W, 1, d) and weights (W, 1) in Gpc⁻³ yr⁻¹ per unit rate: R = Σ w · rate(x)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        return theta[:, None, :], np.full((len(theta), 1), self.scale)


@dataclass(frozen=True)
class FullRateModel:
    """Delay-time and metallicity-spread integral of ε over the cosmic star-formation history.

    Parameters
    ----------
    msun_per_event:
        Star-forming mass (M☉) represented per simulated event.
    delays_myr:
        Delay times (Myr, formation to merger) of simulated mergers: the empirical p(t_d).
    names:
        θ names, in the surrogate's order; ``z_param`` is the log10-metallicity one.
    z_bounds:
        (low, high) of log10 Z the surrogate covers.
    z_spread_dex:
        σ_Z, spread of log10 Z at fixed redshift (dex); 0 for a single metallicity.
    z_evolution:
        Shift the median metallicity with redshift by Madau & Fragos (2017).
    grid:
        Cells of the log10 Z integral (σ_Z > 0).
    cosmology:
        :class:`FlatLCDM` for z(t_d).
    """

    msun_per_event: float
    delays_myr: Sequence[float]
    names: Sequence[str]
    z_bounds: tuple[float, float]
    z_param: str = "log10_z"
    z_spread_dex: float = 0.4
    z_evolution: bool = True
    grid: int = 16
    cosmology: FlatLCDM = field(default_factory=FlatLCDM)

    def __post_init__(self) -> None:
        d = np.asarray(self.delays_myr, dtype=float)
        if self.msun_per_event <= 0:
            raise ValueError("msun_per_event must be positive")
        if d.size == 0 or not np.all(np.isfinite(d)) or np.any(d < 0):
            raise ValueError("delays_myr must be a non-empty list of finite delay times >= 0 (Myr)")
        if self.z_param not in self.names:
            raise ValueError(f"the metallicity parameter {self.z_param!r} is not among {list(self.names)}")
        if self.z_spread_dex < 0 or self.grid < 2 or not self.z_bounds[0] < self.z_bounds[1]:
            raise ValueError("need z_spread_dex >= 0, grid >= 2 and z_bounds low < high")

    # delay-time summaries (cached on first use: frozen dataclass, so via object.__setattr__)
    def _delay_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """(ψ(z(t_d)), Δ(z(t_d))) per delay time; delays beyond the age of the universe get ψ = 0."""
        cached = getattr(self, "_cache", None)
        if cached is None:
            z = self.cosmology.z_at_lookback(np.asarray(self.delays_myr, dtype=float))
            psi = madau_dickinson_sfrd(z)
            dz = np.where(np.isfinite(z), madau_fragos_dlogz(np.where(np.isfinite(z), z, 0.0)), 0.0)
            if not self.z_evolution:
                dz = np.zeros_like(dz)
            cached = (psi, dz)
            object.__setattr__(self, "_cache", cached)
        return cached

    @property
    def scale(self) -> float:
        """1e9 / msun_per_event: Gpc⁻³ per Mpc⁻³ over M☉ per event."""
        return MPC3_PER_GPC3 / self.msun_per_event

    def points(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature points (W, G, d) and weights (W, G): R(θ_w) = Σ_g w_wg · rate(x_wg) in Gpc⁻³ yr⁻¹."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        W, d = theta.shape
        j = list(self.names).index(self.z_param)
        psi, dz = self._delay_terms()
        nd = len(psi)
        lo, hi = self.z_bounds
        mu = theta[:, j][:, None] + dz[None, :]                            # (W, nd) median log10 Z
        if self.z_spread_dex == 0:
            x = np.repeat(theta[:, None, :], nd, axis=1)
            x[:, :, j] = np.clip(mu, lo, hi)
            return x, np.broadcast_to(psi[None, :] / nd * self.scale, (W, nd)).copy()
        edges = np.linspace(lo, hi, self.grid + 1)
        centres = 0.5 * (edges[:-1] + edges[1:])
        cdf = ndtr((edges[None, None, :] - mu[:, :, None]) / self.z_spread_dex)   # (W, nd, G+1)
        cdf[:, :, 0], cdf[:, :, -1] = 0.0, 1.0                             # tails into the end cells
        prob = np.diff(cdf, axis=-1)                                      # (W, nd, G)
        w = np.einsum("d,wdg->wg", psi / nd, prob) * self.scale
        x = np.repeat(theta[:, None, :], self.grid, axis=1)
        x[:, :, j] = centres[None, :]
        return x, w

    def sfrd_weight(self) -> float:
        """Σ_g w_g / scale for any θ: ⟨ψ(z(t_d))⟩ over the delay times (M☉ yr⁻¹ Mpc⁻³)."""
        psi, _ = self._delay_terms()
        return float(psi.mean())
