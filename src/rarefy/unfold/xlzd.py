"""XLZD's electron-recoil energy spectrum through NEST: an unfolding case with known truth.

Requires the ``nest`` extra (nestpy), imported only when events are simulated.

**Detector.** The XLZD-like TPC of :class:`rarefy.simulators.xlzd.XLZD` (NEST's
``LZ_WS2024`` detector with the design θ written into it, NEST's global ER yields) at a
nominal design θ: drift field 200 V/cm, extraction field 8.5 kV/cm, g1 0.12 phd/photon,
electron lifetime 8000 µs (inside the designer's ranges of
:func:`~rarefy.simulators.xlzd.xlzd_space`). Events sit uniformly in the fiducial
cylinder.

**Generation level**: the ER recoil energy E (keV, ``energy_kev``), on the support
[``e_low``, ``e_high``] = [2, 13] keV. The support is where the detector sees every energy:
NEST's S1 threshold together with the analysis window 3 ≤ S1c ≤ 80 phd keeps ≥ 70 % of ER
events between 2 and 13 keV at the nominal θ (≈ 60 % at 1.5 keV and at 13.5 keV, ≈ 0
below 1 keV and above 17 keV). Energies outside carry no information through the window,
so a truth there would be unidentifiable and only the prior would speak for it.

* *Simulation prior*: flat in E. The low-energy ER backgrounds of a xenon TPC
  (²¹⁴Pb and ⁸⁵Kr β decays, solar pp neutrinos scattering on electrons) are nearly flat
  over a few to tens of keV, which is why flat ER spectra are the standard calibration
  prior.
* *"Data" (the truth to recover)*: a mixture of a gently falling continuum (linear, its
  density at ``e_high`` ``tilt`` = 0.5 times that at ``e_low``) and, with fraction
  ``peak_fraction`` = 0.2, a peak at ``peak_kev`` = 5.2 keV (the energy of ¹²⁷Xe's L-shell
  capture line) of width ``peak_sigma`` = 0.6 keV, truncated to the support. The peak is
  broadened at generation level so that the binned truth is resolvable with 1 keV bins;
  it makes the truth differ from the prior in mean, width and shape.

Both densities have closed-form CDFs, so :meth:`XLZDCase.bin_probabilities` and
:meth:`XLZDCase.moments` are exact.

**Reconstructed level**: ``s1c_phd``, ``s2c_phd`` (corrected pulse areas, phd) and the
combined energy ``e_rec_kev`` = W · (S1c/g1 + S2c/g2) (keV). An event passes when it lies
inside the window (NEST's S1 and S2 thresholds included); failed events are NaN with a
false pass flag, and count in the efficiency.

Cost: NEST takes ≈ 15–60 µs per event, plus ≈ 0.1 s to set up the detector per call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from ..errors import InputError
from .base import Problem

__all__ = ["XLZDCase"]


@dataclass(frozen=True)
class XLZDCase:
    """The XLZD ER-spectrum unfolding case (see the module docstring); energies in keV, θ in the simulator's units."""

    drift_field: float = 200.0
    gas_field: float = 8.5
    g1: float = 0.12
    e_lifetime: float = 8000.0
    e_low: float = 2.0
    e_high: float = 13.0
    tilt: float = 0.5
    peak_kev: float = 5.2
    peak_sigma: float = 0.6
    peak_fraction: float = 0.2

    names = ("energy_kev",)
    rec_names = ("s1c_phd", "s2c_phd", "e_rec_kev")

    def __post_init__(self) -> None:
        if not 0 < self.e_low < self.e_high:
            raise InputError(f"xlzd case: need 0 < e_low < e_high (keV), got {self.e_low}, {self.e_high}",
                             column="e_low")
        if not self.tilt > 0:
            raise InputError(f"xlzd case: tilt must be > 0, got {self.tilt}", column="tilt")
        if not self.peak_sigma > 0:
            raise InputError(f"xlzd case: peak_sigma must be > 0 keV, got {self.peak_sigma}", column="peak_sigma")
        if not 0 <= self.peak_fraction <= 1:
            raise InputError(f"xlzd case: peak_fraction must be in [0, 1], got {self.peak_fraction}",
                             column="peak_fraction")

    @property
    def theta(self) -> dict[str, float]:
        """The design θ handed to NEST."""
        return {"drift_field": self.drift_field, "gas_field": self.gas_field, "g1": self.g1,
                "e_lifetime": self.e_lifetime}

    # ------------------------------------------------------------------ the truth, exactly
    def _slope(self) -> float:
        return (self.tilt - 1.0) / (self.e_high - self.e_low)       # density 1 + b (E − e_low)

    def _linear_cdf(self, e: np.ndarray) -> np.ndarray:
        length, b = self.e_high - self.e_low, self._slope()
        t = np.clip(np.asarray(e, dtype=float) - self.e_low, 0.0, length)
        return (t + 0.5 * b * t**2) / (length + 0.5 * b * length**2)

    def _peak_z(self, e: np.ndarray | float) -> np.ndarray:
        return (np.asarray(e, dtype=float) - self.peak_kev) / self.peak_sigma

    def _peak_cdf(self, e: np.ndarray) -> np.ndarray:
        lo, hi = norm.cdf(self._peak_z(self.e_low)), norm.cdf(self._peak_z(self.e_high))
        c = (norm.cdf(self._peak_z(np.clip(e, self.e_low, self.e_high))) - lo) / (hi - lo)
        return np.clip(c, 0.0, 1.0)

    def cdf(self, e: np.ndarray) -> np.ndarray:
        """The truth's cumulative distribution at energies ``e`` (keV)."""
        f = self.peak_fraction
        return (1 - f) * self._linear_cdf(e) + f * self._peak_cdf(e)

    def bin_probabilities(self, edges: np.ndarray) -> np.ndarray:
        """Exact truth probability of each energy bin of ``edges`` (keV)."""
        return np.diff(self.cdf(np.asarray(edges, dtype=float)))

    def prior_bin_probabilities(self, edges: np.ndarray) -> np.ndarray:
        """Exact probability of each bin under the flat simulation prior."""
        e = np.clip(np.asarray(edges, dtype=float), self.e_low, self.e_high)
        return np.diff(e) / (self.e_high - self.e_low)

    def moments(self) -> dict[str, float]:
        """The truth's mean and width (keV), exact."""
        length, b = self.e_high - self.e_low, self._slope()
        z = length + 0.5 * b * length**2
        m1 = self.e_low + (0.5 * length**2 + b * length**3 / 3) / z
        t2 = (length**3 / 3 + b * length**4 / 4) / z                     # E[(E − e_low)²]
        v_lin = t2 - (m1 - self.e_low) ** 2
        a, c = self._peak_z(self.e_low), self._peak_z(self.e_high)
        zn = norm.cdf(c) - norm.cdf(a)
        m_pk = self.peak_kev + self.peak_sigma * (norm.pdf(a) - norm.pdf(c)) / zn
        v_pk = self.peak_sigma**2 * (1 + (a * norm.pdf(a) - c * norm.pdf(c)) / zn
                                     - ((norm.pdf(a) - norm.pdf(c)) / zn) ** 2)
        f = self.peak_fraction
        mean = (1 - f) * m1 + f * m_pk
        second = (1 - f) * (v_lin + m1**2) + f * (v_pk + m_pk**2)
        return {"mean": float(mean), "width": float(math.sqrt(second - mean**2))}

    def default_edges(self, bins: int = 11) -> np.ndarray:
        """``bins`` equal bins over the support (11 bins of 1 keV by default)."""
        return np.linspace(self.e_low, self.e_high, bins + 1)

    # ------------------------------------------------------------------ sampling
    def sample_prior(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` energies (keV) from the flat simulation prior."""
        return self.e_low + (self.e_high - self.e_low) * rng.random(n)

    def sample_truth(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` energies (keV) from the truth (inverse CDF of each component)."""
        peak = rng.random(n) < self.peak_fraction
        u = rng.random(n)
        length, b = self.e_high - self.e_low, self._slope()
        z = length + 0.5 * b * length**2
        t = (np.sqrt(1.0 + 2.0 * b * u * z) - 1.0) / b if b != 0 else u * length
        lo, hi = norm.cdf(self._peak_z(self.e_low)), norm.cdf(self._peak_z(self.e_high))
        e_peak = self.peak_kev + self.peak_sigma * norm.ppf(lo + u * (hi - lo))
        return np.where(peak, np.clip(e_peak, self.e_low, self.e_high), self.e_low + t)

    def _detect(self, energies: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        from ..simulators.xlzd import XLZD

        return XLZD().er_events(self.theta, energies, seed)

    def problem(self, n_sim: int, n_data: int, seed: int) -> tuple[Problem, np.ndarray]:
        """A pseudo-experiment: ``n_sim`` simulated events (prior, passed or not) and ``n_data`` measured events
        (truth, passed) from ``seed``; returns the :class:`Problem` and the measured events' hidden energies."""
        rng = np.random.default_rng([int(seed), 29])
        e_sim = self.sample_prior(n_sim, rng)
        ev = self._detect(e_sim, int(rng.integers(2**62)))
        rec = np.column_stack([ev["s1c_phd"], ev["s2c_phd"], ev["energy_kev"]])
        xs, ys = [], []
        left, acc = n_data, max(float(ev["passed"].mean()), 0.01)
        for _ in range(50):
            if left <= 0:
                break
            m = int(left / acc * 1.1) + 64
            e = self.sample_truth(m, rng)
            d = self._detect(e, int(rng.integers(2**62)))
            acc = max(float(d["passed"].mean()), 0.01)
            ok = np.flatnonzero(d["passed"])[:left]
            xs.append(e[ok])
            ys.append(np.column_stack([d["s1c_phd"][ok], d["s2c_phd"][ok], d["energy_kev"][ok]]))
            left -= ok.size
        if left > 0:
            raise InputError(f"xlzd case: only {n_data - left} of {n_data} measured events passed the S1 window "
                             f"at θ = {self.theta}; the detector sees almost none of the spectrum")
        prob = Problem.build(self.names, self.rec_names, e_sim, rec, np.concatenate(ys), sim_pass=ev["passed"])
        return prob, np.concatenate(xs)
