"""Multi-objective acquisition: Pareto proposals (BoTorch qLogNEHVI / qLogNParEGO), the estimated front, hypervolume.

Every objective is **minimised**. The objectives' surrogates form a BoTorch
``ModelList`` (:func:`objectives_model`, each at the proposal fidelity); the acquisitions'
objective negates the outputs since BoTorch maximises (``WeightedMCMultiOutputObjective``
with weights −1), and the reference point is negated with them.

* :func:`propose_pareto`: ``qnehvi`` is BoTorch's ``qLogNoisyExpectedHypervolumeImprovement``
  over the observed designs (X_baseline, inferior ones pruned); ``qparego`` is
  ``qLogNParEGO`` (random augmented-Chebyshev weights per proposal). Objectives with
  ``max`` become outcome constraints (feasibility-weighted improvement). Bounds and
  constraints of the design space are kept by the feasible multistart search of
  :func:`rarefy.optim.search.maximize`. A batch is built greedily: each chosen design is
  passed to the next one as ``X_pending`` (BoTorch integrates over its unknown outcome).
* :func:`estimate_front`: the non-dominated set of the posterior means over
  ``front_candidates`` feasible Sobol designs plus the observed designs (meeting every
  ``max``), sorted by the first objective and thinned evenly to at most ``front_max``
  points, each with its posterior σ per objective.
* :func:`hypervolume` (BoTorch ``Hypervolume``), :func:`non_dominated`, :func:`reference_point`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np
import torch
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import WeightedMCMultiOutputObjective
from botorch.acquisition.multi_objective.parego import qLogNParEGO
from botorch.models.model import ModelList
from botorch.sampling import ListSampler, SobolQMCNormalSampler
from botorch.utils.multi_objective.hypervolume import Hypervolume
from botorch.utils.multi_objective.pareto import is_non_dominated

from ..config import ObjectiveConfig, ParetoConfig
from ..optim.search import feasible_pool, maximize
from ..space import DesignSpace
from ..threads import torch_threads

__all__ = ["objectives_model", "propose_pareto", "estimate_front", "front_values", "hypervolume", "non_dominated",
           "reference_point"]

log = logging.getLogger(__name__)


def non_dominated(y: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``y`` (n, m), every column minimised."""
    y = np.asarray(y, float)
    if len(y) == 0:
        return np.zeros(0, bool)
    return is_non_dominated(-torch.as_tensor(y, dtype=torch.float64), deduplicate=True).numpy()


