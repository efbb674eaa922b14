"""Predicted local merger rate R(θ) from the BBH formation efficiency ε(θ).

The surrogate predicts the rate per evolved massive binary (k/n); the formation efficiency
is ε = rate / m_b with m_b the star-forming mass (M☉) represented per evolved binary
(:meth:`rarefy.simulators.cosmic.CosmicBBH.msun_per_binary`).

**Simplified model** (the one implemented): R = ε × SFRD(z = 0), with SFRD(0) in
M☉ yr⁻¹ Mpc⁻³ (default 0.015, Madau & Dickinson 2014); R in Gpc⁻³ yr⁻¹ (× 1e9).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SimpleRateModel", "MPC3_PER_GPC3"]

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
