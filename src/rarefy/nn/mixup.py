"""Signal–background mixup of a training batch.

A fraction of the batch's **background** targets is replaced by mixtures with a signal
target of the same batch: ``φ = λ φ_s + (1 - λ) φ_b``, label ``y = λ``, with λ the
weight of the signal drawn from Uniform(a, b) or Beta(a, b). The mixture keeps the
signal's run (θ and context set). Without signal in the batch nothing is mixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError

__all__ = ["Mixup"]


@dataclass(frozen=True)
class Mixup:
    """``fraction`` of the batch mixed (at most the number of background targets), λ ~ ``distribution``(a, b)."""

    fraction: float = 0.1
    distribution: str = "uniform"
    a: float = 0.5
    b: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise InputError(f"mixup fraction must be in [0, 1], got {self.fraction}")
        if self.distribution == "uniform":
            if not 0.0 <= self.a <= self.b <= 1.0:
                raise InputError(f"uniform mixup needs 0 <= a <= b <= 1, got a={self.a}, b={self.b}")
        elif self.distribution == "beta":
            if self.a <= 0 or self.b <= 0:
                raise InputError(f"beta mixup needs a, b > 0, got a={self.a}, b={self.b}")
        else:
            raise InputError(f"unknown mixup distribution {self.distribution!r}; use 'uniform' or 'beta'")

    def lam(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.distribution == "uniform":
            return rng.uniform(self.a, self.b, n)
        return rng.beta(self.a, self.b, n)

    def __call__(self, x_phi: torch.Tensor, y: torch.Tensor, run: torch.Tensor, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Mixed copies of (φ (B, dφ), y (B,), run (B,)) and the number of mixed targets."""
        yn = y.cpu().numpy()
        sig = np.flatnonzero(yn >= 0.5)
        bkg = np.flatnonzero(yn < 0.5)
        k = min(int(round(self.fraction * len(yn))), len(bkg))
        if k == 0 or len(sig) == 0:
            return x_phi, y, run, 0
        b_idx = torch.as_tensor(rng.choice(bkg, k, replace=False), device=y.device)
        s_idx = torch.as_tensor(rng.choice(sig, k, replace=True), device=y.device)
        lam = torch.as_tensor(self.lam(k, rng), dtype=x_phi.dtype, device=x_phi.device)
        x_phi, y, run = x_phi.clone(), y.clone(), run.clone()
        x_phi[b_idx] = lam[:, None] * x_phi[s_idx] + (1 - lam[:, None]) * x_phi[b_idx]
        y[b_idx] = lam.to(y.dtype)
        run[b_idx] = run[s_idx]
        return x_phi, y, run, k
