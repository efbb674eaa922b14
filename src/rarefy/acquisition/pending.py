"""Pending runs: the surrogate's posterior conditioned on runs chosen but not yet simulated (kriging believer).

A batch is built greedily; each chosen run becomes a *pending* observation whose value is
the posterior mean at its design and fidelity, with the run's noise. Conditioning the
joint Gaussian posterior on it leaves the mean unchanged and shrinks the covariance
exactly (Gaussian conditioning with noise): with the joint posterior over
``[pending p | points]``, ``S = C_pp + diag(noise)``,

    C'(points) = C_xx − C_xp S⁻¹ C_px,       m'(points) = m(points),

so the next run of the batch is chosen under a posterior that already knows what the
batch will teach, and no refit is needed. :class:`KrigingBeliever` is that posterior as a
BoTorch ``Model`` (and, like the surrogate, with a mixed-fidelity ``joint``), so BoTorch's
analytic acquisitions (EI, UCB) see the pending runs too.
"""

from __future__ import annotations

from typing import Any

import torch
from ..surrogate.base import DTYPE, JointModel

__all__ = ["KrigingBeliever"]


class KrigingBeliever(JointModel):
    """A surrogate's posterior conditioned on pending runs at designs ``x`` (p, d), fidelity indices ``fid`` (p,).

    ``noise`` (p,): each pending run's noise variance (rate units²). With no pending runs
    it is the surrogate's posterior.
    """

    def __init__(self, surrogate: Any, x: torch.Tensor, fid: torch.Tensor, noise: torch.Tensor) -> None:
        super().__init__()
        self.surrogate = surrogate
        self.x_pending = torch.as_tensor(x, dtype=DTYPE).reshape(-1, surrogate.space.dim)
        self.fid_pending = torch.as_tensor(fid, dtype=torch.long).reshape(-1)
        self.noise_pending = torch.as_tensor(noise, dtype=DTYPE).reshape(-1)

    @property
    def fidelities(self) -> list[str]:
        return self.surrogate.fidelities

    @property
    def space(self) -> Any:
        return self.surrogate.space

    def _fid(self, x: torch.Tensor, fidelity: str | torch.Tensor | None) -> torch.Tensor:
        if isinstance(fidelity, torch.Tensor):
            return fidelity.to(torch.long).expand(x.shape[:-1])
        name = self.fidelities[-1] if fidelity is None else fidelity
        return torch.full(x.shape[:-1], self.fidelities.index(name), dtype=torch.long)

    def joint(self, x: Any, fidelity: str | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditioned joint posterior at designs ``x`` (n, d) or (..., n, d): mean (..., n), covariance (..., n, n)."""
        p = len(self.x_pending)
        if p == 0:
            return self.surrogate.joint(x, fidelity)
        xs = torch.as_tensor(x, dtype=DTYPE) if not isinstance(x, torch.Tensor) else x.to(DTYPE)
        fid = self._fid(xs, fidelity)
        if xs.dim() > 2:  # a batch of joint posteriors: one at a time
            flat_x, flat_f = xs.reshape(-1, *xs.shape[-2:]), fid.reshape(-1, fid.shape[-1])
            parts = [self.joint(a, b) for a, b in zip(flat_x, flat_f)]
            mean = torch.stack([m for m, _ in parts]).reshape(xs.shape[:-1])
            cov = torch.stack([c for _, c in parts]).reshape(*xs.shape[:-1], xs.shape[-2])
            return mean, cov
        mean, cov = self.surrogate.joint(torch.cat([self.x_pending, xs]), torch.cat([self.fid_pending, fid]))
        S = cov[:p, :p] + torch.diag(self.noise_pending)
        K = cov[p:, :p]
        L = torch.linalg.cholesky(S + 1e-12 * S.diagonal().mean() * torch.eye(p, dtype=DTYPE))
        return mean[p:], cov[p:, p:] - K @ torch.cholesky_solve(K.T, L)

    def noise_variance(self, fidelity: str | None = None) -> float:
        """The surrogate's learned nugget of ``fidelity`` (rate units²)."""
        return self.surrogate.noise_variance(fidelity)
