"""Feature normalisation of the denoiser: θ by design-space bounds, φ by training mean/std."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError

__all__ = ["Normalizer", "PhiMoments"]


class PhiMoments:
    """Streaming sums for the per-feature mean and standard deviation of φ (float64)."""

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.s1 = np.zeros(dim)
        self.s2 = np.zeros(dim)

    def update(self, phi: np.ndarray) -> None:
        """Add events, (n, dφ). Sums are shifted by the first batch's mean for accuracy."""
        phi = np.asarray(phi, dtype=np.float64)
        if not len(phi):
            return
        if self.n == 0:
            self.shift = phi.mean(axis=0)
        d = phi - self.shift
        self.n += len(phi)
        self.s1 += d.sum(axis=0)
        self.s2 += (d * d).sum(axis=0)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n == 0:
            raise InputError("no training events to fit the φ normalisation on")
        m = self.s1 / self.n
        var = np.maximum(self.s2 / self.n - m * m, 0.0)
        return self.shift + m, np.sqrt(var)


class Normalizer:
    """Maps θ to [-1, 1] by the design-space bounds and φ to zero mean / unit variance.

    ``phi_mean`` / ``phi_std`` are fitted on the **training runs only**; a constant φ
    feature (std 0) is only centred. Outputs are float32 tensors.
    """

    def __init__(self, theta_low: np.ndarray, theta_high: np.ndarray, phi_mean: np.ndarray, phi_std: np.ndarray) -> None:
        self.theta_low = np.asarray(theta_low, dtype=np.float64)
        self.theta_high = np.asarray(theta_high, dtype=np.float64)
        self.phi_mean = np.asarray(phi_mean, dtype=np.float64)
        self.phi_std = np.asarray(phi_std, dtype=np.float64)
        span = self.theta_high - self.theta_low
        self._t_scale = torch.as_tensor(np.where(span > 0, 2.0 / np.where(span > 0, span, 1.0), 1.0), dtype=torch.float32)
        self._t_shift = torch.as_tensor(np.where(span > 0, self.theta_low + span / 2, self.theta_low), dtype=torch.float32)
        self._p_mean = torch.as_tensor(self.phi_mean, dtype=torch.float32)
        self._p_inv = torch.as_tensor(np.where(self.phi_std > 0, 1.0 / np.where(self.phi_std > 0, self.phi_std, 1.0), 1.0),
                                      dtype=torch.float32)

    @property
    def dim_theta(self) -> int:
        return len(self.theta_low)

    @property
    def dim_phi(self) -> int:
        return len(self.phi_mean)

    def theta(self, theta: torch.Tensor | np.ndarray) -> torch.Tensor:
        """θ (..., dθ) in parameter units -> [-1, 1] per coordinate."""
        t = torch.as_tensor(theta, dtype=torch.float32)
        return (t - self._t_shift) * self._t_scale

    def phi(self, phi: torch.Tensor | np.ndarray) -> torch.Tensor:
        """φ (..., dφ) in its own units -> standardised."""
        p = torch.as_tensor(phi, dtype=torch.float32)
        return (p - self._p_mean) * self._p_inv

    def state_dict(self) -> dict[str, Any]:
        return {k: torch.as_tensor(getattr(self, k)) for k in ("theta_low", "theta_high", "phi_mean", "phi_std")}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "Normalizer":
        return cls(*(np.asarray(torch.as_tensor(state[k]).numpy()) for k in ("theta_low", "theta_high", "phi_mean", "phi_std")))
