"""Multistart maximisation of a differentiable function over the feasible designs of a DesignSpace.

The scheme, used by acquisition (:mod:`rarefy.acquisition`) and design optimisation
(:mod:`rarefy.optim.design`):

1. **Pool.** ``candidates`` feasible designs from a scrambled Sobol sequence
   (:meth:`DesignSpace.sample`, which rejects infeasible points), plus any ``extra``
   feasible designs the caller adds (e.g. the training designs), plus optionally a
   **local** pool (:func:`local_pool`): Gaussian perturbations of a few promising designs
   (the incumbent, the best observed ones), so that the search also looks closely where
   the objective is already known to be good — a global Sobol pool of ~1000 points is
   sparse in 5-D, and a feasible region of a few percent of the box makes it sparser.
2. **Screen.** The function is evaluated on the whole pool without gradients (in chunks);
   the ``starts`` best distinct designs are kept.
3. **Refine.** All starts move together by normalised gradient ascent in the unit cube
   (torch autograd through the surrogate). A step is accepted only where the moved
   design — clipped to the bounds, integer parameters rounded — is **feasible** (bounds,
   integers, every constraint, checked with :meth:`DesignSpace.is_feasible`) and
   improves the value; otherwise that start's step size is halved. Feasibility is
   therefore kept by rejection: every returned design passed the same check that
   :meth:`DesignSpace.sample` applies.

The result is deterministic for a given seed. Nothing here knows about surrogates: the
caller passes ``fn(x) -> values``, ``x`` a float64 torch tensor (n, d) in parameter units.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..space import DesignSpace
from ..threads import torch_threads

__all__ = ["SearchResult", "maximize", "feasible_pool", "local_pool"]

log = logging.getLogger(__name__)

ValueFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SearchResult:
    """Best feasible design found: ``x`` (d,) in parameter units, its ``value``, and all refined starts."""

    x: np.ndarray
    value: float
    starts_x: np.ndarray
    starts_value: np.ndarray


def feasible_pool(space: DesignSpace, n: int, seed: int, extra: np.ndarray | None = None) -> np.ndarray:
    """``n`` feasible Sobol designs (n, d), plus the feasible rows of ``extra``."""
    pool = space.sample(n, method="sobol", seed=seed).to_numpy(dtype=float)
    if extra is not None and len(extra):
        extra = np.asarray(extra, dtype=float)
        pool = np.concatenate([pool, extra[space.is_feasible(extra)]])
    return pool


def local_pool(space: DesignSpace, centers: np.ndarray, n: int, seed: int, scale: float = 0.05) -> np.ndarray:
    """About ``n`` feasible designs (m, d) near ``centers`` (k, d), parameter units.

    Each design is a centre plus a Gaussian step of standard deviation ``scale`` per
    coordinate in the unit cube (so ``scale=0.05`` is 5% of every range), clipped to the
    bounds, integer parameters rounded; infeasible ones are dropped (so m ≤ n). The
    centres take turns; deterministic for ``seed``.
    """
    centers = np.atleast_2d(np.asarray(centers, dtype=float))
    if n <= 0 or len(centers) == 0:
        return np.zeros((0, space.dim))
    rng = np.random.default_rng(seed)
    lo, hi = space.bounds
    base = centers[np.arange(n) % len(centers)]
    u = (base - lo) / (hi - lo) + rng.normal(0.0, scale, size=base.shape)
    x = _round(space, lo + np.clip(u, 0.0, 1.0) * (hi - lo))
    return x[space.is_feasible(x)]


def _evaluate(fn: ValueFn, x: np.ndarray, chunk: int) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            out.append(fn(torch.tensor(x[i:i + chunk], dtype=torch.float64)).detach().numpy())
    values = np.concatenate(out) if out else np.zeros(0)
    return np.where(np.isfinite(values), values, -np.inf)


def _value_and_grad(fn: ValueFn, x: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values and gradients with respect to unit-cube coordinates at designs ``x`` (one call of ``fn``)."""
    xt = torch.as_tensor(x, dtype=torch.float64).requires_grad_(True)
    val = fn(xt)
    (grad,) = torch.autograd.grad(val.sum(), xt)
    g = grad.detach().numpy() * width
    g = np.where(np.isfinite(g), g, 0.0)
    return val.detach().numpy(), g


def _round(space: DesignSpace, x: np.ndarray) -> np.ndarray:
    x = np.clip(x, *space.bounds)
    for j, p in enumerate(space.parameters):
        if p.integer:
            x[..., j] = np.clip(np.round(x[..., j]), np.ceil(p.low), np.floor(p.high))
    return x


def maximize(
    space: DesignSpace,
    fn: ValueFn,
    *,
    pool: np.ndarray,
    starts: int = 4,
    steps: int = 25,
    step_size: float = 0.05,
    chunk: int = 256,
) -> SearchResult:
    """Maximise ``fn`` over feasible designs: screen ``pool``, refine the best ``starts`` (see module docstring).

    ``pool`` must hold feasible designs (n, d) in parameter units (see :func:`feasible_pool`).
    ``step_size`` is the first step length in the unit cube (Euclidean). Returns the
    best design; it is always one of the pool designs or a feasible refinement of one.
    """
    pool = np.asarray(pool, dtype=float)
    if pool.ndim != 2 or len(pool) == 0:
        raise ValueError("the candidate pool is empty")
    with torch_threads(1):  # small GP algebra: one thread is 20-30x faster on a busy machine
        return _maximize(space, fn, pool, starts, steps, step_size, chunk)


def _maximize(space: DesignSpace, fn: ValueFn, pool: np.ndarray, starts: int, steps: int, step_size: float,
              chunk: int) -> SearchResult:
    values = _evaluate(fn, pool, chunk)
    order = np.argsort(-values, kind="stable")
    picked: list[int] = []
    for i in order:  # distinct starts (the pool may repeat designs)
        if not any(np.allclose(pool[i], pool[j]) for j in picked):
            picked.append(int(i))
        if len(picked) == starts:
            break
    x = pool[picked].copy()
    v = values[picked].copy()
    lo, hi = space.bounds
    width = hi - lo
    size = np.full(len(x), step_size)
    g = np.zeros_like(x)
    if steps > 0:
        v_g, g = _value_and_grad(fn, x, width)
        v = np.where(np.isfinite(v_g), v_g, v)
    for _ in range(steps):
        norm = np.linalg.norm(g, axis=1, keepdims=True)
        active = (size > 1e-4) & np.isfinite(v) & (norm[:, 0] > 0) & np.isfinite(norm[:, 0])
        if not active.any():
            break
        idx = np.flatnonzero(active)
        u_new = (x[idx] - lo) / width + g[idx] / norm[idx] * size[idx, None]
        x_new = _round(space, lo + np.clip(u_new, 0.0, 1.0) * width)
        moved = ~np.all(np.isclose(x_new, x[idx]), axis=1)
        feasible = space.is_feasible(x_new) & moved
        better = np.zeros(len(idx), dtype=bool)
        if feasible.any():
            v_new, g_new = _value_and_grad(fn, x_new[feasible], width)
            sel = idx[feasible]
            ok = np.isfinite(v_new) & (v_new > v[sel])
            better[np.flatnonzero(feasible)[ok]] = True
            x[sel[ok]], v[sel[ok]], g[sel[ok]] = x_new[feasible][ok], v_new[ok], g_new[ok]
        size[idx[~better]] *= 0.5
    best = int(np.argmax(v))
    return SearchResult(x=x[best].copy(), value=float(v[best]), starts_x=x, starts_value=v)
