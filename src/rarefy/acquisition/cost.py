"""Cost-aware acquisition: value per CPU-hour, and the fidelity discount of target-only criteria.

* :class:`CostAware` divides any acquisition value by the run's cost (CPU-hours): what
  one CPU-hour of that fidelity buys. The cost is the fidelity's nominal run cost, or
  the opportunity cost of a run slot when larger (see :mod:`rarefy.acquisition.proposals`).
* EI and LCB value the **target** y_T(x); a run of a cheaper fidelity f only informs it
  partly. :class:`FidelityDiscount` multiplies them by the augmented-EI factors (Huang et
  al. 2006) ``α₁ = corr(y_T(x), y_f(x))⁺`` (how much f says about T) and
  ``α₂ = 1 − s_f(x)/sqrt(c(y_f, y_f) + s²_f)`` (how much one noisy run says about y_f).
* :class:`OptimisticImprovement` turns BoTorch's ``UpperConfidenceBound(maximize=False)``
  (``−LCB``) into the non-negative utility ``max(incumbent − LCB(x), 0)``, so that it can
  be discounted and divided by a cost.
"""

from __future__ import annotations

from typing import Callable

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.utils.transforms import t_batch_mode_transform

from .ivr import run_and_target

__all__ = ["CostAware", "FidelityDiscount", "OptimisticImprovement", "Scaled", "Wrapped"]


class Wrapped(AcquisitionFunction):
    """An acquisition function that transforms the values of another one (on the same model)."""

    def __init__(self, acquisition: AcquisitionFunction) -> None:
        super().__init__(model=acquisition.model)
        self.acquisition = acquisition


class Scaled(Wrapped):
    """``acquisition(X) · factor``: e.g. a value computed in standardised outcome units, back in the rate's units."""

    def __init__(self, acquisition: AcquisitionFunction, factor: float) -> None:
        super().__init__(acquisition)
        self.factor = float(factor)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.acquisition(X) * self.factor


class CostAware(Scaled):
    """``acquisition(X) / cost_cpu_h``: value per CPU-hour of a run."""

    def __init__(self, acquisition: AcquisitionFunction, cost_cpu_h: float) -> None:
        if not cost_cpu_h > 0:
            raise ValueError(f"the cost of a run must be positive, got {cost_cpu_h}")
        super().__init__(acquisition, 1.0 / float(cost_cpu_h))
        self.cost_cpu_h = float(cost_cpu_h)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.acquisition(X) / self.cost_cpu_h


class FidelityDiscount(Wrapped):
    """``acquisition(X) · α₁ · α₂`` for a run of ``fidelity`` valued by a target criterion (augmented EI)."""

    def __init__(self, acquisition: AcquisitionFunction, fidelity: str,
                 noise: Callable[[torch.Tensor], torch.Tensor], target: str | None = None) -> None:
        super().__init__(acquisition)
        names = list(self.model.fidelities)
        self.fidelity = names.index(fidelity)
        self.target = len(names) - 1 if target is None else names.index(target)
        self.noise = noise

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: torch.Tensor) -> torch.Tensor:
        mean_f, var_f, cov_tf, var_t = run_and_target(self.model, X.squeeze(-2), self.fidelity, self.target)
        s2 = self.noise(mean_f)
        corr = (cov_tf / (var_t.clamp_min(1e-300).sqrt() * var_f.clamp_min(1e-300).sqrt())).clamp(0.0, 1.0)
        alpha2 = 1.0 - torch.sqrt(s2 / (var_f + s2))
        return self.acquisition(X) * corr * alpha2


class OptimisticImprovement(Wrapped):
    """``max(incumbent + acquisition(X), 0)`` for ``acquisition`` = ``UpperConfidenceBound(maximize=False)`` = −LCB."""

    def __init__(self, acquisition: AcquisitionFunction, incumbent: float) -> None:
        super().__init__(acquisition)
        self.incumbent = float(incumbent)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.incumbent + self.acquisition(X))
