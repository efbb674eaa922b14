"""Iterative Bayesian unfolding (D'Agostini), binned, with a Poisson bootstrap for the uncertainty.

**Binning.** One generation-level column x is binned into gen bins i = 1..B (``edges``,
or ``bins`` equal bins over ``range``); events outside become an underflow and an
overflow gen bin, unfolded like the others, so that no true event is silently lost. One
reconstructed column y is binned into reco bins j (``rec_edges`` or ``rec_bins`` equal
bins over the 0.1–99.9 % quantiles of data and passed simulation, plus under- and
overflow). With several reconstructed columns the method uses one of them:
``rec_column``, or by default the one whose simulated values are most correlated
(|Pearson r| over passed events) with x, the "gen-level-matched" observable (for XLZD
the combined energy). Using only one column throws away information the neural methods
keep; that is the price of a binned baseline.

**Response.** From the weighted simulation,

    R_ji = P(reco bin j, pass | gen bin i) = Σ_{sim ∈ i, pass, ∈ j} w / Σ_{sim ∈ i} w ,

so the efficiency ε_i = Σ_j R_ji comes out of the same matrix: events that failed
reconstruction count in the denominator only.

**Iteration.** Starting from a prior p⁰ (the simulation's gen histogram, or flat), Bayes'
theorem gives the probability that an event in reco bin j came from gen bin i,

    P(i | j) = R_ji p_i / Σ_k R_jk p_k ,

and the measured counts d_j (weighted) are shared back and corrected for efficiency,

    n_i = (1 / ε_i) Σ_j P(i | j) d_j ,      p_i ← n_i / Σ_k n_k .

Each iteration is one EM step of the Poisson likelihood of d given R and p (Shepp–Vardi);
as iterations → ∞ it tends to the maximum-likelihood (matrix-inversion) solution with its
large oscillating variance, so a few iterations (``iterations``, default 4) regularise
towards the prior. Gen bins that no passed simulated event reaches (ε_i = 0) cannot be
unfolded and keep probability 0 (listed in ``info["unreached_bins"]``).

**Uncertainty.** Member 0 to ``members − 1`` each multiply every data weight by an
independent Poisson(1) draw (the statistical fluctuation of the measurement) and, with
``bootstrap_sim``, every simulated weight too (the finite simulation behind R), then
unfold. The spread of the members is the statistical uncertainty, prior dependence and
binning bias not included.

**Result.** Each member is the set of gen-bin centres with weight = unfolded probability
of the bin, so :meth:`Unfolded.histogram` on the same ``edges`` returns the unfolded
probabilities. Under/overflow bins sit at the simulation's weighted mean of x in that
region (outside ``edges``, so they count in the total but in no bin). ``info`` holds the
edges, the chosen columns, the efficiency per bin and ``n_true`` (the efficiency-corrected
number of true events, Σ n_i, mean over members).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import InputError
from .base import Problem, Unfolded

__all__ = ["IterativeBayes", "ibu_iterate", "response_matrix"]

log = logging.getLogger(__name__)


def response_matrix(gen_bin: np.ndarray, rec_bin: np.ndarray, passed: np.ndarray, weight: np.ndarray,
                    n_gen: int, n_rec: int) -> np.ndarray:
    """R[j, i] = Σ w(gen bin i, passed, reco bin j) / Σ w(gen bin i), shape (n_rec, n_gen); columns of
    gen bins without simulated events are 0."""
    num = np.zeros((n_rec, n_gen))
    np.add.at(num, (rec_bin[passed], gen_bin[passed]), weight[passed])
    den = np.bincount(gen_bin, weights=weight, minlength=n_gen)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def ibu_iterate(response: np.ndarray, data: np.ndarray, prior: np.ndarray, iterations: int) -> np.ndarray:
    """``iterations`` D'Agostini steps; returns the efficiency-corrected true counts n_i (shape (n_gen,)).

    ``response`` is R[j, i] (reco × gen), ``data`` the (weighted) counts per reco bin and
    ``prior`` the starting gen distribution (any positive scale).
    """
    eff = response.sum(axis=0)
    reach = eff > 0
    if not reach.any():
        raise InputError("ibu: no passed simulated event in any gen bin; nothing can be unfolded")
    p = np.where(reach, np.asarray(prior, dtype=float), 0.0)
    if p.sum() <= 0:
        p = reach.astype(float)
    p = p / p.sum()
    n = p * data.sum()
    for _ in range(int(iterations)):
        folded = response @ p                                      # expected reco distribution (up to scale)
        ratio = np.divide(data, folded, out=np.zeros_like(data, dtype=float), where=folded > 0)
        n = np.where(reach, p * (response.T @ ratio) / np.where(reach, eff, 1.0), 0.0)
        total = n.sum()
        if total <= 0:
            break
        p = n / total
    return n


def _edges(values: np.ndarray, weights: np.ndarray, bins: int, lo_q: float, hi_q: float) -> np.ndarray:
    order = np.argsort(values)
    cw = np.cumsum(weights[order])
    cw /= cw[-1]
    lo = values[order][np.searchsorted(cw, lo_q)]
    hi = values[order][min(np.searchsorted(cw, hi_q), len(order) - 1)]
    if not hi > lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, bins + 1)


def _bin(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index with underflow 0, bins 1..B, overflow B + 1."""
    return np.searchsorted(edges, values, side="right").clip(0, len(edges))


