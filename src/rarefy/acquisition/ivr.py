"""Multi-fidelity variance reduction: how much one run of fidelity f at x would shrink the target's variance.

Both functions use the joint latent posterior over points at mixed fidelities (the
surrogate's ``joint``, or a :class:`~rarefy.acquisition.pending.KrigingBeliever` that
also knows the pending runs), so a cheap low-fidelity run is valued by what it would
teach about the **target** fidelity T. A run at x of fidelity f, observed with noise
s²_f(x) (:class:`~rarefy.acquisition.fidelity.RunNoise`), reduces the posterior variance of
y_T at r by ``c(y_T(r), y_f(x))² / v(x)`` with ``v(x) = c(y_f(x), y_f(x)) + s²_f(x)``:

* :class:`IntegratedVarianceReduction` (``ivr``): the mean reduction over reference designs r
  (feasible Sobol designs) — the integrated variance reduction of Sacks et al. (1989),
  the multi-fidelity form of BoTorch's ``qNegIntegratedPosteriorVariance`` (rate²);
* :class:`MaxVarianceReduction` (``maxvar``): the reduction at x itself (rate²); with f = T
  and no noise, the plain posterior variance.

Both are ≥ 0 and vanish where the posterior is already certain. Values per CPU-hour:
wrap in :class:`~rarefy.acquisition.cost.CostAware`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.utils.transforms import t_batch_mode_transform

__all__ = ["IntegratedVarianceReduction", "MaxVarianceReduction", "run_and_target"]


def run_and_target(model: Any, x: torch.Tensor, fidelity: int, target: int) -> tuple[torch.Tensor, ...]:
    """At each design of ``x`` (b, d): mean and variance of y_f, ``c(y_T, y_f)`` and the variance of y_T.

    ``fidelity``, ``target``: fidelity indices of f and T. One joint posterior over
    ``[x at f | x at T]``; the variance of y_f is clamped at 0.
    """
    b = x.shape[0]
    fid = torch.cat([torch.full((b,), fidelity, dtype=torch.long), torch.full((b,), target, dtype=torch.long)])
    mean, cov = model.joint(torch.cat([x, x]), fid)
    ci = torch.arange(b)
    return mean[ci], cov[ci, ci].clamp_min(0.0), cov[ci + b, ci], cov[ci + b, ci + b]


def _index(model: Any, fidelity: str | None) -> int:
    names = list(model.fidelities)
    return len(names) - 1 if fidelity is None else names.index(fidelity)


class IntegratedVarianceReduction(AcquisitionFunction):
    """Mean reduction of the target's posterior variance over ``reference`` designs by one run of ``fidelity``.

    ``model``: anything with a mixed-fidelity ``joint(x, fidelity_indices)`` and
    ``fidelities`` (an :class:`rarefy.AR1Surrogate` or a kriging believer). ``reference``:
    designs (r, d), parameter units. ``noise``: the run's noise variance at a predicted
    rate (rate units²). ``target``: default the highest fidelity.
    """

    def __init__(self, model: Any, fidelity: str, reference: torch.Tensor, noise: Callable[[torch.Tensor], torch.Tensor],
                 target: str | None = None) -> None:
        super().__init__(model=model)
        self.fidelity = _index(model, fidelity)
        self.target = _index(model, target)
        self.reference = torch.as_tensor(reference, dtype=torch.float64)
        self.noise = noise

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Value (rate²) at ``X`` (b × 1 × d, parameter units), shape (b,)."""
        x = X.squeeze(-2)
        b, r = x.shape[0], len(self.reference)
        fid = torch.cat([torch.full((r,), self.target, dtype=torch.long),
                         torch.full((b,), self.fidelity, dtype=torch.long)])
        mean, cov = self.model.joint(torch.cat([self.reference.to(x), x]), fid)
        ci = torch.arange(r, r + b)
        var_c = cov[ci, ci].clamp_min(0.0)
        return (cov[:r, r:r + b] ** 2).mean(0) / (var_c + self.noise(mean[ci]))


class MaxVarianceReduction(AcquisitionFunction):
    """Reduction of the target's posterior variance at x by one run of ``fidelity`` at x (rate²)."""

    def __init__(self, model: Any, fidelity: str, noise: Callable[[torch.Tensor], torch.Tensor],
                 target: str | None = None) -> None:
        super().__init__(model=model)
        self.fidelity = _index(model, fidelity)
        self.target = _index(model, target)
        self.noise = noise

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Value (rate²) at ``X`` (b × 1 × d, parameter units), shape (b,)."""
        mean_f, var_f, cov_tf, _ = run_and_target(self.model, X.squeeze(-2), self.fidelity, self.target)
        return cov_tf**2 / (var_f + self.noise(mean_f))
