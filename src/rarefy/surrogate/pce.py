"""Bayesian multi-fidelity polynomial-chaos expansion (PCE) with sparsity-promoting (ARD) priors.

Model, for an ordered chain of fidelities f = 0 (cheapest) … F (target), on inputs scaled
to [−1, 1]^d by the DesignSpace bounds::

    y_0(x) = Ψ(x) · c_0
    y_f(x) = ρ_f · y_{f−1}(x) + Ψ(x) · c_f                 (AR1 coupling)

Ψ(x) holds the orthonormal Legendre polynomials (``numpy.polynomial.legendre``, scaled
by √(2n+1) per dimension) of total degree ≤ p. An observation of fidelity f at run i
is ``y_f(x_i) + ε_i``, ε_i ~ N(0, v_i + τ_f), with v_i the run's *known* noise variance
(from counts) and τ_f a learned nugget (truncation error of the expansion).

**Why this works for non-nested designs.** For fixed ρ, every y_f is *linear* in the
stacked coefficients c = (c_0, …, c_F): the row of an observation of fidelity f is
``(a_{f,0} Ψ(x), …, a_{f,f} Ψ(x), 0, …)`` with ``a_{f,j} = Π_{i=j+1..f} ρ_i``. So all
fidelities are fitted jointly as one Bayesian linear model; an HF design need not
coincide with any LF design (no plug-in of a lower level's mean at HF points).

**Priors and inference (conjugate, no MCMC).** c_k ~ N(0, 1/α_k) independently, with one
precision α_k per coefficient (automatic relevance determination, the sparse Bayesian
learning of Tipping 2001). Given (α, ρ, τ) the posterior of c is Gaussian in closed
form, Σ = (ΦᵀBΦ + A)⁻¹, μ = ΣΦᵀBy, B = diag(1/(v + τ)). The hyperparameters maximise the
evidence p(y | α, ρ, τ) (type-II maximum likelihood): MacKay's fixed-point updates
α_k ← γ_k / μ_k² (γ_k = 1 − α_k Σ_kk; coefficients with α_k → ∞ are pruned), alternated
with bounded scalar searches on each ρ_f and log τ_f. With ``prior: degree`` the precisions
are shared within groups (one per fidelity level and total degree: a hierarchical prior,
updated by the grouped fixed point α_g = Σ_g γ_k / Σ_g μ_k²), which prunes less and keeps
the uncertainty of weak terms in the predictive variance — per-coefficient ARD is known
to give over-confident intervals away from the data (it was 30/30/40% 1/2/3σ coverage on
the BBH runs). The constant of the lowest level is never shrunk (flat prior). An
optional Normal(1, s) prior on each ρ (``rho_prior``) turns its type-II ML estimate into
a MAP one. This conjugate scheme was chosen over
MCMC because one fit takes milliseconds to a second, which also makes the degree
selection by cross-validation and the surrogate-in-the-loop inference cheap. The
predictive distribution is Gaussian, conditional on the fitted hyperparameters
(their uncertainty is not propagated).

**Degree.** The total degree p is chosen by K-fold cross-validation (folds of runs)
among ``1 … max_degree``: the degree with the lowest mean predictive negative
log-likelihood of held-out rows (all fidelities, standardised) wins, and the model is
refitted on all data. ``degree`` fixes it instead.

**Count data (``output: poisson``).** Rates estimated from few counts (k of n events,
many zeros) are far from Gaussian, and the physics of such rates (e.g. BBH formation
efficiencies over decades of metallicity) is multiplicative. With ``output: poisson`` the
PCE models the *log rate* η_f(x) with the same AR1 structure, and an observation is
``k ~ Poisson(n · exp(η_f(x) + b))`` with a per-run random effect b ~ N(0, τ_f) (the
nugget: over-dispersion and truncation error). The non-Gaussian likelihood is handled
by penalised quasi-likelihood (PQL; Breslow & Clayton 1993), i.e. a Laplace
approximation iterated to a fixed point: at the current η̂ each run gives the working
response ``z = η̂ + (k − μ)/μ`` with variance ``1/μ`` (μ = n e^η̂), the Gaussian evidence
machinery above (ARD, ρ, τ) is fitted to (z, 1/μ), and η̂ is updated to the posterior
mean (fixed part plus the random-effect estimate) until it stops moving. A run with
k = 0 thus counts as the upper limit it is (its working variance grows as η̂ falls)
instead of a zero rate with a made-up variance. Predictions are log-normal:
``mean = exp(m + s²/2)``, ``std = mean · sqrt(exp(s²) − 1)`` for latent log-rate
N(m, s²); :meth:`PCESurrogate.interval` gives the log-normal quantiles. The degree
cross-validation scores the held-out *counts* by their predictive log-probability
(Poisson integrated over the Gaussian log rate by Gauss–Hermite quadrature).

Outputs are standardised per fidelity (optionally after a log transform), as in the
AR1 GP; :meth:`PCESurrogate.predict` returns mean and std in the rate's units, as torch
float64 tensors (differentiable in x when x is a tensor that requires grad). Like the AR1
GP it is a BoTorch ``Model`` whose ``posterior(X)`` is :meth:`PCESurrogate.joint`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from itertools import combinations_with_replacement
from typing import Any, Sequence

import numpy as np
import torch
from numpy.polynomial import legendre
from scipy.optimize import minimize_scalar

from ..data.rates import RateTable
from ..errors import InputError
from ..space import DesignSpace
from .base import DTYPE, Surrogate, standardise

log = logging.getLogger(__name__)

__all__ = ["PCESettings", "PCESurrogate", "total_degree_indices", "legendre_basis", "poisson_lognormal_logpmf"]

ALPHA_MAX = 1e10      # coefficients whose prior precision exceeds this are pruned
ALPHA_INIT = 1.0      # initial prior precision (prior std 1 in standardised output units)
ALPHA_FREE = 1e-6     # precision of the unshrunk constant term (prior std 1000)
TAU_BOUNDS = (1e-8, 10.0)
RHO_BOUNDS = (-5.0, 5.0)
HYPER_EVERY = 4       # update (ρ, τ) every this many ARD iterations
CV_MAX_ITER = 60      # outer iterations of the fits inside the degree cross-validation
PQL_MAX_ITER = 40     # fixed-point iterations of the Poisson (PQL) fit
PQL_TOL = 1e-3        # stop when no expected count moves by more than this many Poisson sds
PQL_RELAX_AFTER = 10  # halve the PQL steps after this many iterations
PQL_INNER_ITER = 15   # evidence iterations of each warm-started fit inside the PQL loop
HERMITE_NODES = 32    # Gauss–Hermite nodes of the Poisson predictive probability
OUTPUTS = ("identity", "log", "poisson")
PRIORS = ("ard", "degree")


@dataclass
class PCESettings:
    """Hyper-settings of :class:`PCESurrogate` (mirrors the ``surrogate`` config section for ``kind: pce``).

    ``degree``: fixed total degree, or None to choose it by ``cv_folds``-fold
    cross-validation among 1 … ``max_degree``. ``nugget``: learn τ_f per fidelity.
    ``max_iter``: outer evidence iterations. ``output``: ``identity``, ``log`` (log of a
    positive rate, delta-method variance) or ``poisson`` (log-rate model of the counts
    ``k`` of ``n`` events; needs both columns, see the module docstring). ``prior``:
    ``ard`` — one prior precision per coefficient (sparsest; the pruned terms' uncertainty
    is lost, so predictive intervals can be too narrow away from the data); ``degree`` —
    one precision shared by all terms of the same total degree and fidelity level (a
    hierarchical prior that shrinks whole orders, prunes less and keeps wider, better
    calibrated intervals). ``rho_prior``: sd s of a Normal(1, s) prior on each ρ_f in
    standardised units (MAP instead of type-II ML; ρ's own uncertainty is not
    propagated, so where fidelities differ only in Monte-Carlo noise, as the BBH runs
    do, a tight prior keeps a poorly determined ρ from biasing the target); None: flat.
    """

    degree: int | None = None
    max_degree: int = 4
    cv_folds: int = 5
    nugget: bool = True
    max_iter: int = 200
    output: str = "identity"
    prior: str = "ard"
    rho_prior: float | None = None

    def __post_init__(self) -> None:
        if self.rho_prior is not None and not self.rho_prior > 0:
            raise ValueError(f"rho_prior must be positive, got {self.rho_prior}")
        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {self.prior!r}")
        if self.degree is not None and self.degree < 0:
            raise ValueError(f"degree must be >= 0, got {self.degree}")
        if self.max_degree < 1:
            raise ValueError(f"max_degree must be >= 1, got {self.max_degree}")
        if self.cv_folds < 2:
            raise ValueError(f"cv_folds must be >= 2, got {self.cv_folds}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")


def total_degree_indices(dim: int, degree: int) -> np.ndarray:
    """Multi-indices (n_terms, dim) of all monomials of total degree ≤ ``degree``, constant first."""
    rows = [np.zeros(dim, dtype=np.int64)]
    for p in range(1, degree + 1):
        for combo in combinations_with_replacement(range(dim), p):
            idx = np.zeros(dim, dtype=np.int64)
            for c in combo:
                idx[c] += 1
            rows.append(idx)
    return np.array(rows, dtype=np.int64).reshape(-1, dim)


def legendre_basis(u: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Orthonormal Legendre features Ψ (n, n_terms) at points ``u`` in [−1, 1]^d (numpy)."""
    u = np.atleast_2d(np.asarray(u, dtype=float))
    pmax = int(indices.max()) if indices.size else 0
    norm = np.sqrt(2 * np.arange(pmax + 1) + 1.0)
    out = np.ones((u.shape[0], len(indices)))
    for j in range(u.shape[1]):
        vander = legendre.legvander(u[:, j], pmax) * norm    # (n, pmax+1)
        out *= vander[:, indices[:, j]]
    return out


