"""Design optimisation: the feasible design with the lowest predicted target rate.

:func:`optimize_design` minimises, over the feasible designs of the surrogate's space,
either the target fidelity's posterior **mean** or the **UCB** ``mean + kappa · std`` (a
design that is good even when the surrogate is pessimistic), with the multistart
feasible search of :func:`rarefy.optim.search.maximize` (Sobol pool plus the observed
designs plus local perturbations of the 4 best observed designs, gradient refinement
that accepts only feasible moves).

It reports θ*, the predicted rate ± σ (latent posterior std, the rate's units) and, with a
baseline, the reduction ``1 − rate/baseline`` with a delta-method σ. A baseline *design*
is predicted by the same surrogate, jointly with θ*, so their correlation enters σ.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ..config import BaselineConfig, OptimizeConfig
from ..errors import InputError
from ..space import DesignSpace, format_number, text_table
from ..threads import torch_threads
from .search import feasible_pool, local_pool, maximize

__all__ = ["Baseline", "OptimumResult", "baseline_of", "optimize_design", "theta_rows"]

log = logging.getLogger(__name__)


@dataclass
class Baseline:
    """A reference rate (target units) with its σ; ``design`` when it is a predicted design, ``source`` in words."""

    rate: float
    sigma: float = 0.0
    design: dict[str, float] | None = None
    source: str = ""


@dataclass
class OptimumResult:
    """The optimum θ* with its predicted rate ± σ (in ``rate_unit``) and, with a baseline, the reduction ± σ
    (fractions). ``space`` (not saved) gives θ*'s units and integer parameters for :meth:`theta_rows`."""

    theta: dict[str, float]
    rate: float
    sigma: float
    objective: str
    target: str
    baseline_rate: float | None = None
    baseline_sigma: float | None = None
    baseline_source: str | None = None
    reduction: float | None = None
    reduction_sigma: float | None = None
    rate_unit: str = ""
    space: DesignSpace | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``space``, as plain JSON values (what ``optimum.json`` holds)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "space"}
        out["theta"] = dict(self.theta)
        return out

    def theta_rows(self) -> list[tuple[str, str, str]]:
        """θ* as table rows ``(parameter, value, unit)`` (:meth:`rarefy.DesignSpace.theta_rows`)."""
        return theta_rows(self.theta, self.space)

    def summary(self, theta: bool = True) -> list[str]:
        """θ* (a small table, unless ``theta`` is False), its predicted rate and, with a baseline, the reduction."""
        unit = f" {self.rate_unit}" if self.rate_unit else ""
        lines = ["θ*:", *text_table(self.theta_rows())] if theta else []
        lines.append(f"{self.target} rate ({self.objective}): {self.rate:.4g} ± {self.sigma:.2g}{unit}")
        if self.reduction is not None:
            lines.append(f"reduction vs baseline {self.baseline_rate:.4g}{unit} ({self.baseline_source}): "
                         f"{100 * self.reduction:.1f}% ± {100 * (self.reduction_sigma or 0.0):.1f}%")
        return lines


def theta_rows(theta: dict[str, Any], space: DesignSpace | None = None) -> list[tuple[str, str, str]]:
    """θ as table rows ``(parameter, value, unit)``: with ``space``, integers as integers and units
    (:meth:`rarefy.DesignSpace.theta_rows`); without, 4 significant digits and no units."""
    if space is not None:
        return space.theta_rows(theta)
    return [(str(n), format_number(float(v)), "") for n, v in theta.items()]


