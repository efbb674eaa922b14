"""Acquisition: which (design θ, fidelity) to simulate next, one run or a batch.

Everything is computed from the surrogate's joint latent posterior
(:meth:`AR1Surrogate.joint`) over points at mixed fidelities, so a cheap low-fidelity run
is valued by what it would teach about the **target** fidelity.

Notation: T is the target fidelity, a candidate is a run of ``n_f`` events at design x and
fidelity f; its observation noise (rate units²) is ``s²_f(x) = max(m_f(x), 1/n_f)/n_f + τ_f``
(binomial variance of k/n at the predicted rate m_f, at least one count's worth, plus the
fidelity's learned nugget τ_f). With ``c(·,·)`` the posterior covariance and
``v(x) = c(y_f(x), y_f(x)) + s²_f(x)``:

============  ===================================================================  =========
kind          value of one candidate (BoTorch ``AcquisitionFunction``)             units
============  ===================================================================  =========
``maxvar``    target-variance reduction at x: ``c(y_T(x), y_f(x))² / v(x)``        rate²
              (:class:`~rarefy.acquisition.ivr.MaxVarianceReduction`)
``ivr``       integrated target-variance reduction over ``reference`` feasible     rate²
              Sobol designs r: ``mean_r c(y_T(r), y_f(x))² / v(x)``
              (:class:`~rarefy.acquisition.ivr.IntegratedVarianceReduction`)
``ei``        expected improvement of y_T(x) below the incumbent (minimisation):   rate
              BoTorch ``ExpectedImprovement(maximize=False)``
``lcb``       ``-(μ_T(x) − β σ_T(x))`` (the design with the lowest LCB wins):      rate
              BoTorch ``UpperConfidenceBound(beta=β², maximize=False)``
============  ===================================================================  =========

The incumbent is the lowest posterior target mean over the observed (and pending) designs.
``maxvar`` with f = T and no noise is the plain posterior variance.

**Cost-aware versions** (``cost_aware=True``) search every allowed fidelity and divide the
value by the nominal cost of the run (CPU-hours; :class:`~rarefy.acquisition.cost.CostAware`),
so the result is value per CPU-hour. The
variance-based kinds already value a fidelity by its correlation with the target. EI and
LCB are target quantities, so they are discounted as in augmented EI (Huang et al. 2006):
``value × α₁ × α₂ / cost`` with ``α₁ = corr(y_T(x), y_f(x))⁺`` and
``α₂ = 1 − s_f(x)/sqrt(c(y_f, y_f) + s²_f)``; for LCB the utility is the optimistic
improvement ``max(incumbent − LCB(x), 0)`` so that it is non-negative
(:class:`~rarefy.acquisition.cost.FidelityDiscount`, :class:`~rarefy.acquisition.cost.OptimisticImprovement`). Without
``cost_aware`` the plain values are used and only target-fidelity runs are proposed.

**Opportunity cost of a run.** A closed loop has a fixed number of run slots as well as a
budget (``iterations × batch`` runs, ``budget_cpu_h``). When the budget left per slot left,
``b = budget_left / runs_left``, exceeds a fidelity's nominal run cost, a cheap run still
uses up a slot that could have bought a run worth ``b``; the divisor is then
``max(cost, b)`` instead of ``cost``. With plenty of budget the choice becomes "most value
per run", with a tight budget it stays "most value per CPU-hour", and the budget is
neither left unspent by a loop of cheap runs nor overspent (see ``runs_left`` of
:func:`propose`).

**Batches** (q > 1) are built greedily with the *kriging believer*: each chosen run is
added as a pending observation whose value equals the posterior mean, which leaves the
posterior mean unchanged and shrinks the covariance exactly (Gaussian conditioning of the
joint posterior on the pending runs with their noise). The next run is then chosen under
that conditioned posterior (:class:`~rarefy.acquisition.pending.KrigingBeliever`, a BoTorch
model, so EI and UCB see it too) — so variance-based batches spread out, and EI/LCB batches do
not repeat a design whose uncertainty the batch already removes. No refit is needed.

**Feasibility.** Designs are searched by :func:`rarefy.optim.search.maximize` (feasible Sobol
pool, multistart gradient refinement that accepts only feasible moves), so every proposal
satisfies the bounds, the integer parameters and every constraint of the design space.
The candidate pool holds ``candidates`` Sobol designs, the observed designs (a replicate
is a valid choice with noisy runs) and ``candidates/4`` local perturbations (5% of each
range) of the 4 observed designs with the lowest predicted target rate, so exploitation
near the incumbent is searched as finely as the global space.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.analytic import ExpectedImprovement, UpperConfidenceBound
from botorch.acquisition.objective import ScalarizedPosteriorTransform
from botorch.exceptions.warnings import NumericsWarning

from ..config import AcquisitionConfig
from ..errors import InputError
from ..optim.search import feasible_pool, local_pool, maximize
from ..space import DesignSpace
from .cost import CostAware, FidelityDiscount, OptimisticImprovement, Scaled
from .fidelity import FidelityPlan, RunNoise
from .ivr import IntegratedVarianceReduction, MaxVarianceReduction
from .pending import KrigingBeliever

__all__ = ["Proposal", "Acquisition", "propose", "proposals_frame", "proposable_fidelities"]

log = logging.getLogger(__name__)


def proposable_fidelities(plans: Mapping[str, FidelityPlan], names: Sequence[str], target: str, *, cost_aware: bool,
                          fidelities: Sequence[str] | None = None) -> list[str]:
    """The fidelities an acquisition may propose runs at; raises :class:`InputError` when one lacks what it needs.

    Cost-aware: ``fidelities`` (default: every one of ``names`` with events per run), each
    with a number of events and a finite positive nominal cost; otherwise the ``target``
    alone, with a number of events. Needs only the config, so jobs call it before fitting.
    """
    if cost_aware:
        allowed = list(fidelities) if fidelities else [f for f in names if plans.get(f) and plans[f].events > 0]
    else:
        allowed = [target]
    if not allowed:
        raise InputError("no fidelity can be proposed: none has a number of events per run (set "
                         "acquisition.events or the fidelities' 'events')")
    for f in allowed:
        plan = plans.get(f)
        if plan is None or plan.events < 1:
            raise InputError(f"fidelity {f!r} has no events per run: set acquisition.events.{f} or the fidelity's 'events'")
        if cost_aware and not (math.isfinite(plan.cost_cpu_h) and plan.cost_cpu_h > 0):
            raise InputError(f"cost-aware acquisition needs the nominal cost of fidelity {f!r}: set its "
                             "'cost_cpu_h_per_event' (or 'cost_cpu_h' per run), or acquisition.cost_aware: false")
    return allowed

KINDS = ("ivr", "maxvar", "ei", "lcb")
N_CENTERS = 4  # local candidates are drawn around this many best observed designs


@dataclass
class Proposal:
    """One proposed run: design ``theta``, ``fidelity``, ``events``, nominal ``cost_cpu_h`` and acquisition ``value``.

    ``fidelity`` is the fidelity to simulate; ``valued_as`` the surrogate fidelity whose
    observation the acquisition valued (differs for a denoised fidelity: ``lf-denoised`` is
    valued, ``lf`` simulated). ``value`` is per CPU-hour for cost-aware acquisitions;
    ``noise_var`` is the rate noise variance assumed for the run (rate units²).
    """

    theta: dict[str, float]
    fidelity: str
    events: int
    cost_cpu_h: float
    value: float
    noise_var: float = field(default=0.0, repr=False)
    valued_as: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Acquisition:
    """An acquisition function over (θ, fidelity) for a fitted multi-fidelity surrogate.

    Parameters
    ----------
    surrogate:
        A fitted :class:`rarefy.AR1Surrogate` (anything with ``joint``, ``predict``,
        ``noise_variance``, ``fidelities``, ``space``).
    plans:
        :class:`FidelityPlan` per fidelity name (events per run, cost per run in CPU-h).
    kind, cost_aware, beta:
        See the module docstring.
    target:
        The target fidelity (default: the surrogate's highest).
    fidelities:
        Fidelities that may be proposed when cost-aware (default: every one with a plan
        of at least one event).
    observed:
        Observed designs (n, d), parameter units: where the EI/LCB incumbent is taken.
    reference:
        Designs (r, d) over which ``ivr`` integrates (default: ``n_reference`` feasible Sobol designs).
    """

    def __init__(self, surrogate: Any, plans: Mapping[str, FidelityPlan], *, kind: str = "ivr",
                 cost_aware: bool = True, beta: float = 2.0, target: str | None = None,
                 fidelities: Sequence[str] | None = None, observed: np.ndarray | None = None,
                 reference: np.ndarray | None = None, n_reference: int = 64, seed: int = 0) -> None:
        if kind not in KINDS:
            raise InputError(f"unknown acquisition kind {kind!r}; use one of {', '.join(KINDS)}")
        if not getattr(surrogate, "mixed_fidelity", False):
            raise InputError(f"acquisition needs a surrogate with a joint posterior over fidelities (surrogate.kind: "
                             f"ar1); {type(surrogate).__name__} has none")
        self.sur = surrogate
        self.space: DesignSpace = surrogate.space
        self.kind = kind
        self.cost_aware = cost_aware
        self.beta = float(beta)
        self.target = target or surrogate.fidelities[-1]
        self.names = list(surrogate.fidelities)
        self.t_idx = self.names.index(self.target)
        self.plans = dict(plans)
        self.allowed = proposable_fidelities(self.plans, self.names, self.target, cost_aware=cost_aware,
                                             fidelities=fidelities)
        self.nugget = {f: self.sur.noise_variance(f) for f in self.names}
        if reference is None and kind == "ivr":
            reference = self.space.sample(n_reference, method="sobol", seed=seed + 7919).to_numpy(dtype=float)
        self.reference = None if reference is None else torch.tensor(np.asarray(reference, float), dtype=torch.float64)
        self.pending: list[tuple[np.ndarray, int, float]] = []  # (design, fidelity index, noise variance)
        self.slot_cost_cpu_h = 0.0  # opportunity cost of a run slot (see module docstring); set by propose()
        self.incumbent = float("inf")
        self.outcome_scale = 1.0  # outcome unit (rate) of the EI/LCB evaluation: the median target std at the observed designs
        self.observed = None if observed is None else np.asarray(observed, float).reshape(-1, self.space.dim)
        self.centers = np.zeros((0, self.space.dim))  # best observed designs (lowest target mean): local search
        if kind in ("ei", "lcb") and (self.observed is None or len(self.observed) == 0):
            raise InputError("EI and LCB need observed designs for the incumbent")
        if self.observed is not None and len(self.observed):
            uniq = np.unique(self.observed, axis=0)
            with torch.no_grad():
                mean, std = self.sur.predict(uniq, self.target)
            order = np.argsort(mean.numpy(), kind="stable")
            self.centers = uniq[order[:N_CENTERS]]
            if kind in ("ei", "lcb"):
                self.incumbent = float(mean.min())
                scale = float(std.median())
                self.outcome_scale = scale if math.isfinite(scale) and scale > 0 else 1.0

    # ---------------------------------------------------------------- values
    def model(self) -> Any:
        """The surrogate, conditioned on the pending runs (kriging believer) when there are any."""
        if not self.pending:
            return self.sur
        return KrigingBeliever(self.sur, torch.as_tensor(np.stack([q[0] for q in self.pending])),
                               torch.tensor([q[1] for q in self.pending]),
                               torch.tensor([q[2] for q in self.pending], dtype=torch.float64))

    def function(self, fidelity: str) -> AcquisitionFunction:
        """The BoTorch acquisition function of runs of ``fidelity``, given the pending runs.

        Evaluate it on ``b × 1 × d`` designs (parameter units); per CPU-hour when cost-aware.
        """
        model = self.model()
        noise = RunNoise(self.plans[fidelity].events, self.nugget[fidelity])
        acq: AcquisitionFunction
        if self.kind == "ivr":
            acq = IntegratedVarianceReduction(model, fidelity, self.reference, noise, target=self.target)
        elif self.kind == "maxvar":
            acq = MaxVarianceReduction(model, fidelity, noise, target=self.target)
        else:
            # BoTorch's analytic EI/UCB floor the variance at 1e-12: evaluate them in units of
            # `outcome_scale` (both are scale-equivariant) and scale the value back to the rate's units
            unit = self.outcome_scale
            per_unit = ScalarizedPosteriorTransform(weights=torch.tensor([1.0 / unit], dtype=torch.float64))
            if self.kind == "ei":
                # EI itself, not LogEI: the value is divided by a cost and reported per CPU-hour
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NumericsWarning)
                    acq = ExpectedImprovement(model, best_f=self.incumbent / unit, posterior_transform=per_unit,
                                              maximize=False)
                acq = Scaled(acq, unit)
            else:
                acq = Scaled(UpperConfidenceBound(model, beta=self.beta**2, posterior_transform=per_unit,
                                                  maximize=False), unit)
                if self.cost_aware:
                    acq = OptimisticImprovement(acq, self.incumbent)
            if self.cost_aware:
                acq = FidelityDiscount(acq, fidelity, noise, target=self.target)
        if self.cost_aware:
            acq = CostAware(acq, max(self.plans[fidelity].cost_cpu_h, self.slot_cost_cpu_h))
        return acq

    def value(self, x: torch.Tensor, fidelity: str) -> torch.Tensor:
        """Acquisition value of runs of ``fidelity`` at designs ``x`` (B, d), given the pending runs.

        Differentiable in ``x``; per CPU-hour when cost-aware.
        """
        return self.function(fidelity)(x.unsqueeze(-2))

    def add_pending(self, theta: np.ndarray, fidelity: str) -> float:
        """Add a pending run (kriging believer); returns its assumed noise variance (rate units²)."""
        x = np.asarray(theta, float)
        with torch.no_grad():
            m, _ = self.sur.predict(x[None, :], fidelity)
            noise = float(RunNoise(self.plans[fidelity].events, self.nugget[fidelity])(m)[0])
            if self.kind in ("ei", "lcb"):
                mt, _ = self.sur.predict(x[None, :], self.target)
                self.incumbent = min(self.incumbent, float(mt[0]))
        self.pending.append((x, self.names.index(fidelity), noise))
        return noise

    # --------------------------------------------------------------- propose
    def propose(self, q: int = 1, *, candidates: int = 1024, starts: int = 4, steps: int = 20, seed: int = 0,
                budget_cpu_h: float | None = None, pool: np.ndarray | None = None) -> list[Proposal]:
        """Up to ``q`` runs, greedily (kriging believer), each maximising the acquisition over feasible designs.

        With ``budget_cpu_h`` only runs whose nominal cost fits into what is left are
        proposed; the batch may then be shorter than ``q`` (empty when nothing fits).
        """
        if pool is None:
            pool = feasible_pool(self.space, candidates, seed, extra=self.observed)
            local = local_pool(self.space, self.centers, max(candidates // 4, 1), seed + 1)
            pool = np.concatenate([pool, local]) if len(local) else pool
        left = math.inf if budget_cpu_h is None else float(budget_cpu_h)
        out: list[Proposal] = []
        for j in range(q):
            best: tuple[float, str, np.ndarray] | None = None
            for f in self.allowed:
                cost = self.plans[f].cost_cpu_h
                if math.isfinite(cost) and cost > left + 1e-9:
                    continue
                acq = self.function(f)
                res = maximize(self.space, lambda x, acq=acq: acq(x.unsqueeze(-2)), pool=pool, starts=starts,
                               steps=steps, chunk=128)
                log.debug("batch %d, fidelity %s: value %.4g at %s", j, f, res.value, res.x)
                if best is None or res.value > best[0]:
                    best = (res.value, f, res.x)
            if best is None:
                log.info("no fidelity fits into the %.3g CPU-h left; the batch has %d runs", left, len(out))
                break
            value, f, x = best
            noise = self.add_pending(x, f)
            theta = self.space.round_theta(dict(zip(self.space.names, x)))
            plan = self.plans[f]
            out.append(Proposal(theta, plan.simulated, plan.events, plan.cost_cpu_h, float(value), noise, valued_as=f))
            if math.isfinite(plan.cost_cpu_h):
                left -= plan.cost_cpu_h
        return out


def propose(surrogate: Any, settings: AcquisitionConfig, plans: Mapping[str, FidelityPlan], *, q: int = 1,
            target: str | None = None, observed: np.ndarray | None = None, seed: int = 0,
            budget_cpu_h: float | None = None, runs_left: int | None = None) -> list[Proposal]:
    """Propose ``q`` runs with an ``acquisition`` config section (see :class:`Acquisition`).

    ``plans``: events and nominal cost of each fidelity (:func:`fidelity_plans`);
    ``target``: the target fidelity (default: the surrogate's highest); ``observed``:
    designs already simulated (EI/LCB incumbent). ``budget_cpu_h`` caps the batch's
    nominal cost; with ``runs_left`` (run slots left in the loop, this batch included) a
    cost-aware acquisition divides by ``max(cost, budget_cpu_h / runs_left)`` (opportunity
    cost, see the module docstring). Every proposal is a feasible design of the surrogate's space.
    """
    acq = Acquisition(surrogate, plans, kind=settings.kind, cost_aware=settings.cost_aware, beta=settings.beta,
                      target=target, fidelities=settings.fidelities, observed=observed,
                      n_reference=settings.reference, seed=seed)
    if budget_cpu_h is not None and runs_left:
        acq.slot_cost_cpu_h = max(float(budget_cpu_h), 0.0) / int(runs_left)
    return acq.propose(q, candidates=settings.candidates, starts=settings.starts, steps=settings.steps, seed=seed,
                       budget_cpu_h=budget_cpu_h)


def proposals_frame(proposals: Sequence[Proposal], space: DesignSpace) -> pd.DataFrame:
    """Proposals as a table: θ columns, ``fidelity``, ``events``, ``cost_cpu_h``, ``value``."""
    rows = [{**p.theta, "fidelity": p.fidelity, "events": p.events, "cost_cpu_h": p.cost_cpu_h, "value": p.value}
            for p in proposals]
    frame = pd.DataFrame(rows, columns=[*space.names, "fidelity", "events", "cost_cpu_h", "value"])
    for prm in space.parameters:
        if prm.integer and len(frame):
            frame[prm.name] = frame[prm.name].round().astype(int)
    return frame
