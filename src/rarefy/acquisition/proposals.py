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
kind          value of one candidate                                               units
============  ===================================================================  =========
``maxvar``    target-variance reduction at x: ``c(y_T(x), y_f(x))² / v(x)``        rate²
``ivr``       integrated target-variance reduction over ``reference`` feasible     rate²
              Sobol designs r: ``mean_r c(y_T(r), y_f(x))² / v(x)``
``ei``        expected improvement of y_T(x) below the incumbent (minimisation)     rate
``lcb``       ``-(μ_T(x) − β σ_T(x))`` (the design with the lowest LCB wins)        rate
============  ===================================================================  =========

The incumbent is the lowest posterior target mean over the observed (and pending) designs.
``maxvar`` with f = T and no noise is the plain posterior variance.

**Cost-aware versions** (``cost_aware=True``) search every allowed fidelity and divide the
value by the nominal cost of the run (CPU-hours), so the result is value per CPU-hour. The
variance-based kinds already value a fidelity by its correlation with the target. EI and
LCB are target quantities, so they are discounted as in augmented EI (Huang et al. 2006):
``value × α₁ × α₂ / cost`` with ``α₁ = corr(y_T(x), y_f(x))⁺`` and
``α₂ = 1 − s_f(x)/sqrt(c(y_f, y_f) + s²_f)``; for LCB the utility is the optimistic
improvement ``max(incumbent − LCB(x), 0)`` so that it is non-negative. Without
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
that conditioned posterior — so variance-based batches spread out, and EI/LCB batches do
not repeat a design whose uncertainty the batch already removes. No refit is needed.

