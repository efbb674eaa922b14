"""The unfolding problem, the unfolded result, and the one interface every method implements.

**The problem.** A detector maps each true (generation-level) event x ∈ R^d to a
reconstructed event y ∈ R^k, or loses it: the kernel is

    p(y, pass | x) = ε(x) · r(y | x),

with ε the efficiency and r the response. Measured data are the reconstructed events
that passed, drawn from the folded density

    p_data(y) ∝ ∫ ε(x) r(y | x) p_true(x) dx .

Unfolding estimates p_true(x) from the measured y, given simulated pairs (x_i, y_i) drawn
from a *prior* p_sim(x) through the same detector. :class:`Problem` holds those inputs
(simulated x for every event, y and a pass flag; measured y; weights for both) and checks
them once, at the boundary, so every method sees clean arrays.

**The result.** Every method returns :class:`Unfolded`: an ensemble of weighted
generation-level samples ``members[j] = (x_j, w_j)``. OmniFold returns the simulated x with
member-specific weights; the generative methods return fresh samples with unit weights.
Members differ by bootstrap of the data (and of the simulation) and by network seed, so
their spread is the uncertainty: :meth:`Unfolded.histogram` gives the per-bin mean
probability and its standard deviation over members. Histograms are **normalised to
unit total** (probability per bin): the shape of p_true, which every method estimates;
the number of true events is a separate, efficiency-corrected estimate
(``info["n_true"]`` where a method gives it).

**Replicated members.** Where one fit's answer depends on its start as well as on its data
(a flexible fit in bins narrower than the resolution), the members' spread is the error of
*one* fit, while the ensemble mean averages the starts out and is more accurate. A method
then fits every bootstrap replica of the data from r ≥ 2 independent starts and says which
replica each member fits (``Unfolded.replicas``). With G replicas, W the pooled variance
within replicas and B the variance of the replicas' means, two fits of one replica share
only its data, so their covariance c = B − W/r is the data's variance of the start-averaged
fit (the start noise is independent between them and drops out), and the ensemble mean of
the G·r members has the variance

    c (1 + 1/G) + W / (G r)

(its data error, the bootstrap mean's own scatter c/G, and the starts averaged over G r
fits). :meth:`Unfolded.histogram` gives its square root, with c clipped at zero, times
Student's t quantile for G − 1 degrees of freedom at 0.8413 (1.077 for G = 8): the variance is
estimated from G replicas, and ± that half-width is the 68.3 % interval a 1σ error bar
promises (with the plain square root, 1σ bars from 8 replicas cover about 0.65).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
from scipy.stats import t as student_t

from ..errors import InputError, fmt_value

__all__ = ["Problem", "Unfolded", "Unfolder", "replicated_error"]

_ONE_SIGMA = 0.8413447460685429   # Φ(1): the upper end of the central 68.3 % interval


def _matrix(a: Any, width: int, what: str, names: Sequence[str], source: str | None) -> np.ndarray:
    x = np.asarray(a, dtype=float)
    if x.ndim == 1 and width == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != width:
        raise InputError(f"{what} has shape {x.shape}, expected (events, {width}) for columns {list(names)}",
                         file=source)
    return x


def _weights(w: Any, n: int, what: str, source: str | None) -> np.ndarray:
    if w is None:
        return np.ones(n)
    w = np.asarray(w, dtype=float).reshape(-1)
    if w.shape[0] != n:
        raise InputError(f"{what} has {w.shape[0]} entries for {n} events", file=source)
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        raise InputError(f"{what} has a non-finite or negative value {fmt_value(w[bad[0]])}", file=source,
                         row=int(bad[0]))
    if not np.any(w > 0):
        raise InputError(f"{what} are all zero", file=source)
    return w


def _finite(x: np.ndarray, what: str, names: Sequence[str], source: str | None, rows: np.ndarray | None = None) -> None:
    sel = x if rows is None else x[rows]
    idx = np.argwhere(~np.isfinite(sel))
    if idx.size:
        r, c = idx[0]
        row = int(r if rows is None else np.flatnonzero(rows)[r])
        raise InputError(f"{what} has a non-finite value {fmt_value(sel[r, c])}", file=source,
                         column=str(names[c]), row=row)


@dataclass(frozen=True)
class Problem:
    """Inputs of an unfolding: simulated (x, y, pass) with weights, and measured y with weights.

    Parameters
    ----------
    gen_names, rec_names:
        Column names of x (generation level) and y (reconstructed level), in their units.
    sim_gen:
        Simulated true events x, shape (n_sim, d).
    sim_rec:
        Their reconstructed y, shape (n_sim, k); rows that did not pass may hold anything (NaN).
    sim_pass:
        Whether each simulated event passed reconstruction (efficiency and thresholds), shape (n_sim,).
    data_rec:
        Measured y, shape (n_data, k); every measured event passed.
    sim_weight, data_weight:
        Non-negative event weights (default 1).
    """

    gen_names: tuple[str, ...]
    rec_names: tuple[str, ...]
    sim_gen: np.ndarray
    sim_rec: np.ndarray
    sim_pass: np.ndarray
    data_rec: np.ndarray
    sim_weight: np.ndarray
    data_weight: np.ndarray

    @classmethod
    def build(cls, gen_names: Sequence[str], rec_names: Sequence[str], sim_gen: Any, sim_rec: Any, data_rec: Any,
              sim_pass: Any = None, sim_weight: Any = None, data_weight: Any = None, *,
              source: str | None = None, data_source: str | None = None) -> "Problem":
        """Check and assemble a problem; any inconsistency raises a one-line :class:`InputError`.

        ``sim_pass`` defaults to "every row of ``sim_rec`` is finite". ``source`` and
        ``data_source`` name the simulation and data files in error messages.
        """
        gen_names, rec_names = tuple(map(str, gen_names)), tuple(map(str, rec_names))
        if not gen_names or not rec_names:
            raise InputError("unfolding needs at least one generation-level and one reconstructed column",
                             file=source)
        sim_gen = _matrix(sim_gen, len(gen_names), "the simulated generation-level events", gen_names, source)
        sim_rec = _matrix(sim_rec, len(rec_names), "the simulated reconstructed events", rec_names, source)
        if sim_rec.shape[0] != sim_gen.shape[0]:
            raise InputError(f"the simulation has {sim_gen.shape[0]} generation-level and {sim_rec.shape[0]} "
                             "reconstructed events; they must pair up", file=source)
        n_sim = sim_gen.shape[0]
        if n_sim == 0:
            raise InputError("the simulation has no events", file=source)
        data_rec = np.asarray(data_rec, dtype=float)
        if data_rec.ndim == 1 and len(rec_names) == 1:
            data_rec = data_rec[:, None]
        if data_rec.ndim != 2 or data_rec.shape[0] == 0:
            raise InputError("the measured data have no events", file=data_source)
        if data_rec.shape[1] != len(rec_names):
            raise InputError(f"the measured data have {data_rec.shape[1]} reconstructed columns, the simulation "
                             f"{len(rec_names)} ({', '.join(rec_names)})", file=data_source)
        if sim_pass is None:
            passed = np.all(np.isfinite(sim_rec), axis=1)
        else:
            passed = np.asarray(sim_pass).reshape(-1)
            if passed.shape[0] != n_sim:
                raise InputError(f"the pass flags have {passed.shape[0]} entries for {n_sim} simulated events",
                                 file=source)
            passed = passed.astype(bool)
        if not passed.any():
            raise InputError("no simulated event passed reconstruction", file=source)
        _finite(sim_gen, "the simulated generation-level events", gen_names, source)
        _finite(sim_rec, "the simulated reconstructed events", rec_names, source, rows=passed)
        _finite(data_rec, "the measured data", rec_names, data_source)
        sw = _weights(sim_weight, n_sim, "the simulation weights", source)
        dw = _weights(data_weight, data_rec.shape[0], "the data weights", data_source)
        return cls(gen_names, rec_names, sim_gen, sim_rec, passed, data_rec, sw, dw)

    @property
    def n_sim(self) -> int:
        """Simulated events (passed or not)."""
        return int(self.sim_gen.shape[0])

    @property
    def n_data(self) -> int:
        """Measured events."""
        return int(self.data_rec.shape[0])

    def efficiency(self) -> float:
        """The simulation's weighted overall efficiency Σ_pass w / Σ w."""
        return float(self.sim_weight[self.sim_pass].sum() / self.sim_weight.sum())