def _legendre_basis_torch(u: torch.Tensor, indices: np.ndarray) -> torch.Tensor:
    """As :func:`legendre_basis` for a torch tensor (..., n, d), by the three-term recurrence (differentiable)."""
    pmax = int(indices.max()) if indices.size else 0
    polys = [torch.ones_like(u), u]
    for n in range(1, pmax):
        polys.append(((2 * n + 1) * u * polys[n] - n * polys[n - 1]) / (n + 1))
    stack = torch.stack(polys[: pmax + 1], dim=-1)                                # (..., n, d, pmax+1)
    stack = stack * torch.sqrt(2 * torch.arange(pmax + 1, dtype=u.dtype) + 1.0)
    idx = torch.as_tensor(indices, dtype=torch.long)                              # (T, d)
    dims = torch.arange(u.shape[-1])
    feats = stack[..., dims[None, :], idx]                                        # (..., n, T, d)
    return feats.prod(dim=-1)


@dataclass
class FitInfo:
    """What the last fit did: chosen degree, CV score per degree, active terms, evidence, wall time (s)."""

    degree: int = -1
    cv_nll: dict[str, float] = field(default_factory=dict)
    active_terms: int = 0
    log_evidence: float = float("nan")
    iterations: int = 0
    seconds: float = 0.0
    n_per_fidelity: dict[str, int] = field(default_factory=dict)
    pql_iterations: int = 0


