"""Flat ΛCDM lookback time and its inverse in closed form, and the Madau–Dickinson (2014) SFRD.

For a flat universe with matter and a cosmological constant only (radiation neglected:
a < 0.1% effect on lookback times below z ≈ 10), the age at redshift z is

    t(z) = 2 / (3 H0 √Ω_Λ) · asinh( √(Ω_Λ/Ω_m) · (1+z)^(−3/2) ),

so the lookback time is t(0) − t(z) and z(t_L) follows by inverting the asinh. This is
the integral ∫ dz / ((1+z) H(z)) done analytically, so no quadrature and no astropy
dependency is needed (tests compare it with astropy's FlatLambdaCDM where installed).
Defaults are Planck 2018 (H0 = 67.66 km/s/Mpc, Ω_m = 0.3097).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["FlatLCDM", "madau_dickinson_sfrd", "madau_fragos_dlogz"]

KM_S_MPC_IN_INV_MYR = 1.0 / 977_792.2   # 1 km/s/Mpc in 1/Myr (977.792 Gyr = 1 / (1 km/s/Mpc))


@dataclass(frozen=True)
class FlatLCDM:
    """Flat ΛCDM: ``h0`` in km/s/Mpc, ``omega_m`` the matter density today (Ω_Λ = 1 − Ω_m)."""

    h0: float = 67.66
    omega_m: float = 0.3097

    def __post_init__(self) -> None:
        if not (self.h0 > 0 and 0 < self.omega_m < 1):
            raise ValueError(f"need h0 > 0 and 0 < omega_m < 1, got h0={self.h0}, omega_m={self.omega_m}")

    @property
    def _k(self) -> float:
        """3 H0 √Ω_Λ / 2 in 1/Myr."""
        return 1.5 * self.h0 * KM_S_MPC_IN_INV_MYR * math.sqrt(1.0 - self.omega_m)

    @property
    def _r(self) -> float:
        return math.sqrt((1.0 - self.omega_m) / self.omega_m)

    def age_myr(self, z: np.ndarray | float) -> np.ndarray:
        """Age of the universe (Myr) at redshift ``z``."""
        z = np.asarray(z, dtype=float)
        return np.arcsinh(self._r * (1.0 + z) ** -1.5) / self._k

    def lookback_myr(self, z: np.ndarray | float) -> np.ndarray:
        """Lookback time (Myr) to redshift ``z``."""
        return self.age_myr(0.0) - self.age_myr(z)

    def z_at_lookback(self, t_myr: np.ndarray | float) -> np.ndarray:
        """Redshift at lookback time ``t_myr`` (Myr); ``inf`` at or beyond the age of the universe."""
        t = np.asarray(t_myr, dtype=float)
        age = self.age_myr(0.0) - t
        out = np.full(t.shape, np.inf)
        ok = age > 0
        out[ok] = (np.sinh(self._k * age[ok]) / self._r) ** (-2.0 / 3.0) - 1.0
        return out


def madau_dickinson_sfrd(z: np.ndarray | float) -> np.ndarray:
    """Cosmic star-formation rate density ψ(z) in M☉ yr⁻¹ Mpc⁻³ (Madau & Dickinson 2014, eq. 15).

    ψ(z) = 0.015 (1+z)^2.7 / (1 + ((1+z)/2.9)^5.6); 0 at z = ∞.
    """
    z = np.asarray(z, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        out = 0.015 * (1.0 + z) ** 2.7 / (1.0 + ((1.0 + z) / 2.9) ** 5.6)
    return np.where(np.isfinite(z), out, 0.0)


def madau_fragos_dlogz(z: np.ndarray | float) -> np.ndarray:
    """Change of the mean log10 metallicity since z = 0 (dex): −0.074 z^1.34 (Madau & Fragos 2017)."""
    z = np.asarray(z, dtype=float)
    return -0.074 * np.power(np.maximum(z, 0.0), 1.34)