@dataclass
class IterativeBayes:
    """Binned D'Agostini iterative Bayesian unfolding of one gen column (see the module docstring).

    Parameters
    ----------
    column:
        Generation-level column to unfold (default: the first).
    rec_column:
        Reconstructed column to bin (default: the one most correlated with ``column``).
    edges:
        Gen-bin edges in the column's unit (increasing); default ``bins`` equal bins over ``range``.
    bins:
        Number of gen bins when ``edges`` is not given.
    range:
        [low, high] of the gen bins; default the 0.1–99.9 % quantiles of the simulated column.
    rec_edges, rec_bins:
        Reco-bin edges, or their number (default twice the gen bins) over the 0.1–99.9 %
        quantiles of data and passed simulation.
    iterations:
        D'Agostini iterations (the regularisation: fewer stays closer to the prior).
    prior:
        ``"sim"`` (the simulation's gen histogram) or ``"flat"``.
    members:
        Poisson-bootstrap replicas (≥ 2 for an uncertainty).
    bootstrap_sim:
        Also bootstrap the simulation (the response matrix's own statistical error).
    """

    column: str | None = None
    rec_column: str | None = None
    edges: list[float] | None = None
    bins: int = 20
    range: list[float] | None = None
    rec_edges: list[float] | None = None
    rec_bins: int | None = None
    iterations: int = 4
    prior: Literal["sim", "flat"] = "sim"
    members: int = 20
    bootstrap_sim: bool = True

    name = "ibu"

    def __post_init__(self) -> None:
        if self.edges is not None:
            e = np.asarray(self.edges, dtype=float)
            if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
                raise InputError(f"ibu: edges must be at least two increasing finite numbers, got {self.edges}")
        if self.rec_edges is not None:
            e = np.asarray(self.rec_edges, dtype=float)
            if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
                raise InputError(f"ibu: rec_edges must be at least two increasing finite numbers, got "
                                 f"{self.rec_edges}")
        if self.range is not None and (len(self.range) != 2 or not (math.isfinite(self.range[0])
                                                                   and math.isfinite(self.range[1])
                                                                   and self.range[0] < self.range[1])):
            raise InputError(f"ibu: range must be [low, high] with low < high, got {self.range}")
        for key, low in (("bins", 1), ("iterations", 0), ("members", 1)):
            value = getattr(self, key)
            if not isinstance(value, int) or value < low or value > 100_000:
                raise InputError(f"ibu: {key} must be an integer in [{low}, 100000], got {value!r}")
        if self.rec_bins is not None and (not isinstance(self.rec_bins, int) or not 1 <= self.rec_bins <= 100_000):
            raise InputError(f"ibu: rec_bins must be an integer in [1, 100000], got {self.rec_bins!r}")
        if self.prior not in ("sim", "flat"):
            raise InputError(f"ibu: prior must be 'sim' or 'flat', got {self.prior!r}")

    # ------------------------------------------------------------------ columns and bins
    def _columns(self, problem: Problem) -> tuple[int, int]:
        gc = 0
        if self.column is not None:
            if self.column not in problem.gen_names:
                raise InputError(f"ibu: no generation-level column {self.column!r} (have "
                                 f"{', '.join(problem.gen_names)})", column=self.column)
            gc = problem.gen_names.index(self.column)
        if self.rec_column is not None:
            if self.rec_column not in problem.rec_names:
                raise InputError(f"ibu: no reconstructed column {self.rec_column!r} (have "
                                 f"{', '.join(problem.rec_names)})", column=self.rec_column)
            return gc, problem.rec_names.index(self.rec_column)
        if len(problem.rec_names) == 1:
            return gc, 0
        x = problem.sim_gen[problem.sim_pass, gc]
        best, rc = -1.0, 0
        for k in range(len(problem.rec_names)):
            y = problem.sim_rec[problem.sim_pass, k]
            r = abs(float(np.corrcoef(x, y)[0, 1])) if np.std(x) > 0 and np.std(y) > 0 else 0.0
            if r > best:
                best, rc = r, k
        return gc, rc

    def binning(self, problem: Problem) -> tuple[int, int, np.ndarray, np.ndarray]:
        """(gen column index, reco column index, gen edges, reco edges) this method uses on ``problem``."""
        gc, rc = self._columns(problem)
        if self.edges is not None:
            gen_edges = np.asarray(self.edges, dtype=float)
        elif self.range is not None:
            gen_edges = np.linspace(self.range[0], self.range[1], self.bins + 1)
        else:
            gen_edges = _edges(problem.sim_gen[:, gc], problem.sim_weight, self.bins, 0.001, 0.999)
        if self.rec_edges is not None:
            rec_edges = np.asarray(self.rec_edges, dtype=float)
        else:
            p = problem.sim_pass
            vals = np.concatenate([problem.sim_rec[p, rc], problem.data_rec[:, rc]])
            w = np.concatenate([problem.sim_weight[p] / problem.sim_weight[p].sum(),
                                problem.data_weight / problem.data_weight.sum()])
            rec_edges = _edges(vals, w, self.rec_bins or 2 * (len(gen_edges) - 1), 0.001, 0.999)
        return gc, rc, gen_edges, rec_edges

    # ------------------------------------------------------------------ unfold
    def unfold(self, problem: Problem, seed: int) -> Unfolded:
        """Unfold the gen column; ``members`` Poisson-bootstrap replicas (see the module docstring)."""
        gc, rc, gen_edges, rec_edges = self.binning(problem)
        nb = len(gen_edges) - 1
        n_gen, n_rec = nb + 2, len(rec_edges) + 1
        x = problem.sim_gen[:, gc]
        g = _bin(x, gen_edges)
        r = np.zeros(problem.n_sim, dtype=int)
        r[problem.sim_pass] = _bin(problem.sim_rec[problem.sim_pass, rc], rec_edges)
        d_bin = _bin(problem.data_rec[:, rc], rec_edges)
        # where the under/overflow gen bins sit: the simulation's weighted mean of x there
        width = gen_edges[-1] - gen_edges[0]
        centres = np.empty(n_gen)
        centres[1:-1] = 0.5 * (gen_edges[1:] + gen_edges[:-1])
        for k, side, fallback in ((0, x < gen_edges[0], gen_edges[0] - 0.05 * width),
                                  (n_gen - 1, x >= gen_edges[-1], gen_edges[-1] + 0.05 * width)):
            ws = problem.sim_weight[side]
            centres[k] = float(np.sum(ws * x[side]) / ws.sum()) if ws.sum() > 0 else fallback
        rng = np.random.default_rng([int(seed), 0x1B0])
        sw, dw = problem.sim_weight, problem.data_weight
        members: list[tuple[np.ndarray, np.ndarray]] = []
        totals, effs = [], []
        for m in range(self.members):
            dwm = dw * rng.poisson(1.0, dw.shape[0]) if self.members > 1 else dw
            swm = sw * rng.poisson(1.0, sw.shape[0]) if (self.members > 1 and self.bootstrap_sim) else sw
            resp = response_matrix(g, r, problem.sim_pass, swm, n_gen, n_rec)
            data = np.bincount(d_bin, weights=dwm, minlength=n_rec).astype(float)
            prior = (np.bincount(g, weights=swm, minlength=n_gen) if self.prior == "sim"
                     else np.r_[0.0, np.diff(gen_edges), 0.0])
            n = ibu_iterate(resp, data, prior, self.iterations)
            total = n.sum()
            w = n / total if total > 0 else np.full(n_gen, 1.0 / n_gen)
            keep = w > 0
            if not keep.any():
                keep[:] = True
            members.append((centres[keep][:, None], w[keep]))
            totals.append(float(total))
            effs.append(resp.sum(axis=0))
        eff = np.mean(effs, axis=0)
        unreached = [int(i) for i in np.flatnonzero(eff[1:-1] <= 0)]
        if unreached:
            log.warning("ibu: %d gen bins of %s have no passed simulated event and stay at 0", len(unreached),
                        problem.gen_names[gc])
        info: dict[str, Any] = {
            "column": problem.gen_names[gc], "rec_column": problem.rec_names[rc],
            "edges": gen_edges.tolist(), "rec_edges": rec_edges.tolist(), "iterations": self.iterations,
            "prior": self.prior, "members": self.members, "efficiency": eff[1:-1].tolist(),
            "n_true": float(np.mean(totals)), "unreached_bins": unreached,
        }
        return Unfolded(self.name, (problem.gen_names[gc],), members, info)