class _Fit:
    """Evidence maximisation for one degree on standardised data (numpy)."""

    def __init__(self, psi: np.ndarray, fid: np.ndarray, z: np.ndarray, v: np.ndarray, levels: int,
                 nugget: bool, max_iter: int, warm: dict[str, np.ndarray] | None = None,
                 groups: np.ndarray | None = None, rho_prior: float | None = None) -> None:
        self.psi, self.fid, self.z, self.v = psi, fid, z, v
        self.groups = groups                  # None: one precision per coefficient (ARD)
        self.rho_prior = rho_prior            # sd of a Normal(1, sd) prior on each ρ (None: flat)
        self.levels, self.nugget, self.max_iter = levels, nugget, max_iter
        self.T = psi.shape[1]
        self.alpha = np.full(levels * self.T, ALPHA_INIT)
        self.rho = np.ones(levels)            # entry 0 unused
        self.tau = np.full(levels, 1e-2 if nugget else 0.0)
        # the constant of the lowest level is not shrunk (flat prior): shrinking it towards the
        # mean of the standardised data biases the overall level (e.g. the working responses of
        # zero counts in the Poisson mode lie below the true log rate)
        self.free = np.zeros(levels * self.T, dtype=bool)
        self.free[0] = True
        self.alpha[self.free] = ALPHA_FREE
        if warm is not None:                  # start from an earlier fit (PQL iterations)
            self.alpha = np.minimum(warm["alpha"].copy(), ALPHA_MAX * 0.1)
            self.rho = warm["rho"].copy()
            if nugget:
                self.tau = np.clip(warm["tau"], TAU_BOUNDS[0] * 10, TAU_BOUNDS[1] / 10)

    def design(self, rho: np.ndarray) -> np.ndarray:
        """Stacked design matrix Φ (N, L·T) for coupling ``rho``."""
        return _design(self.psi, self.fid, rho, self.levels)

    def _posterior(self, phi: np.ndarray, tau: np.ndarray, active: np.ndarray,
                   want_sigma: bool = True) -> tuple[np.ndarray, np.ndarray | None, float]:
        """(μ, Σ) over the active coefficients and the log evidence (Σ only if ``want_sigma``)."""
        noise = self.v + tau[self.fid]
        b = 1.0 / noise
        pa = phi[:, active]
        a = self.alpha[active]
        prec = (pa * b[:, None]).T @ pa + np.diag(a)
        try:
            L = np.linalg.cholesky(prec)
        except np.linalg.LinAlgError:
            prec = prec + np.eye(len(a)) * 1e-10 * np.trace(prec) / max(len(a), 1)
            L = np.linalg.cholesky(prec)
        rhs = pa.T @ (b * self.z)
        mu = np.linalg.solve(L.T, np.linalg.solve(L, rhs))
        sigma = None
        if want_sigma:
            Linv = np.linalg.solve(L, np.eye(len(a)))
            sigma = Linv.T @ Linv
        n = len(self.z)
        quad = float(self.z @ (b * self.z) - rhs @ mu)
        logdet_c = float(np.sum(np.log(noise)) - np.sum(np.log(a)) + 2 * np.sum(np.log(np.diag(L))))
        ev = -0.5 * (n * math.log(2 * math.pi) + logdet_c + quad)
        return mu, sigma, ev

    def _hyper_vector(self) -> np.ndarray:
        parts = [self.rho[1:]]
        if self.nugget:
            parts.append(np.log(self.tau))
        return np.concatenate(parts)

    def _set_hyper(self, h: np.ndarray) -> None:
        k = self.levels - 1
        self.rho[1:] = h[:k]
        if self.nugget:
            self.tau = np.exp(h[k:])

    def run(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
        """Fit; return (μ over all coefficients, Σ over the active ones, active mask, log evidence, iterations)."""
        active = np.ones_like(self.alpha, dtype=bool)
        bounds = [RHO_BOUNDS] * (self.levels - 1)
        if self.nugget:
            bounds += [tuple(np.log(TAU_BOUNDS))] * self.levels
        ev_old, it = -np.inf, 0
        for it in range(1, self.max_iter + 1):
            phi = self.design(self.rho)
            mu, sigma, ev = self._posterior(phi, self.tau, active)
            # MacKay fixed-point update of the ARD precisions
            gamma = np.clip(1.0 - self.alpha[active] * np.diag(sigma), 1e-12, 1.0)
            if self.groups is None:
                new = np.minimum(gamma / np.maximum(mu**2, 1e-300), ALPHA_MAX * 10)
            else:   # one precision per group: α_g = Σ_g γ_k / Σ_g μ_k²
                g = self.groups[active]
                num = np.bincount(g, weights=gamma, minlength=self.groups.max() + 1)
                den = np.bincount(g, weights=mu**2, minlength=self.groups.max() + 1)
                new = np.minimum(num[g] / np.maximum(den[g], 1e-300), ALPHA_MAX * 10)
            change = float(np.max(np.abs(np.log(new) - np.log(self.alpha[active]))))
            self.alpha[active] = new
            self.alpha[self.free] = ALPHA_FREE
            active = self.alpha < ALPHA_MAX
            if not active.any():
                active[np.argmin(self.alpha)] = True
            # coupling and nuggets: a short bounded quasi-Newton step on the evidence at fixed α
            if bounds and it % HYPER_EVERY == 1:
                # coupling and nuggets: one sweep of bounded scalar searches on the evidence at fixed α
                h = self._hyper_vector()
                for k, (lo, hi) in enumerate(bounds):
                    def neg_ev(val: float, k: int = k) -> float:
                        trial = h.copy()
                        trial[k] = val
                        self._set_hyper(trial)
                        pen = 0.0 if self.rho_prior is None else 0.5 * float(np.sum(((self.rho[1:] - 1.0)
                                                                                     / self.rho_prior) ** 2))
                        return pen - self._posterior(self.design(self.rho), self.tau, active, want_sigma=False)[2]

                    f0 = neg_ev(h[k])
                    res = minimize_scalar(neg_ev, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3, "maxiter": 25})
                    if np.isfinite(res.fun) and res.fun < f0:
                        h[k] = res.x
                self._set_hyper(h)
            if (change < 1e-3 or abs(ev - ev_old) < 1e-9 * max(1.0, abs(ev))) and it > HYPER_EVERY:
                break
            ev_old = ev
        phi = self.design(self.rho)
        mu_a, sigma, ev = self._posterior(phi, self.tau, active)
        mu = np.zeros_like(self.alpha)
        mu[active] = mu_a
        return mu, sigma, active, ev, it