def hypervolume(y: np.ndarray, ref: Sequence[float]) -> float:
    """Hypervolume dominated by the rows of ``y`` (n, m; minimised) up to the reference point ``ref`` (botorch)."""
    y = np.asarray(y, float)
    ref_t = -torch.as_tensor(np.asarray(ref, float), dtype=torch.float64)
    if len(y) == 0:
        return 0.0
    pts = -torch.as_tensor(y, dtype=torch.float64)
    pts = pts[(pts > ref_t).all(-1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[torch.as_tensor(non_dominated(-pts.numpy()))]
    return float(Hypervolume(ref_t).compute(pts))


def reference_point(objectives: Sequence[ObjectiveConfig], values: np.ndarray) -> np.ndarray:
    """The configured reference point, or per objective the worst observed value + 10% of the observed range."""
    ref = []
    for j, obj in enumerate(objectives):
        if obj.reference is not None:
            ref.append(float(obj.reference))
            continue
        col = values[:, j][np.isfinite(values[:, j])]
        lo, hi = (float(col.min()), float(col.max())) if len(col) else (0.0, 1.0)
        spread = max(hi - lo, 1e-6 * abs(hi))  # relative: the same reference point in any unit
        ref.append(hi + 0.1 * (spread if spread > 0 else 1.0))
    return np.asarray(ref)


# --------------------------------------------------------------- acquisition
def _constraints(objectives: Sequence[ObjectiveConfig]) -> list[Callable[[torch.Tensor], torch.Tensor]] | None:
    cons = []
    for j, obj in enumerate(objectives):
        if obj.max is not None:
            bound = float(obj.max)
            cons.append(lambda Z, j=j, b=bound: Z[..., j] - b)  # Z: model-output samples; <= 0 is feasible
    return cons or None


def objectives_model(surrogates: Sequence[Any], fidelity: str) -> ModelList:
    """A BoTorch ``ModelList`` of the surrogates' posteriors at ``fidelity`` (a surrogate without it: its target)."""
    return ModelList(*[s.at_fidelity(fidelity if fidelity in s.fidelities else None) for s in surrogates])


def propose_pareto(surrogates: dict[str, Any], objectives: Sequence[ObjectiveConfig], space: DesignSpace,
                   fidelity: str, observed: np.ndarray, ref: np.ndarray, *, q: int = 1,
                   settings: ParetoConfig | None = None, seed: int = 0) -> list[tuple[np.ndarray, float]]:
    """``q`` designs (parameter units) by greedy qLogNEHVI / qLogNParEGO with pending points: [(x, value)].

    The model is a ``ModelList`` of the objectives' surrogates; every objective is
    minimised, so the acquisition's objective negates the outputs (BoTorch maximises) and
    the reference point is negated with them. Objectives with ``max`` are outcome
    constraints on the model outputs.
    """
    settings = settings or ParetoConfig()
    model = objectives_model([surrogates[o.name] for o in objectives], fidelity)
    minimise = WeightedMCMultiOutputObjective(weights=-torch.ones(len(objectives), dtype=torch.float64))
    x_base = torch.as_tensor(np.unique(np.asarray(observed, float), axis=0), dtype=torch.float64)
    cons = _constraints(objectives)
    pool = feasible_pool(space, settings.candidates, seed, extra=observed)
    out: list[tuple[np.ndarray, float]] = []
    pending: list[np.ndarray] = []
    with torch_threads(1):
        for j in range(q):
            sampler = ListSampler(*[SobolQMCNormalSampler(sample_shape=torch.Size([settings.mc_samples]),
                                                          seed=seed + j + 7919 * k) for k in range(len(objectives))])
            x_pending = torch.as_tensor(np.stack(pending), dtype=torch.float64) if pending else None
            # baseline pruning and ParEGO's weights draw from torch's global generator: seed a forked one
            with torch.random.fork_rng():
                torch.manual_seed(seed * 1000 + j)
                if settings.acquisition == "qnehvi":
                    acq = qLogNoisyExpectedHypervolumeImprovement(
                        model=model, ref_point=(-torch.as_tensor(ref, dtype=torch.float64)).tolist(),
                        X_baseline=x_base, sampler=sampler, objective=minimise, constraints=cons,
                        X_pending=x_pending, prune_baseline=True, cache_root=False)
                else:
                    acq = qLogNParEGO(model=model, X_baseline=x_base, sampler=sampler, objective=minimise,
                                      constraints=cons, X_pending=x_pending, prune_baseline=True, cache_root=False)

            def value(x: torch.Tensor, acq: Any = acq) -> torch.Tensor:
                return acq(x.unsqueeze(-2))

            res = maximize(space, value, pool=pool, starts=settings.starts, steps=settings.steps, chunk=128)
            out.append((res.x, float(res.value)))
            pending.append(res.x)
            log.debug("pareto proposal %d: %s (log-acquisition %.4g)", j, res.x, res.value)
    return out


# ----------------------------------------------------------------- the front
def estimate_front(surrogates: dict[str, Any], objectives: Sequence[ObjectiveConfig], space: DesignSpace,
                   fidelity: str, *, observed: np.ndarray | None = None, settings: ParetoConfig | None = None,
                   seed: int = 0) -> list[dict[str, Any]]:
    """The estimated Pareto set: [{"theta", "objectives": {name: {"mean", "sigma"}}}], sorted by the first objective."""
    settings = settings or ParetoConfig()
    pool = feasible_pool(space, settings.front_candidates, seed + 7, extra=observed)
    means, stds = [], []
    with torch_threads(1), torch.no_grad():
        for obj in objectives:
            sur = surrogates[obj.name]
            fid = fidelity if fidelity in sur.fidelities else sur.fidelities[-1]
            m, s = sur.predict(pool, fid)
            means.append(m.numpy())
            stds.append(s.numpy())
    M, S = np.stack(means, 1), np.stack(stds, 1)
    ok = np.ones(len(pool), bool)
    for j, obj in enumerate(objectives):
        if obj.max is not None:
            ok &= M[:, j] <= obj.max
    idx = np.flatnonzero(ok)
    idx = idx[non_dominated(M[idx])]
    idx = idx[np.argsort(M[idx, 0], kind="stable")]
    if len(idx) > settings.front_max:
        idx = idx[np.unique(np.round(np.linspace(0, len(idx) - 1, settings.front_max)).astype(int))]
    front = []
    for i in idx:
        theta = space.round_theta(dict(zip(space.names, pool[i])))
        front.append({"theta": theta, "objectives": {o.name: {"mean": float(M[i, j]), "sigma": float(S[i, j])}
                                                     for j, o in enumerate(objectives)}})
    return front


def front_values(front: list[dict[str, Any]], objectives: Sequence[ObjectiveConfig]) -> np.ndarray:
    """Posterior means of a front as an array (n, m)."""
    return np.array([[p["objectives"][o.name]["mean"] for o in objectives] for p in front]).reshape(-1, len(objectives))