**Feasibility.** Designs are searched by :func:`rarefy.search.maximize` (feasible Sobol
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
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..config import AcquisitionConfig, RunConfig
from ..errors import InputError
from ..optim.search import feasible_pool, local_pool, maximize
from ..space import DesignSpace

__all__ = ["FidelityPlan", "Proposal", "Acquisition", "fidelity_plans", "propose", "proposals_frame"]

log = logging.getLogger(__name__)

KINDS = ("ivr", "maxvar", "ei", "lcb")
N_CENTERS = 4  # local candidates are drawn around this many best observed designs
_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class FidelityPlan:
    """What a proposed run of one fidelity is: ``events`` per run and its nominal cost (CPU-hours, NaN if unknown).

    ``simulate`` is the fidelity that is actually simulated (default: ``name``): a
    denoised fidelity ``lf-cnp`` is observed by simulating an ``lf`` run and scoring it
    with the CNP, so its plan is the ``lf`` plan with ``simulate="lf"``.
    """

    name: str
    events: int
    cost_cpu_h: float = float("nan")
    simulate: str | None = None

    @property
    def simulated(self) -> str:
        """The fidelity a run of this plan simulates."""
        return self.simulate or self.name


@dataclass
class Proposal:
    """One proposed run: design ``theta``, ``fidelity``, ``events``, nominal ``cost_cpu_h`` and acquisition ``value``.

    ``fidelity`` is the fidelity to simulate; ``valued_as`` the surrogate fidelity whose
    observation the acquisition valued (differs for a denoised fidelity: ``lf-cnp`` is
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


def fidelity_plans(cfg: RunConfig, simulator: Any = None) -> dict[str, FidelityPlan]:
    """Events and nominal run cost of every fidelity of ``cfg``.

    Events: ``acquisition.events[f]``, else the fidelity's ``events``, else the simulator's
    default. Cost of a run (CPU-h): events × ``cost_cpu_h_per_event`` (config or simulator),
    else the fidelity's ``cost_cpu_h`` per run, else NaN. A fidelity without an events
    number gets ``events = 0`` (it cannot be proposed). A denoised fidelity ``<base>-cnp``
    (see :mod:`rarefy.denoising`) without events of its own gets the plan of ``<base>``
    with ``simulate=<base>``: a run of ``base`` is what yields its observation.
    """
    from ..jobs.denoise import SUFFIX

    out = {}
    for f in cfg.fidelities:
        sim_fid = None
        fids = getattr(simulator, "fidelities", None)
        if fids is not None and f.name in fids:
            sim_fid = fids[f.name]
        events = cfg.acquisition.events.get(f.name) or f.events or (sim_fid.events_per_run if sim_fid else 0)
        per_event = f.cost_cpu_h_per_event
        if per_event is None and sim_fid is not None:
            per_event = sim_fid.cost_cpu_h_per_event
        if per_event is not None and events:
            cost = float(per_event) * int(events)
        elif f.cost_cpu_h is not None:
            cost = float(f.cost_cpu_h)
        else:
            cost = float("nan")
        out[f.name] = FidelityPlan(f.name, int(events or 0), cost)
    for name, plan in list(out.items()):
        base = name[: -len(SUFFIX)]
        if name.endswith(SUFFIX) and plan.events == 0 and base in out and out[base].events > 0:
            out[name] = FidelityPlan(name, out[base].events, out[base].cost_cpu_h, simulate=base)
    return out


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(z / _SQRT2))


def _normal_pdf(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)


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
        if not (hasattr(surrogate, "joint") and hasattr(surrogate, "noise_variance")):
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
        if cost_aware:
            allowed = list(fidelities) if fidelities else [f for f in self.names if self.plans.get(f) and self.plans[f].events > 0]
        else:
            allowed = [self.target]
        if not allowed:
            raise InputError("no fidelity can be proposed: none has a number of events per run (set "
                             "acquisition.events or the fidelities' 'events')")
        for f in allowed:
            plan = self.plans.get(f)
            if plan is None or plan.events < 1:
                raise InputError(f"fidelity {f!r} has no events per run: set acquisition.events.{f} or the fidelity's 'events'")
            if cost_aware and not (math.isfinite(plan.cost_cpu_h) and plan.cost_cpu_h > 0):
                raise InputError(f"cost-aware acquisition needs the nominal cost of fidelity {f!r}: set its "
                                 "'cost_cpu_h_per_event' (or 'cost_cpu_h' per run), or acquisition.cost_aware: false")
        self.allowed = allowed
        self.nugget = {f: self.sur.noise_variance(f) for f in self.names}
        if reference is None and kind == "ivr":
            reference = self.space.sample(n_reference, method="sobol", seed=seed + 7919).to_numpy(dtype=float)
        self.reference = None if reference is None else torch.tensor(np.asarray(reference, float), dtype=torch.float64)
        self.pending: list[tuple[np.ndarray, int, float]] = []  # (design, fidelity index, noise variance)
        self.slot_cost_cpu_h = 0.0  # opportunity cost of a run slot (see module docstring); set by propose()
        self.incumbent = float("inf")
        self.observed = None if observed is None else np.asarray(observed, float).reshape(-1, self.space.dim)
        self.centers = np.zeros((0, self.space.dim))  # best observed designs (lowest target mean): local search
        if kind in ("ei", "lcb") and (self.observed is None or len(self.observed) == 0):
            raise InputError("EI and LCB need observed designs for the incumbent")
        if self.observed is not None and len(self.observed):
            uniq = np.unique(self.observed, axis=0)
            with torch.no_grad():
                mean, _ = self.sur.predict(uniq, self.target)
            order = np.argsort(mean.numpy(), kind="stable")
            self.centers = uniq[order[:N_CENTERS]]
            if kind in ("ei", "lcb"):
                self.incumbent = float(mean.min())

    # ---------------------------------------------------------------- values
    def _noise(self, mean_f: torch.Tensor, f: str) -> torch.Tensor:
        n = float(self.plans[f].events)
        return torch.clamp(mean_f, min=1.0 / n) / n + self.nugget[f]

    def value(self, x: torch.Tensor, fidelity: str) -> torch.Tensor:
        """Acquisition value of runs of ``fidelity`` at designs ``x`` (B, d), given the pending runs.

        Differentiable in ``x``; per CPU-hour when cost-aware.
        """
        f_idx = self.names.index(fidelity)
        B = x.shape[0]
        p = len(self.pending)
        r = len(self.reference) if self.kind == "ivr" and self.reference is not None else 0
        # one flat joint posterior over [pending | reference (T) | candidates (f) | candidates (T)]:
        # (p + r + 2B)² entries, one triangular solve (batched solves are much slower)
        xs, fs = [], []
        if p:
            xs.append(torch.as_tensor(np.stack([q[0] for q in self.pending]), dtype=torch.float64))
            fs.append(torch.tensor([q[1] for q in self.pending], dtype=torch.long))
        if r:
            xs.append(self.reference)
            fs.append(torch.full((r,), self.t_idx, dtype=torch.long))
        xs += [x, x]
        fs += [torch.full((B,), f_idx, dtype=torch.long), torch.full((B,), self.t_idx, dtype=torch.long)]
        mean, cov = self.sur.joint(torch.cat(xs), torch.cat(fs))
        if p:  # condition on the pending runs (kriging believer: means unchanged)
            noise = torch.tensor([q[2] for q in self.pending], dtype=torch.float64)
            S = cov[:p, :p] + torch.diag(noise)
            K = cov[p:, :p]
            L = torch.linalg.cholesky(S + 1e-12 * S.diagonal().mean() * torch.eye(p, dtype=torch.float64))
            cov = cov[p:, p:] - K @ torch.cholesky_solve(K.T, L)
            mean = mean[p:]
        ci = torch.arange(r, r + B)
        ti = ci + B
        var_c = cov[ci, ci].clamp_min(0.0)
        cov_tc = cov[ti, ci]
        mean_c, mean_t, var_t = mean[ci], mean[ti], cov[ti, ti]
        s2 = self._noise(mean_c, fidelity)
        if self.kind == "ivr":
            val = (cov[:r, r:r + B] ** 2).mean(0) / (var_c + s2)
        elif self.kind == "maxvar":
            val = cov_tc**2 / (var_c + s2)
        else:
            mu = mean_t
            sd = var_t.clamp_min(1e-300).sqrt()
            if self.kind == "ei":
                z = (self.incumbent - mu) / sd
                val = sd * (z * _normal_cdf(z) + _normal_pdf(z))
            else:
                lcb = mu - self.beta * sd
                val = torch.relu(self.incumbent - lcb) if self.cost_aware else -lcb
            if self.cost_aware:
                corr = (cov_tc / (sd * var_c.clamp_min(1e-300).sqrt())).clamp(0.0, 1.0)
                alpha2 = 1.0 - torch.sqrt(s2 / (var_c + s2))
                val = val * corr * alpha2
        if self.cost_aware:
            val = val / max(self.plans[fidelity].cost_cpu_h, self.slot_cost_cpu_h)
        return val

    def add_pending(self, theta: np.ndarray, fidelity: str) -> float:
        """Add a pending run (kriging believer); returns its assumed noise variance (rate units²)."""
        x = np.asarray(theta, float)
        with torch.no_grad():
            m, _ = self.sur.predict(x[None, :], fidelity)
            noise = float(self._noise(m, fidelity)[0])
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
                res = maximize(self.space, lambda x, f=f: self.value(x, f), pool=pool, starts=starts, steps=steps,
                               chunk=128)
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


def propose(surrogate: Any, cfg: RunConfig, *, q: int = 1, simulator: Any = None, observed: np.ndarray | None = None,
            seed: int | None = None, budget_cpu_h: float | None = None, runs_left: int | None = None,
            settings: AcquisitionConfig | None = None) -> list[Proposal]:
    """Propose ``q`` runs with the config's ``acquisition`` settings (see :class:`Acquisition`).

    ``observed``: designs already simulated (EI/LCB incumbent); ``seed`` defaults to the
    config's. ``budget_cpu_h`` caps the batch's nominal cost; with ``runs_left`` (run
    slots left in the loop, this batch included) a cost-aware acquisition divides by
    ``max(cost, budget_cpu_h / runs_left)`` (opportunity cost, see the module docstring).
    Every proposal is a feasible design of the config's space.
    """
    acq_cfg = settings or cfg.acquisition
    seed = cfg.seed if seed is None else seed
    acq = Acquisition(surrogate, fidelity_plans(cfg, simulator), kind=acq_cfg.kind, cost_aware=acq_cfg.cost_aware,
                      beta=acq_cfg.beta, target=cfg.target, fidelities=acq_cfg.fidelities, observed=observed,
                      n_reference=acq_cfg.reference, seed=seed)
    if budget_cpu_h is not None and runs_left:
        acq.slot_cost_cpu_h = max(float(budget_cpu_h), 0.0) / int(runs_left)
    return acq.propose(q, candidates=acq_cfg.candidates, starts=acq_cfg.starts, steps=acq_cfg.steps, seed=seed,
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