def _design(psi: np.ndarray, fid: np.ndarray, rho: np.ndarray, levels: int) -> np.ndarray:
    n, T = psi.shape
    phi = np.zeros((n, levels * T))
    for j in range(levels):
        # a_{f,j} = prod_{i=j+1..f} rho_i for f >= j, else 0
        load = np.zeros(n)
        for f in range(j, levels):
            load[fid == f] = np.prod(rho[j + 1: f + 1])
        phi[:, j * T:(j + 1) * T] = psi * load[:, None]
    return phi


class PCESurrogate(Surrogate):
    """Bayesian multi-fidelity PCE surrogate over a :class:`DesignSpace` (same interface as :class:`AR1Surrogate`).

    Parameters
    ----------
    space:
        The design space; inputs are scaled to [−1, 1] by its bounds.
    fidelities:
        Fidelity names, lowest first; one name gives a single-fidelity Bayesian PCE.
    settings:
        :class:`PCESettings`.
    seed:
        Seed of the cross-validation folds; the same seed gives the same fit.
    """

    kind = "pce"
    settings_class = PCESettings

    def __init__(self, space: DesignSpace, fidelities: Sequence[str], settings: PCESettings | None = None,
                 seed: int = 0) -> None:
        super().__init__(space, fidelities, settings, seed)
        self.info = FitInfo()
        self._state: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------ transforms
    def _u_numpy(self, x: Any) -> np.ndarray:
        unit = np.asarray(self.space.to_unit(self.space.as_array(x)), dtype=float)
        return 2.0 * unit - 1.0

    def _prepare(self, table: RateTable) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(u, fidelity index, y, v, run ids); for ``output: poisson`` y = k and v = n (counts)."""
        frame, fid, _ = self._rows(table)
        if self.settings.output == "poisson":
            missing = [c for c in ("k", "n") if c not in frame.columns]
            if missing:
                raise InputError(f"surrogate.output: poisson needs the count columns k and n; the rate table lacks {missing}")
            y = frame["k"].to_numpy(float, copy=True)
            v = frame["n"].to_numpy(float, copy=True)
            if np.any(y < 0) or np.any(v <= 0) or not np.all(np.isfinite(y) & np.isfinite(v)):
                raise InputError("surrogate.output: poisson needs counts k >= 0 and events n > 0 in every row (noise: {counts: k, events: n})")
        else:
            y = frame["rate"].to_numpy(float, copy=True)
            v = frame["var"].to_numpy(float, copy=True)
        if self.settings.output == "log":
            if np.any(y <= 0):
                raise InputError("surrogate.output: log needs strictly positive rates (output: poisson handles zero counts)")
            v, y = v / y**2, np.log(y)
        runs = frame["run_id"].astype(str).to_numpy() if "run_id" in frame.columns else np.arange(len(frame)).astype(str)
        return self._u_numpy(frame[self.space.names]), fid, y, v, runs

    # ------------------------------------------------------------------- fit
    def fit(self, table: RateTable) -> "PCESurrogate":
        """Choose the degree by cross-validation (unless fixed), then fit on all rows.

        Rows of fidelities the surrogate does not know are ignored; every known fidelity
        must have at least one row.
        """
        t0 = time.perf_counter()
        u, fid, y, v, runs = self._prepare(table)
        cv_nll: dict[str, float] = {}
        degree = self.settings.degree
        if degree is None:
            for p in range(1, self.settings.max_degree + 1):
                cv_nll[str(p)] = self._cv_score(u, fid, y, v, runs, p)
            degree = int(min(cv_nll, key=lambda k: cv_nll[k]))
        state, ev, it, pql = self._fit_arrays(u, fid, y, v, degree)
        self._state = state
        counts = {n: int((fid == i).sum()) for i, n in enumerate(self.fidelities)}
        self.info = FitInfo(degree=degree, cv_nll=cv_nll, active_terms=int(state["active"].sum()), log_evidence=ev,
                            iterations=it, seconds=time.perf_counter() - t0, n_per_fidelity=counts,
                            pql_iterations=pql)
        log.info("PCE fit: degree %d (CV NLL %s), %d active terms, %.2f s", degree, cv_nll, self.info.active_terms,
                 self.info.seconds)
        return self

    def _fit_arrays(self, u: np.ndarray, fid: np.ndarray, y: np.ndarray, v: np.ndarray,
                    degree: int, max_iter: int | None = None) -> tuple[dict[str, np.ndarray], float, int, int]:
        """Fit one degree: (state, log evidence, evidence iterations, PQL iterations)."""
        if self.settings.output != "poisson":
            state, ev, it = self._fit_gaussian(u, fid, y, v, degree, max_iter)
            return state, ev, it, 0
        k, n = y, v
        eta = np.log((k + 0.5) / (n + 1.0))
        state: dict[str, np.ndarray] | None = None
        ev, it, pql = float("nan"), 0, 0
        for pql in range(1, PQL_MAX_ITER + 1):
            mu_c = n * np.exp(eta)
            z = eta + (k - mu_c) / mu_c                   # working response (log rate)
            wv = 1.0 / mu_c                               # its variance
            # warm-started, short inner fits while η̂ moves; a full one at the fixed point (below)
            inner = min(PQL_INNER_ITER, max_iter or self.settings.max_iter)
            state, ev, it = self._fit_gaussian(u, fid, z, wv, degree, inner, warm=state)
            m_std, _ = _predict_state(state, u, fid, observed=False)
            m = m_std * state["y_std"][fid] + state["y_mean"][fid]
            tau = state["tau"][fid] * state["y_std"][fid] ** 2
            new = m + tau / (tau + wv) * (z - m)          # fixed part + random-effect estimate
            delta = np.clip(new - eta, -3.0, 3.0)         # damp the first, largest steps
            if pql > PQL_RELAX_AFTER:                     # under-relax if the fixed point oscillates
                delta *= 0.5
            # converged when no expected count moves by more than PQL_TOL of its Poisson sd
            # (a run whose expected count is far below 1 may drift in log rate: it says little)
            step = float(np.max(np.abs(delta) * np.minimum(1.0, np.sqrt(mu_c))))
            eta = eta + delta
            if step < PQL_TOL:
                break
        assert state is not None
        mu_c = n * np.exp(eta)
        state, ev, it = self._fit_gaussian(u, fid, eta + (k - mu_c) / mu_c, 1.0 / mu_c, degree, max_iter, warm=state)
        return state, ev, it, pql

    def _fit_gaussian(self, u: np.ndarray, fid: np.ndarray, y: np.ndarray, v: np.ndarray, degree: int,
                      max_iter: int | None = None,
                      warm: dict[str, np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], float, int]:
        L = len(self.fidelities)
        means, stds = standardise(y, fid, L, v, log_scale=self.settings.output in ("log", "poisson"))
        z = (y - means[fid]) / stds[fid]
        vz = v / stds[fid] ** 2
        indices = total_degree_indices(self.space.dim, degree)
        psi = legendre_basis(u, indices)
        if warm is not None:
            # the same hyperparameters in the new standardisation
            warm = dict(warm)
            warm["tau"] = warm["tau"] * warm["y_std"] ** 2 / stds**2
            warm["rho"] = warm["rho"].copy()
            warm["rho"][1:] = warm["rho"][1:] * (warm["y_std"][1:] / warm["y_std"][:-1]) * (stds[:-1] / stds[1:])
        groups = None
        if self.settings.prior == "degree":   # one precision per (fidelity level, total degree)
            order = indices.sum(axis=1)
            groups = (np.arange(L)[:, None] * (degree + 1) + order[None, :]).ravel()
        fit = _Fit(psi, fid, z, vz, L, self.settings.nugget, max_iter or self.settings.max_iter, warm=warm,
                   groups=groups, rho_prior=self.settings.rho_prior)
        mu, sigma, active, ev, it = fit.run()
        state = {"indices": indices, "mu": mu, "sigma": sigma, "active": active, "alpha": fit.alpha.copy(),
                 "rho": fit.rho.copy(), "tau": fit.tau.copy(), "y_mean": means, "y_std": stds}
        return state, ev, it

    def _cv_score(self, u: np.ndarray, fid: np.ndarray, y: np.ndarray, v: np.ndarray, runs: np.ndarray,
                  degree: int) -> float:
        """Mean held-out NLL of a ``cv_folds``-fold CV over runs.

        Gaussian outputs: NLL of the held-out values (standardised per fidelity).
        ``poisson``: −log p(k | data) of the held-out counts under the predictive log rate.
        """
        uniq = np.unique(runs)
        rng = np.random.default_rng(self.seed)
        folds = np.array_split(rng.permutation(uniq), min(self.settings.cv_folds, len(uniq)))
        total, count = 0.0, 0
        for fold in folds:
            test = np.isin(runs, fold)
            train = ~test
            if not test.any() or any((fid[train] == i).sum() == 0 for i in range(len(self.fidelities))):
                continue
            state, _, _, _ = self._fit_arrays(u[train], fid[train], y[train], v[train], degree,
                                              max_iter=min(CV_MAX_ITER, self.settings.max_iter))
            mean, var = _predict_state(state, u[test], fid[test], observed=True)
            s = state["y_std"][fid[test]]
            m = mean * s + state["y_mean"][fid[test]]
            if self.settings.output == "poisson":
                nll = -poisson_lognormal_logpmf(y[test], v[test], m, var * s**2)
            else:
                var_t = var * s**2 + v[test]
                nll = 0.5 * np.log(2 * np.pi * var_t / s**2) + 0.5 * (y[test] - m) ** 2 / var_t
            total += float(nll.sum())
            count += int(test.sum())
        return total / max(count, 1)

    # --------------------------------------------------------------- predict
    def _latent(self, x: Any, g: int, observed: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of fidelity ``g`` in model space (the log rate for log/poisson)."""
        st = self._state
        assert st is not None
        if isinstance(x, torch.Tensor) and x.requires_grad:
            u = 2.0 * self.space.to_unit(x.to(DTYPE)) - 1.0
            psi = _legendre_basis_torch(u, st["indices"])
            load = torch.as_tensor(_loadings(st["rho"], g, len(self.fidelities)), dtype=DTYPE)
            phi = torch.cat([psi * load[j] for j in range(len(self.fidelities))], dim=-1)
            pa = phi[..., torch.as_tensor(np.flatnonzero(st["active"]))]
            mean = pa @ torch.as_tensor(st["mu"][st["active"]], dtype=DTYPE)
            var = ((pa @ torch.as_tensor(st["sigma"], dtype=DTYPE)) * pa).sum(-1).clamp_min(1e-12)
            if observed:
                var = var + float(st["tau"][g])
        else:
            xs = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
            shape = np.shape(xs)[:-1] if isinstance(xs, np.ndarray) else None
            u = self._u_numpy(xs.reshape(-1, self.space.dim) if shape is not None else xs)
            m, vv = _predict_state(st, u, np.full(len(u), g), observed=observed)
            if shape is not None:
                m, vv = m.reshape(shape), vv.reshape(shape)
            mean, var = torch.as_tensor(m, dtype=DTYPE), torch.as_tensor(vv, dtype=DTYPE)
        return mean * float(st["y_std"][g]) + float(st["y_mean"][g]), var * float(st["y_std"][g]) ** 2

    def predict(self, x: Any, fidelity: str | None = None, *, observed: bool = False,
                noise_var: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior-predictive mean and standard deviation of ``fidelity`` (default: the highest) at ``x``.

        ``x``: DataFrame, (n, d) array or torch tensor in parameter units. The latent std
        by default; ``observed=True`` adds the fidelity's nugget τ_f and ``noise_var``
        (n values, output units²) the points' own noise. In the rate's units (for
        ``output: log``: median ``exp(μ)`` and delta-method std ``exp(μ)·σ``; for
        ``output: poisson``: the log-normal mean ``exp(μ + σ²/2)`` and std).
        """
        if self._state is None:
            raise RuntimeError("call fit() before predict()")
        g = self._fid_index(fidelity)
        mean, var = self._latent(x, g, observed)
        if self.settings.output == "log":
            mean = torch.exp(mean)
            var = var * mean**2
        elif self.settings.output == "poisson":
            mean = torch.exp(mean + 0.5 * var)
            var = mean**2 * torch.expm1(var)
        if noise_var is not None:
            var = var + torch.as_tensor(np.array(noise_var, dtype=float), dtype=DTYPE)
        return mean, var.sqrt()

    def interval(self, x: Any, fidelity: str | None = None, level: float = 0.95,
                 observed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Central posterior-predictive interval (lower, upper) with probability ``level``.

        Gaussian for ``identity``; the log-normal quantiles ``exp(μ ± kσ)`` for ``log`` and
        ``poisson``.
        """
        from scipy.stats import norm

        k = float(norm.ppf(0.5 + level / 2))
        if self.settings.output in ("log", "poisson"):
            if self._state is None:
                raise RuntimeError("call fit() before interval()")
            m, var = self._latent(x, self._fid_index(fidelity), observed)
            sd = var.sqrt()
            return torch.exp(m - k * sd), torch.exp(m + k * sd)
        mean, std = self.predict(x, fidelity, observed=observed)
        return mean - k * std, mean + k * std

    def joint(self, x: Any, fidelity: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint latent posterior of ``fidelity`` at the n designs ``x``: mean (..., n) and covariance (..., n, n).

        ``x``: (n, d) designs (DataFrame, array or tensor) or an array (..., n, d) of batches.

        In the rate's units: Gaussian for ``identity``; delta method around the median for
        ``log``; the exact log-normal moments ``Cov = E_i E_j (exp(S_ij) − 1)`` for
        ``poisson``. Differentiable in ``x`` when it is a tensor that requires grad.
        """
        if self._state is None:
            raise RuntimeError("call fit() before joint()")
        st, g = self._state, self._fid_index(fidelity)
        if isinstance(x, torch.Tensor) and x.requires_grad:
            return self._joint_torch(x, g)
        xs = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
        if isinstance(xs, np.ndarray) and xs.ndim > 2:          # batch (..., n, d)
            batch = xs.shape[:-1]
            u = self._u_numpy(xs.reshape(-1, self.space.dim))
        else:
            u = self._u_numpy(xs)
            batch = (len(u),)
        fid = np.full(len(u), g)
        phi = _design(legendre_basis(u, st["indices"]), fid, st["rho"], len(st["rho"]))[:, st["active"]]
        phi = phi.reshape(*batch, phi.shape[-1])
        s = float(st["y_std"][g])
        m = (phi @ st["mu"][st["active"]]) * s + float(st["y_mean"][g])
        cov = np.einsum("...ia,ab,...jb->...ij", phi, st["sigma"], phi) * s**2
        if self.settings.output == "log":
            e = np.exp(m)
            m, cov = e, cov * e[..., :, None] * e[..., None, :]
        elif self.settings.output == "poisson":
            e = np.exp(m + 0.5 * np.diagonal(cov, axis1=-2, axis2=-1))
            m, cov = e, e[..., :, None] * e[..., None, :] * np.expm1(cov)
        return torch.as_tensor(m, dtype=DTYPE), torch.as_tensor(cov, dtype=DTYPE)

    def _joint_torch(self, x: torch.Tensor, g: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`joint` of fidelity index ``g`` for a tensor (..., n, d), by torch (differentiable)."""
        st = self._state
        u = 2.0 * self.space.to_unit(x.to(DTYPE)) - 1.0
        psi = _legendre_basis_torch(u, st["indices"])
        load = torch.as_tensor(_loadings(st["rho"], g, len(self.fidelities)), dtype=DTYPE)
        phi = torch.cat([psi * load[j] for j in range(len(self.fidelities))], dim=-1)
        pa = phi[..., torch.as_tensor(np.flatnonzero(st["active"]))]
        s = float(st["y_std"][g])
        m = (pa @ torch.as_tensor(st["mu"][st["active"]], dtype=DTYPE)) * s + float(st["y_mean"][g])
        cov = pa @ torch.as_tensor(st["sigma"], dtype=DTYPE) @ pa.transpose(-1, -2) * s**2
        if self.settings.output == "log":
            e = torch.exp(m)
            m, cov = e, cov * e[..., :, None] * e[..., None, :]
        elif self.settings.output == "poisson":
            e = torch.exp(m + 0.5 * cov.diagonal(dim1=-2, dim2=-1))
            m, cov = e, e[..., :, None] * e[..., None, :] * torch.expm1(cov)
        return m, cov

    def rho(self) -> np.ndarray:
        """ρ_f of every fidelity link in the original output units, shape (L−1,)."""
        if self._state is None:
            raise RuntimeError("call fit() before rho()")
        st = self._state
        return st["rho"][1:] * st["y_std"][1:] / st["y_std"][:-1]

    def noise_variance(self, fidelity: str | None = None) -> float:
        """The learned nugget τ_f of ``fidelity`` in model units² (rate² for ``identity``, else log-rate²)."""
        if self._state is None:
            raise RuntimeError("call fit() before noise_variance()")
        g = self._fid_index(fidelity)
        return float(self._state["tau"][g] * self._state["y_std"][g] ** 2)

    def hyperparameters(self) -> dict[str, Any]:
        """Fitted hyperparameters per fidelity (standardised units) and the active terms."""
        if self._state is None:
            return {}
        st, T = self._state, len(self._state["indices"])
        out: dict[str, Any] = {}
        for i, name in enumerate(self.fidelities):
            act = st["active"][i * T:(i + 1) * T]
            out[name] = {"rho": None if i == 0 else float(st["rho"][i]), "nugget": float(st["tau"][i]),
                         "active_terms": [st["indices"][k].tolist() for k in np.flatnonzero(act)]}
        return out

    # ------------------------------------------------------------- save/load
    def _fitted(self) -> bool:
        return self._state is not None

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v) for k, v in self._state.items()}

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self._state = {k: v.numpy() for k, v in tensors.items()}