@dataclass
class Unfolded:
    """An ensemble of weighted generation-level samples: the unfolded distribution and its spread.

    ``members[j] = (x_j, w_j)`` with ``x_j`` of shape (n_j, d) and ``w_j`` of shape (n_j,);
    ``info`` holds method-specific figures (iterations, losses, ``n_true``, wall time in s).
    """

    method: str
    names: tuple[str, ...]
    members: list[tuple[np.ndarray, np.ndarray]]
    info: dict[str, Any] = field(default_factory=dict)
    replicas: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("an unfolded result needs at least one member")
        if self.replicas is not None:
            r = np.asarray(self.replicas, dtype=int).reshape(-1)
            if r.shape[0] != len(self.members):
                raise ValueError(f"replicas has {r.shape[0]} entries for {len(self.members)} members")
            sizes = np.bincount(r)
            if r.min() < 0 or len(sizes) < 2 or sizes.min() < 2 or np.ptp(sizes) != 0:
                raise ValueError("replicas must number at least two replicas, each fitted by the same number "
                                 "(at least two) of members")
            self.replicas = r

    def column(self, name: str) -> int:
        """Index of the generation-level column ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise InputError(f"no unfolded column {name!r} (have {', '.join(self.names)})", column=name) from None

    def histograms(self, name: str, edges: np.ndarray) -> np.ndarray:
        """Per-member probability per bin, shape (members, bins); events outside ``edges`` count in no bin
        but in the total, so the rows sum to the probability inside the range."""
        c = self.column(name)
        out = np.empty((len(self.members), len(edges) - 1))
        for j, (x, w) in enumerate(self.members):
            h, _ = np.histogram(x[:, c], bins=edges, weights=w)
            out[j] = h / w.sum()
        return out

    def histogram(self, name: str, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean probability per bin over members and its uncertainty: the members' standard deviation (ddof 1;
        0 with one member), or with ``replicas`` the ensemble mean's error from the covariance of fits that share
        a replica (module docstring)."""
        h = self.histograms(name, edges)
        if self.replicas is not None:
            return h.mean(axis=0), replicated_error(h, self.replicas)
        sd = h.std(axis=0, ddof=1) if h.shape[0] > 1 else np.zeros(h.shape[1])
        return h.mean(axis=0), sd

    def moments(self, name: str) -> dict[str, float]:
        """Weighted mean and standard deviation of column ``name`` (pooled over members, each normalised
        to equal total weight), with the spread of the member means and widths."""
        c = self.column(name)
        means, widths = [], []
        for x, w in self.members:
            p = w / w.sum()
            m = float(np.sum(p * x[:, c]))
            means.append(m)
            widths.append(math.sqrt(float(np.sum(p * (x[:, c] - m) ** 2))))
        sd = (lambda a: float(np.std(a, ddof=1)) if len(a) > 1 else 0.0)
        return {"mean": float(np.mean(means)), "mean_sd": sd(means),
                "width": float(np.mean(widths)), "width_sd": sd(widths)}


