"""Feature normalisation of the denoiser: θ by design-space bounds, φ by training mean/std.

Optionally, strictly positive, right-skewed φ columns (energies, times, ...) are
log-transformed before standardising. The rule is generic and fitted on the training
runs only (:meth:`PhiMoments.log_mask`): a column is logged when all its training values
are > 0, its sample skewness exceeds :data:`LOG_SKEW` and the log reduces the absolute
skewness (e.g. a Gamma(2) energy, skew 1.41 -> -0.78, is logged; a uniform azimuth or
a radius is not).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError

__all__ = ["Normalizer", "PhiMoments", "LOG_SKEW"]

#: skewness above which a positive φ column is a candidate for the log transform
LOG_SKEW = 1.0


class PhiMoments:
    """Streaming sums for the per-feature mean, standard deviation and skewness of φ (float64).

    Moments of ``log φ`` are kept alongside (for columns that stay positive), so the log
    rule (:meth:`log_mask`) and the moments of the transformed features need one pass.
    """

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.s = np.zeros((3, dim))        # shifted power sums of φ
        self.sl = np.zeros((3, dim))       # ... and of log φ (meaningful where positive)
        self.positive = np.ones(dim, bool)

    def update(self, phi: np.ndarray) -> None:
        """Add events, (n, dφ). Sums are shifted by the first batch's mean for accuracy."""
        phi = np.asarray(phi, dtype=np.float64)
        if not len(phi):
            return
        self.positive &= (phi > 0).all(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(np.where(phi > 0, phi, 1.0))
        if self.n == 0:
            self.shift = phi.mean(axis=0)
            self.shift_log = logs.mean(axis=0)
        self.n += len(phi)
        for sums, x, c in ((self.s, phi, self.shift), (self.sl, logs, self.shift_log)):
            d = x - c
            d2 = d * d
            sums[0] += d.sum(axis=0)
            sums[1] += d2.sum(axis=0)
            sums[2] += (d2 * d).sum(axis=0)

    def _moments(self, sums: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m1, m2, m3 = sums / self.n
        var = np.maximum(m2 - m1 * m1, 0.0)
        c3 = m3 - 3 * m1 * m2 + 2 * m1**3
        std = np.sqrt(var)
        skew = np.where(std > 0, c3 / np.where(std > 0, std, 1.0) ** 3, 0.0)
        return shift + m1, std, skew

    def log_mask(self) -> np.ndarray:
        """Columns to log-transform: all values > 0, skewness > LOG_SKEW, and |skew(log)| < skew."""
        if self.n == 0:
            raise InputError("no training events to fit the φ normalisation on")
        skew = self._moments(self.s, self.shift)[2]
        skew_log = self._moments(self.sl, self.shift_log)[2]
        return self.positive & (skew > LOG_SKEW) & (np.abs(skew_log) < skew)

    def mean_std(self, log: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std per column, of ``log φ`` where ``log`` (bool, dφ) is set."""
        if self.n == 0:
            raise InputError("no training events to fit the φ normalisation on")
        mean, std, _ = self._moments(self.s, self.shift)
        if log is not None and np.any(log):
            log = np.asarray(log, bool)
            if np.any(log & ~self.positive):
                raise InputError("cannot log-transform a φ column with values <= 0")
            lmean, lstd, _ = self._moments(self.sl, self.shift_log)
            mean, std = np.where(log, lmean, mean), np.where(log, lstd, std)
        return mean, std


class Normalizer:
    """Maps θ to [-1, 1] by the design-space bounds and φ to zero mean / unit variance.

    ``phi_mean`` / ``phi_std`` are fitted on the **training runs only**; a constant φ
    feature (std 0) is only centred. ``phi_log`` (bool, dφ; default none) marks columns
    that are log-transformed first (``phi_mean`` / ``phi_std`` are then those of ``log φ``);
    values <= 0 in such a column are clamped to the smallest positive float32 first.
    Outputs are float32 tensors. ``dim_theta`` / ``dim_phi``: the numbers of θ and φ columns.
    """

    def __init__(self, theta_low: np.ndarray, theta_high: np.ndarray, phi_mean: np.ndarray, phi_std: np.ndarray,
                 phi_log: np.ndarray | None = None) -> None:
        self.theta_low = np.asarray(theta_low, dtype=np.float64)
        self.theta_high = np.asarray(theta_high, dtype=np.float64)
        self.phi_mean = np.asarray(phi_mean, dtype=np.float64)
        self.phi_std = np.asarray(phi_std, dtype=np.float64)
        self.dim_theta, self.dim_phi = len(self.theta_low), len(self.phi_mean)
        self.phi_log = (np.zeros(len(self.phi_mean), bool) if phi_log is None
                        else np.asarray(phi_log, dtype=bool).reshape(len(self.phi_mean)))
        self._log_cols = torch.as_tensor(np.flatnonzero(self.phi_log), dtype=torch.long)
        span = self.theta_high - self.theta_low
        self._t_scale = torch.as_tensor(np.where(span > 0, 2.0 / np.where(span > 0, span, 1.0), 1.0), dtype=torch.float32)
        self._t_shift = torch.as_tensor(np.where(span > 0, self.theta_low + span / 2, self.theta_low), dtype=torch.float32)
        self._p_mean = torch.as_tensor(self.phi_mean, dtype=torch.float32)
        self._p_inv = torch.as_tensor(np.where(self.phi_std > 0, 1.0 / np.where(self.phi_std > 0, self.phi_std, 1.0), 1.0),
                                      dtype=torch.float32)

    def theta(self, theta: torch.Tensor | np.ndarray) -> torch.Tensor:
        """θ (..., dθ) in parameter units -> [-1, 1] per coordinate."""
        t = torch.as_tensor(theta, dtype=torch.float32)
        return (t - self._t_shift) * self._t_scale

    def phi(self, phi: torch.Tensor | np.ndarray) -> torch.Tensor:
        """φ (..., dφ) in its own units -> standardised."""
        p = torch.as_tensor(phi, dtype=torch.float32)
        if len(self._log_cols):
            p = p.clone()
            p[..., self._log_cols] = torch.log(p[..., self._log_cols].clamp_min(torch.finfo(torch.float32).tiny))
        return (p - self._p_mean) * self._p_inv

    def state_dict(self) -> dict[str, Any]:
        return {k: torch.as_tensor(getattr(self, k)) for k in ("theta_low", "theta_high", "phi_mean", "phi_std", "phi_log")}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "Normalizer":
        args = (np.asarray(torch.as_tensor(state[k]).numpy()) for k in ("theta_low", "theta_high", "phi_mean", "phi_std"))
        log = state.get("phi_log")        # absent in models saved before the log option
        return cls(*args, phi_log=None if log is None else np.asarray(torch.as_tensor(log).numpy()))
