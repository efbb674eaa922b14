"""A Gaussian unfolding toy with known truth: smearing, an efficiency, and a prior unlike the truth.

Generation level: x ~ N(μ, σ) for the data (the truth) and x ~ N(μ₀, σ₀) for the
simulation (the prior). The detector keeps an event with probability

    ε(x) = ε_lo + (ε_hi − ε_lo) · sigmoid((x − x_ε) / s_ε)

and reconstructs y = x + N(0, σ_s). Everything is in the same arbitrary unit ("a.u."),
so the truth's mean and width are the figures to recover. The exact truth probability of
a bin is Φ((b − μ)/σ) − Φ((a − μ)/σ), with no sampling noise: per-bin coverage is
measured against the distribution, not against one draw of it.

Defaults (truth N(1.0, 1.2), prior N(0.5, 1.0), σ_s = 0.5, ε from 0.5 to 0.9 around
x = 0) make the prior differ from the truth in both mean and width, so a method that
leans on the prior shows it, and keep ε ≥ 0.5 everywhere so the truth is identifiable
in every bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from scipy.stats import norm

from .base import Problem

__all__ = ["GaussianToy"]


@dataclass(frozen=True)
class GaussianToy:
    """Truth N(``mu``, ``sigma``), prior N(``prior_mu``, ``prior_sigma``), Gaussian smearing ``smear``, and a
    logistic efficiency from ``eff_low`` to ``eff_high`` centred at ``eff_center`` with scale ``eff_scale``
    (all lengths in the toy's unit)."""

    mu: float = 1.0
    sigma: float = 1.2
    prior_mu: float = 0.5
    prior_sigma: float = 1.0
    smear: float = 0.5
    eff_low: float = 0.5
    eff_high: float = 0.9
    eff_center: float = 0.0
    eff_scale: float = 1.0

    names = ("x",)
    rec_names = ("y",)

    def efficiency(self, x: np.ndarray) -> np.ndarray:
        """ε(x): the probability that an event at generation-level ``x`` is reconstructed."""
        return self.eff_low + (self.eff_high - self.eff_low) * expit((np.asarray(x) - self.eff_center) / self.eff_scale)

    def _fold(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        passed = rng.random(x.shape[0]) < self.efficiency(x)
        y = x + self.smear * rng.standard_normal(x.shape[0])
        return y, passed

    def simulate(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` prior events: x, y (NaN where lost) and the pass flag."""
        x = self.prior_mu + self.prior_sigma * rng.standard_normal(n)
        y, passed = self._fold(x, rng)
        y[~passed] = np.nan
        return x, y, passed

    def sample_truth(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws of x from the truth N(μ, σ), before the efficiency (the distribution unfolding recovers)."""
        return self.mu + self.sigma * rng.standard_normal(n)

    def measure(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` *measured* events (after efficiency) of the truth: their y and their hidden x."""
        xs, ys = [], []
        left = n
        while left > 0:
            m = int(left / (0.5 * (self.eff_low + self.eff_high))) + 64
            x = self.mu + self.sigma * rng.standard_normal(m)
            y, passed = self._fold(x, rng)
            xs.append(x[passed][:left])
            ys.append(y[passed][:left])
            left -= xs[-1].shape[0]
        return np.concatenate(ys), np.concatenate(xs)

    def problem(self, n_sim: int, n_data: int, seed: int) -> tuple[Problem, np.ndarray]:
        """A pseudo-experiment: ``n_sim`` simulated and ``n_data`` measured events from ``seed``; returns the
        :class:`Problem` and the measured events' hidden generation-level x."""
        rng = np.random.default_rng([int(seed), 23])
        x, y, passed = self.simulate(n_sim, rng)
        y_data, x_data = self.measure(n_data, rng)
        prob = Problem.build(self.names, self.rec_names, x, y, y_data, sim_pass=passed)
        return prob, x_data

    def bin_probabilities(self, edges: np.ndarray) -> np.ndarray:
        """Exact truth probability of each bin of ``edges``."""
        return np.diff(norm.cdf((np.asarray(edges, dtype=float) - self.mu) / self.sigma))

    def moments(self) -> dict[str, float]:
        """The truth's mean and width."""
        return {"mean": float(self.mu), "width": float(self.sigma)}

    def default_edges(self, bins: int = 20) -> np.ndarray:
        """``bins`` equal bins over μ ± 3σ of the truth."""
        return np.linspace(self.mu - 3 * self.sigma, self.mu + 3 * self.sigma, bins + 1)