def baseline_of(settings: BaselineConfig | None, target: str, surrogate: Any = None,
                simulator: Any = None) -> Baseline | None:
    """A ``baseline`` config section as numbers for fidelity ``target`` (None without a section).

    ``design`` is predicted by ``surrogate`` (latent mean ± std of the target);
    ``simulator: true`` calls ``simulator.baseline_rate(target)``.
    """
    b = settings
    if b is None:
        return None
    if b.rate is not None:
        return Baseline(float(b.rate), float(b.sigma or 0.0), source="config rate")
    if b.design is not None:
        if surrogate is None:
            raise InputError("a baseline design needs a fitted surrogate to predict its rate")
        space: DesignSpace = surrogate.space
        x = np.array([[b.design[n] for n in space.names]], dtype=float)
        with torch.no_grad():
            mean, std = surrogate.predict(x, target)
        return Baseline(float(mean[0]), float(std[0]), design=dict(b.design), source="predicted at the baseline design")
    if simulator is None or not hasattr(simulator, "baseline_rate"):
        raise InputError("baseline: simulator: true needs a simulator with a baseline_rate(fidelity) method")
    return Baseline(float(simulator.baseline_rate(target)), 0.0, source="simulator baseline_rate")


def _reduction(sur: Any, target: str, x: np.ndarray, rate: float, sigma: float,
               base: Baseline) -> tuple[float, float]:
    """1 − rate/baseline and its delta-method σ (with the θ*–baseline covariance for a baseline design)."""
    b, sb = base.rate, base.sigma
    cov = 0.0
    if base.design is not None:
        xb = np.array([base.design[n] for n in sur.space.names], dtype=float)
        with torch.no_grad():
            _, c = sur.joint(np.stack([x, xb]), target)
        cov = float(c[0, 1])
    red = 1.0 - rate / b
    var = (sigma / b) ** 2 + (rate * sb / b**2) ** 2 - 2.0 * rate / b**3 * cov
    return red, math.sqrt(max(var, 0.0))


def optimize_design(surrogate: Any, settings: OptimizeConfig | None = None, *, target: str | None = None,
                    seed: int = 0, observed: np.ndarray | None = None,
                    baseline: Baseline | None = None) -> OptimumResult:
    """Minimise the predicted target ``mean`` (or ``mean + kappa·std``) over feasible designs.

    ``observed`` designs (n, d) join the Sobol candidate pool (the infeasible ones are
    dropped). Deterministic for a given seed.
    """
    settings = settings or OptimizeConfig()
    target = target or surrogate.fidelities[-1]
    space: DesignSpace = surrogate.space
    kappa = settings.kappa if settings.objective == "ucb" else 0.0

    def neg_objective(x: torch.Tensor) -> torch.Tensor:
        mean, std = surrogate.predict(x, target)
        return -(mean + kappa * std)

    pool = feasible_pool(space, settings.candidates, seed, extra=observed)
    if observed is not None and len(observed):  # look closely around the best observed designs too
        obs = np.unique(np.asarray(observed, float).reshape(-1, space.dim), axis=0)
        obs = obs[space.is_feasible(obs)]
        if len(obs):
            with torch_threads(1), torch.no_grad():
                best = obs[np.argsort(-neg_objective(torch.as_tensor(obs, dtype=torch.float64)).numpy(),
                                      kind="stable")[:4]]
            local = local_pool(space, best, max(settings.candidates // 4, 1), seed + 1)
            pool = np.concatenate([pool, local]) if len(local) else pool
    res = maximize(space, neg_objective, pool=pool, starts=settings.starts, steps=settings.steps)
    with torch_threads(1), torch.no_grad():
        mean, std = surrogate.predict(res.x[None, :], target)
    theta = space.round_theta(dict(zip(space.names, res.x)))
    out = OptimumResult(theta, float(mean[0]), float(std[0]), settings.objective, target, space=space)
    if baseline is not None:
        out.baseline_rate, out.baseline_sigma, out.baseline_source = baseline.rate, baseline.sigma, baseline.source
        out.reduction, out.reduction_sigma = _reduction(surrogate, target, res.x, out.rate, out.sigma, baseline)
    log.info("optimum (%s): %s, predicted %s = %.4g ± %.2g", settings.objective, space.format_theta(theta), target,
             out.rate, out.sigma)
    return out
