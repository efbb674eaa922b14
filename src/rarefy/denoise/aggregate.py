"""Per-run denoised rates from per-event CNP probabilities, as RateTable rows.

For run ``r`` with events ``i = 1..n`` scored ``p̄_i ± σ_i`` (:func:`rarefy.denoise.score`):

- **rate** ``t̂_r = (1/n) Σ_i p̄_i`` — the run's expected signal probability per event;
- **variance** ``var_r = s²_p / n + (σ̄)²``, where ``s²_p`` is the sample variance of the
  ``p̄_i`` over the run (ddof 1; 0 for n = 1), i.e. the finite number of events (the φ
  of the run are a random sample), and ``σ̄ = (1/n) Σ_i σ_i`` the model's per-event
  uncertainty, taken as **fully correlated** across the run's events (a systematic
  model error does not average out) — a conservative bound.

Rows carry the observed ``k`` and ``n`` and fidelity ``<fidelity>-cnp``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ..data.rates import RateTable
from ..errors import InputError
from ..space import DesignSpace
from .score import Scores

__all__ = ["aggregate", "aggregate_frame"]


def aggregate_frame(scores: Scores, fidelity: str | None = None, suffix: str = "-cnp",
                    cost_cpu_h: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per run: θ columns, fidelity, rate, var, k, n, run_id (and cost_cpu_h when given)."""
    if np.isnan(scores.p).any():
        raise InputError("some events have no score (scored with a target mask?); aggregate needs every event scored")
    starts = scores.run_starts
    n = np.diff(starts).astype(np.float64)
    p = scores.p.astype(np.float64)
    c1 = np.concatenate([[0.0], np.cumsum(p)])
    c2 = np.concatenate([[0.0], np.cumsum(p * p)])
    cs = np.concatenate([[0.0], np.cumsum(scores.sigma.astype(np.float64))])
    cy = np.concatenate([[0.0], np.cumsum(scores.y.astype(np.float64))])
    s1 = c1[starts[1:]] - c1[starts[:-1]]
    s2 = c2[starts[1:]] - c2[starts[:-1]]
    rate = s1 / n
    var_p = np.where(n > 1, np.maximum(s2 - n * rate**2, 0.0) / np.maximum(n - 1, 1), 0.0)
    sig = (cs[starts[1:]] - cs[starts[:-1]]) / n
    frame = pd.DataFrame(scores.theta, columns=scores.theta_names)
    if fidelity is not None:
        fids = [fidelity] * len(n)
    elif scores.fidelity is not None:
        fids = list(scores.fidelity)
    else:
        raise InputError("the events carry no fidelity; pass fidelity=... to aggregate")
    frame["fidelity"] = [f"{f}{suffix}" for f in fids]
    frame["rate"] = rate
    frame["var"] = var_p / n + sig**2
    frame["k"] = np.rint(cy[starts[1:]] - cy[starts[:-1]])
    frame["n"] = n
    if cost_cpu_h is not None:
        frame["cost_cpu_h"] = [float(cost_cpu_h.get(r, np.nan)) for r in scores.run_ids]
    frame["run_id"] = scores.run_ids
    return frame


def aggregate(scores: Scores, space: DesignSpace, fidelity: str | None = None, suffix: str = "-cnp",
              cost_cpu_h: Mapping[str, float] | None = None) -> RateTable:
    """:func:`aggregate_frame` as a validated :class:`rarefy.RateTable` over ``space``."""
    return RateTable(aggregate_frame(scores, fidelity, suffix, cost_cpu_h), space)
