"""A bounded generation level: the simulated range and the logit coordinates a flow is fitted in.

When the generator lives on a bounded range (XLZD's 2–13 keV), a flow over x itself leaks
probability past the edges, where no simulated event constrains anything. In the
coordinates

    u = logit((x − lo) / (hi − lo)) ,

with [lo, hi] the simulated range widened by 0.1 % on each side, the edges are at ±∞, so a
flow in u puts all of its probability inside. A density in u converts back with

    log p(x) = log p(u) + log |du/dx| ,   log |du/dx| = log(hi − lo) − log(x − lo) − log(hi − x) ,

and is zero outside the range. Every function takes ``support`` None for an unbounded
level, where u is x.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit

from .base import Problem

__all__ = ["from_u", "inside", "log_du_dx", "simulated_range", "to_u"]

Support = tuple[np.ndarray, np.ndarray]


def simulated_range(p: Problem) -> Support:
    """Per generation-level column, the simulated smallest to largest value widened by 0.1 % on each side
    (units of x)."""
    lo, hi = p.sim_gen.min(0), p.sim_gen.max(0)
    pad = 1e-3 * np.maximum(hi - lo, 1e-12)
    return lo - pad, hi + pad


def to_u(x: np.ndarray, support: Support | None) -> np.ndarray:
    """The flow's coordinates of generation-level x (n, d): logit of x's position in ``support`` (x itself
    without one; NaN outside it)."""
    if support is None:
        return x
    lo, hi = support
    with np.errstate(invalid="ignore", divide="ignore"):
        return logit((x - lo) / (hi - lo))


def from_u(u: np.ndarray, support: Support | None) -> np.ndarray:
    """Generation-level x (units of x) of the flow's coordinates u (the inverse of :func:`to_u`)."""
    if support is None:
        return u
    lo, hi = support
    return lo + (hi - lo) * expit(u)


def inside(x: np.ndarray, support: Support | None) -> np.ndarray:
    """(n,) whether each row of x lies strictly inside ``support`` (all True without one)."""
    if support is None:
        return np.ones(len(x), bool)
    lo, hi = support
    return np.all((x > lo) & (x < hi), axis=1)


def log_du_dx(x: np.ndarray, support: Support | None) -> np.ndarray:
    """(n,) log |du/dx| summed over columns (log of 1 / units of x); 0 without a support, NaN outside it."""
    if support is None:
        return np.zeros(len(x))
    lo, hi = support
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.log(hi - lo) - np.log(x - lo) - np.log(hi - x)).sum(1)
