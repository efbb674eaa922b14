"""A synthetic bump hunt with known densities, for weakly supervised anomaly detection.

Events have a *resonant feature* ``m`` (a mass, in arbitrary mass units "mu", think TeV)
and ``d`` auxiliary features ``x`` (2 to 4, dimensionless). The model is

* background mass: a falling exponential on [``m_lo``, ``m_hi``],
  ``p_b(m) = exp(-m/τ) / (τ (exp(-m_lo/τ) - exp(-m_hi/τ)))``;
* background features, correlated with m: a Gaussian whose mean moves and whose width
  grows with m, ``x | m ~ N(μ_b(m), s(m)² C)`` with ``μ_b(m) = a (m - m_ref)``,
  ``s(m) = 1 + b (m - m_ref)`` and a fixed correlation matrix ``C``. A method that
  ignores the m-dependence (a sideband that stands in for the signal region as it is)
  sees a shifted, wider background;
* signal mass: narrow, ``m ~ N(m0, w²)`` truncated to [``m_lo``, ``m_hi``];
* signal features, localised and independent of m: ``x ~ N(μ_s, σ_s² I)``.

``signal_fraction`` f is the number of signal events over the number of background
events in the whole m range (the LHCO convention S/B). The **signal region** (SR) is the
m window [``sr_lo``, ``sr_hi``], the **sidebands** (SB) the rest of [``m_lo``, ``m_hi``].

All densities are exact (:meth:`BumpHunt.log_p_bkg_m` and friends), so the optimal
classifier is known. A classifier that sees only x in the SR is at best the likelihood
ratio ``p_s(x | SR) / p_b(x | SR)``, where ``p_s(x | SR) = p_s(x)`` (signal x does not
depend on m) and ``p_b(x | SR) = ∫_SR p_b(x | m) p_b(m) dm / P_b(SR)``, computed by
Gauss–Legendre quadrature (:meth:`BumpHunt.log_lr_sr`). Its SIC is the best any x-only
method can reach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import os

import numpy as np

from ..errors import InputError

__all__ = ["BumpHunt", "Events", "write_example_events"]

_A = (0.6, -0.4, 0.3, 0.2)          # slope of the background mean per unit m
_MU_S = (1.0, -0.8, 0.7, -0.5)      # signal centre in x
_CORR = np.array([[1.0, 0.5, 0.0, 0.2],
                  [0.5, 1.0, 0.3, 0.0],
                  [0.0, 0.3, 1.0, 0.1],
                  [0.2, 0.0, 0.1, 1.0]])


@dataclass
class Events:
    """Events: masses ``m`` (n,), features ``x`` (n, d) and truth labels ``y`` (n,; 1 signal, 0 background)."""

    m: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.m)

    def select(self, mask: np.ndarray) -> "Events":
        """The events where ``mask`` holds."""
        return Events(self.m[mask], self.x[mask], self.y[mask])


@dataclass(frozen=True)
class BumpHunt:
    """The synthetic bump hunt of the module docstring; all masses in mass units (mu).

    Parameters
    ----------
    n_features:
        Number of x features d (2 to 4).
    m_lo, m_hi:
        Range of m.
    tau:
        Decay length of the background mass spectrum.
    m0, width:
        Signal mass peak and Gaussian width.
    sr:
        Signal-region window (lo, hi) in m.
    m_ref, mean_slope, scale_slope:
        Background x: mean ``mean_slope · a · (m - m_ref)`` and width ``1 + scale_slope (m - m_ref)``.
    signal_sigma:
        Width of the signal in each x feature.
    """

    n_features: int = 3
    m_lo: float = 2.0
    m_hi: float = 6.0
    tau: float = 1.5
    m0: float = 3.5
    width: float = 0.1
    sr: tuple[float, float] = (3.3, 3.7)
    m_ref: float = 3.5
    mean_slope: float = 2.0
    scale_slope: float = 0.3
    signal_sigma: float = 0.5
    _chol: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 2 <= self.n_features <= 4:
            raise InputError(f"n_features must be 2 to 4, got {self.n_features}")
        if not self.m_lo < self.m_hi:
            raise InputError(f"m range must have m_lo < m_hi, got [{self.m_lo}, {self.m_hi}]")
        if not self.m_lo < self.sr[0] < self.sr[1] < self.m_hi:
            raise InputError(f"signal region {list(self.sr)} must lie inside the m range [{self.m_lo}, {self.m_hi}]")
        if min(self.tau, self.width, self.signal_sigma) <= 0:
            raise InputError("tau, width and signal_sigma must be > 0")
        if min(self.scale(np.array([self.m_lo, self.m_hi]))) <= 0:
            raise InputError(f"scale_slope {self.scale_slope} makes the background width <= 0 inside the m range")
        d = self.n_features
        object.__setattr__(self, "_chol", np.linalg.cholesky(_CORR[:d, :d]))

    # ------------------------------------------------------------------ pieces
    @property
    def a(self) -> np.ndarray:
        """Background mean slope vector (per mass unit)."""
        return self.mean_slope * np.asarray(_A[: self.n_features])

    @property
    def mu_s(self) -> np.ndarray:
        """Signal centre in x."""
        return np.asarray(_MU_S[: self.n_features])

    def scale(self, m: np.ndarray) -> np.ndarray:
        """Background width factor s(m) = 1 + scale_slope (m - m_ref)."""
        return 1.0 + self.scale_slope * (np.asarray(m, np.float64) - self.m_ref)

    def in_sr(self, m: np.ndarray) -> np.ndarray:
        """True where m lies in the signal region [sr_lo, sr_hi)."""
        m = np.asarray(m)
        return (m >= self.sr[0]) & (m < self.sr[1])

    # -------------------------------------------------------------- densities
    def _exp_cdf(self, m: np.ndarray) -> np.ndarray:
        t = self.tau
        return (np.exp(-self.m_lo / t) - np.exp(-np.asarray(m, np.float64) / t)) / (
            np.exp(-self.m_lo / t) - np.exp(-self.m_hi / t))

    def _sig_z(self) -> float:
        s2 = self.width * math.sqrt(2.0)
        return 0.5 * (math.erf((self.m_hi - self.m0) / s2) - math.erf((self.m_lo - self.m0) / s2))

    def log_p_bkg_m(self, m: np.ndarray) -> np.ndarray:
        """log p_b(m), per mass unit (−inf outside [m_lo, m_hi])."""
        m = np.asarray(m, np.float64)
        t = self.tau
        norm = t * (np.exp(-self.m_lo / t) - np.exp(-self.m_hi / t))
        out = -m / t - math.log(norm)
        return np.where((m >= self.m_lo) & (m <= self.m_hi), out, -np.inf)

    def log_p_sig_m(self, m: np.ndarray) -> np.ndarray:
        """log p_s(m), the truncated Gaussian peak, per mass unit."""
        m = np.asarray(m, np.float64)
        out = -0.5 * ((m - self.m0) / self.width) ** 2 - math.log(self.width * math.sqrt(2 * math.pi) * self._sig_z())
        return np.where((m >= self.m_lo) & (m <= self.m_hi), out, -np.inf)

    def log_p_bkg_x(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """log p_b(x | m): Gaussian N(a (m - m_ref), s(m)² C)."""
        x = np.asarray(x, np.float64)
        m = np.asarray(m, np.float64)
        s = self.scale(m)[:, None]
        r = (x - self.a[None, :] * (m[:, None] - self.m_ref)) / s
        z = np.linalg.solve(self._chol, r.T).T
        d = self.n_features
        logdet = 2 * np.log(np.diag(self._chol)).sum() + 2 * d * np.log(s[:, 0])
        return -0.5 * (z ** 2).sum(1) - 0.5 * logdet - 0.5 * d * math.log(2 * math.pi)

    def log_p_sig_x(self, x: np.ndarray, m: np.ndarray | None = None) -> np.ndarray:
        """log p_s(x | m) = log N(x; μ_s, σ_s² I) (independent of m)."""
        x = np.asarray(x, np.float64)
        d = self.n_features
        r = (x - self.mu_s[None, :]) / self.signal_sigma
        return -0.5 * (r ** 2).sum(1) - d * math.log(self.signal_sigma) - 0.5 * d * math.log(2 * math.pi)

    def p_bkg_sr(self) -> float:
        """P_b(SR): the background probability of the signal region."""
        return float(self._exp_cdf(self.sr[1]) - self._exp_cdf(self.sr[0]))

    def p_sig_sr(self) -> float:
        """P_s(SR): the signal probability of the signal region."""
        s2 = self.width * math.sqrt(2.0)
        return 0.5 * (math.erf((self.sr[1] - self.m0) / s2) - math.erf((self.sr[0] - self.m0) / s2)) / self._sig_z()

    def log_lr_sr(self, x: np.ndarray, nodes: int = 48) -> np.ndarray:
        """Optimal x-only score in the SR: log p_s(x | SR) − log p_b(x | SR) (quadrature over m)."""
        x = np.asarray(x, np.float64)
        t, w = np.polynomial.legendre.leggauss(nodes)
        lo, hi = self.sr
        ms = 0.5 * (hi - lo) * t + 0.5 * (hi + lo)
        lw = np.log(0.5 * (hi - lo) * w) + self.log_p_bkg_m(ms) - math.log(self.p_bkg_sr())
        terms = np.stack([self.log_p_bkg_x(x, np.full(len(x), mk)) + lk for mk, lk in zip(ms, lw)], axis=1)
        mx = terms.max(1, keepdims=True)
        log_pb = (mx + np.log(np.exp(terms - mx).sum(1, keepdims=True)))[:, 0]
        return self.log_p_sig_x(x) - log_pb

    # --------------------------------------------------------------- sampling
    def sample_background_m(self, n: int, rng: np.random.Generator, window: tuple[float, float] | None = None
                            ) -> np.ndarray:
        """n background masses (inverse CDF), optionally restricted to ``window``."""
        lo, hi = window if window is not None else (self.m_lo, self.m_hi)
        u = rng.uniform(self._exp_cdf(lo), self._exp_cdf(hi), n)
        t = self.tau
        e0, e1 = np.exp(-self.m_lo / t), np.exp(-self.m_hi / t)
        return -t * np.log(e0 - u * (e0 - e1))

    def sample_background_x(self, m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """x ~ p_b(x | m) for each m."""
        m = np.asarray(m, np.float64)
        z = rng.standard_normal((len(m), self.n_features)) @ self._chol.T
        return self.a[None, :] * (m[:, None] - self.m_ref) + self.scale(m)[:, None] * z

    def sample_background(self, n: int, rng: np.random.Generator, window: tuple[float, float] | None = None
                          ) -> Events:
        """n background events (m, x), optionally with m restricted to ``window``."""
        m = self.sample_background_m(n, rng, window)
        return Events(m, self.sample_background_x(m, rng), np.zeros(n, np.int8))

    def sample_signal(self, n: int, rng: np.random.Generator, window: tuple[float, float] | None = None) -> Events:
        """n signal events, m from the truncated peak (restricted to ``window`` if given, by rejection)."""
        lo, hi = window if window is not None else (self.m_lo, self.m_hi)
        out: list[np.ndarray] = [np.zeros(0)]
        have = 0
        while have < n:
            m = rng.normal(self.m0, self.width, 2 * (n - have) + 16)
            m = m[(m >= lo) & (m <= hi)]
            out.append(m)
            have += len(m)
        m = np.concatenate(out)[:n]
        x = self.mu_s[None, :] + self.signal_sigma * rng.standard_normal((n, self.n_features))
        return Events(m, x, np.ones(n, np.int8))

    def sample(self, n_background: int, signal_fraction: float, rng: np.random.Generator) -> Events:
        """A data set: ``n_background`` background events and round(f · n_background) signal events, shuffled."""
        if n_background < 1:
            raise InputError(f"n_background must be >= 1, got {n_background}")
        if not 0 <= signal_fraction < 1:
            raise InputError(f"signal_fraction must be in [0, 1), got {signal_fraction}")
        b = self.sample_background(n_background, rng)
        s = self.sample_signal(int(round(signal_fraction * n_background)), rng)
        perm = rng.permutation(len(b) + len(s))
        return Events(np.concatenate([b.m, s.m])[perm], np.concatenate([b.x, s.x])[perm],
                      np.concatenate([b.y, s.y])[perm])


def write_example_events(path: str | os.PathLike[str], n_background: int = 150_000, signal_fraction: float = 0.005,
                         seed: int = 0, hunt: BumpHunt | None = None) -> None:
    """Write a bump-hunt data set as a table (CSV or Parquet by suffix): columns ``m``, ``x1`` … ``xd``,
    ``is_signal``; written atomically."""
    import pandas as pd

    from ..io import atomic_path

    hunt = hunt or BumpHunt()
    e = hunt.sample(n_background, signal_fraction, np.random.default_rng([seed, 0]))
    frame = pd.DataFrame({"m": e.m, **{f"x{i + 1}": e.x[:, i] for i in range(e.x.shape[1])}, "is_signal": e.y})
    with atomic_path(path) as tmp:
        if str(path).endswith(".csv"):
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