def poisson_lognormal_logpmf(k: np.ndarray, n: np.ndarray, m: np.ndarray, var: np.ndarray) -> np.ndarray:
    """log P(k) for k ~ Poisson(n·exp(η)), η ~ N(m, var) (Gauss–Hermite quadrature over η)."""
    from scipy.special import gammaln, logsumexp

    x, w = np.polynomial.hermite_e.hermegauss(HERMITE_NODES)      # ∫ f(t) exp(−t²/2) dt
    k, n, m, var = (np.asarray(a, dtype=float)[..., None] for a in (k, n, m, var))
    eta = m + np.sqrt(np.maximum(var, 0.0)) * x
    logp = k * (np.log(n) + eta) - n * np.exp(eta) - gammaln(k + 1)
    return logsumexp(logp + np.log(w / math.sqrt(2 * math.pi)), axis=-1)


def _loadings(rho: np.ndarray, g: int, levels: int) -> np.ndarray:
    return np.array([np.prod(rho[j + 1: g + 1]) if j <= g else 0.0 for j in range(levels)])


def _predict_state(st: dict[str, np.ndarray], u: np.ndarray, fid: np.ndarray,
                   observed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Standardised predictive mean and variance at points ``u`` ([−1, 1]^d) of fidelities ``fid``."""
    psi = legendre_basis(u, st["indices"])
    levels = len(st["rho"])
    phi = _design(psi, fid, st["rho"], levels)[:, st["active"]]
    mean = phi @ st["mu"][st["active"]]
    var = np.einsum("ij,jk,ik->i", phi, st["sigma"], phi)
    var = np.maximum(var, 1e-12)
    if observed:
        var = var + st["tau"][fid]
    return mean, var