def replicated_error(values: np.ndarray, replicas: np.ndarray) -> np.ndarray:
    """The 1σ error of the mean over members of ``values`` (members, ...) whose members fit the data replicas
    ``replicas`` (members,), each replica from the same number r ≥ 2 of independent starts:
    t_{G−1} · √(max(c, 0)(1 + 1/G) + W/(G r)) with c = B − W/r (module docstring). Same units as ``values``."""
    v = np.asarray(values, dtype=float)
    r_of = np.asarray(replicas, dtype=int)
    ids = np.unique(r_of)
    g, r = len(ids), v.shape[0] // len(ids)
    groups = np.stack([v[r_of == i] for i in ids])                     # (G, r, ...)
    within = groups.var(axis=1, ddof=1).mean(axis=0)                   # W: the starts' variance
    between = groups.mean(axis=1).var(axis=0, ddof=1)                  # B = c + W / r
    c = np.maximum(between - within / r, 0.0)
    return float(student_t.ppf(_ONE_SIGMA, g - 1)) * np.sqrt(c * (1 + 1 / g) + within / (g * r))


@runtime_checkable
class Unfolder(Protocol):
    """An unfolding method: settings at construction, then :meth:`unfold` on a :class:`Problem`.

    ``unfold`` is deterministic for a given ``seed``; it raises
    :class:`~rarefy.errors.InputError` for inputs the method cannot use.
    """

    name: str

    def unfold(self, problem: Problem, seed: int) -> Unfolded:
        """Unfold ``problem``; the result's members carry the uncertainty."""
        ...
