"""Per-run denoised rates from per-event signal probabilities, as RateTable rows.

For run ``r`` with events ``i = 1..n`` scored ``p̄_i ± σ_i`` (:func:`rarefy.denoise.score`):

- **rate** ``t̂_r = (1/n) Σ_i p̄_i`` — the run's expected signal probability per event;
- **variance** ``var_r = s²_p / n``, where ``s²_p`` is the sample variance of the ``p̄_i``
  over the run (ddof 1; 0 for n = 1): the noise of the finite number of events (the φ of
  the run are a random sample). This is the part of the error that is independent from
  run to run, which is what a GP's per-point noise means.
- **model_sigma** ``σ̄ = (1/n) Σ_i σ_i``, the model's per-event uncertainty taken as fully
  correlated across the run's events: a conservative bound on the model's error of this
  run's rate, reported but **not** added to ``var`` by default. One model scores every
  run, so its error is systematic across designs, not per-run noise: the AR1 surrogate
  learns it as the ``-denoised`` level's own surface and nugget and the next level's δ(θ).
  Added as per-run noise (``model_error=True``, the earlier behaviour) it is several
  times the real scatter of the rates (median σ̄/t̂ ≈ 0.2 on the moderator, where the rates
  scatter by 4–7% about the exact rate); the GP then smooths the ``-denoised`` level flat and
  loses the extreme designs (docs/denoise.md, "Per-run variance").

Rows carry the observed ``k`` and ``n`` and fidelity ``<fidelity>-denoised``.
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


def aggregate_frame(scores: Scores, fidelity: str | None = None, suffix: str = "-denoised",
                    cost_cpu_h: Mapping[str, float] | None = None, model_error: bool = False) -> pd.DataFrame:
    """One row per run: θ columns, fidelity, rate, var, model_sigma, k, n, run_id (and cost_cpu_h when given).

    ``model_error=True`` adds ``model_sigma²`` to ``var`` (the conservative bound, see the module docstring).
    """
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
    frame["var"] = var_p / n + (sig**2 if model_error else 0.0)
    frame["model_sigma"] = sig
    frame["k"] = np.rint(cy[starts[1:]] - cy[starts[:-1]])
    frame["n"] = n
    if cost_cpu_h is not None:
        frame["cost_cpu_h"] = [float(cost_cpu_h.get(r, np.nan)) for r in scores.run_ids]
    frame["run_id"] = scores.run_ids
    return frame


def aggregate(scores: Scores, space: DesignSpace, fidelity: str | None = None, suffix: str = "-denoised",
              cost_cpu_h: Mapping[str, float] | None = None, model_error: bool = False) -> RateTable:
    """:func:`aggregate_frame` as a validated :class:`rarefy.RateTable` over ``space``."""
    return RateTable(aggregate_frame(scores, fidelity, suffix, cost_cpu_h, model_error), space)
