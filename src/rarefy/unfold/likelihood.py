"""Likelihood unfolding: a generative network for the truth, folded through a learned detector, fitted to the data.

**Model.** The unfolded distribution is an unconditional zuko flow p_θ(x). The detector
is replaced by two learned parts fitted on the simulation: the efficiency
ε(x) = P(pass | x) (a small weighted classifier,
:func:`rarefy.unfold.generative.fit_efficiency`) and the response kernel p_φ(y | x)
(a conditional zuko NSF fitted by maximum likelihood on the passing pairs for
``kernel_epochs`` epochs, :func:`rarefy.nn.flows.fit_flow`). A measured event then has the folded density

    p(y | θ) = ∫ ε(x) p_φ(y | x) p_θ(x) dx / ∫ ε(x) p_θ(x) dx ,

and θ maximises the weighted log-likelihood of the measured events

    log L(θ) = Σ_i w_i log ∫ ε(x) p_φ(y_i | x) p_θ(x) dx − (Σ_i w_i) log ∫ ε(x) p_θ(x) dx .

The prior of the simulation enters nowhere but through the kernel's training pairs, so the
estimate does not lean on it (the kernel r(y | x) is a property of the detector alone; only
its accuracy where p_sim is thin depends on the simulation). log L is concave in p_θ (the
log of a linear functional), so the maximum over densities is unique; the flow's smoothness
regularises the directions the smearing leaves unresolved.

**The integrals: importance sampling at fixed nodes.** Every step needs the numerator for
every event of the batch. Sampling x ~ p_θ and differentiating through the samples
(reparameterised) would evaluate the kernel flow, its most expensive part, at
(batch × samples) new pairs at every step; instead each measured y_i gets ``nodes`` fixed
nodes x_im drawn once from a proposal q_i, and

    ∫ ε p_φ(y_i | x) p_θ(x) dx ≈ (1/M) Σ_m K_im p_θ(x_im),   K_im = ε(x_im) p_φ(y_i | x_im) / q_i(x_im),

with K computed once (the detector does not change during the fit). The estimate is
unbiased for every θ and its gradient is exact (only log p_θ at the nodes depends on θ),
so a step costs (batch × nodes) evaluations of the small unconditional flow and nothing
of the kernel. The proposal is a defensive mixture q_i = (1 − α) q_post(x | y_i) + α g(x):
q_post is a conditional flow fitted to p_sim(x | y) on the passing pairs (close to the
integrand's shape, so the weights K_im p_θ vary little across m: ε p_φ p_θ / q_post ∝
p_θ/p_sim), and g a Gaussian 1.5× wider than the simulated x that keeps the weights bounded
where p_θ reaches beyond the simulation's posterior. The nodes are drawn as exactly
(1 − α)M from q_post and αM from g (balance-heuristic multiple importance sampling,
unbiased). Î_i is unbiased but log Î_i is not: E log Î ≈ log I − Var Î/(2 I²), a penalty
smallest where the terms K_im p_θ(x_im) are alike, i.e. where p_θ resembles the proposal's
prior p_sim; it shrinks as 1/M. (Adding the delta-method term s²/(2M Î²) back was tried on
development seed 1 and made things worse: the optimiser then gains by making the terms
*unlike*, and p_θ grew wiggles at the nodes.)

**Stratified nodes.** With independent nodes the error of Î_i is as large as the terms' scatter
over √M, and a flexible p_θ exploits it: on development seed 1 of the Gaussian toy (8 nodes
under the simulation's prior) a fully converged flow reached a node objective 0.0032 per
event above the best Gaussian on the same nodes, where the true log-likelihood allows the
flow's extra freedom about 2·10⁻⁴; it grows wiggles where the node table happens to have large
terms, and its moments moved by 1–2 % between node draws. So each event's nodes of a
component are drawn stratified (``stratified``, default on): a lattice of that many points
in [0, 1)^d shifted by one uniform draw per event (Cranley–Patterson rotation; in one
dimension one node in each 1/M of the component's probability), mapped through Φ⁻¹ and the
proposal's transform. Every node is still marginally a draw of its component, so Î_i stays
unbiased, but for a smooth integrand its error falls much faster than 1/√M. On the same
seed and nodes the flow's excess over the best Gaussian fell to 0.0009 per event, and the
best Gaussian moved from (0.989, 1.192) to (1.003, 1.187) (the exact folded maximum
likelihood on these data is (1.004, 1.199); the remaining pull of the width is the prior's,
removed by ``adapt`` below). The normalisation nodes are scrambled Sobol points.

The denominator uses ``norm_nodes`` fixed nodes from g:
∫ ε p_θ ≈ (1/N) Σ_l ε(z_l) p_θ(z_l) / g(z_l). Both sets of nodes are drawn once per detector model (below)
and stay fixed through its members' fits.

**Adapting the proposal to the estimate.** The penalty Var Î/(2 I²) is a bias of the
objective, not only noise: it is smallest where p_θ is like the proposal's prior, so with
q_post fitted under p_sim it pulls the fit towards the simulation's prior, and it falls only
as 1/M. On development seed 1 of the Gaussian toy (8 nodes, exact detector, 10⁶
normalisation nodes) the penalty is 0.0127 per event at the truth and 0.0064 at the prior,
while the log-likelihoods of N(1.0, 1.2) and N(0.985, 1.18) differ by about 10⁻⁴ per event:
the objective peaks near (0.99, 1.18), where the exact folded maximum likelihood on the same
data is (1.004, 1.199); at 64 nodes the penalties still differ by 10⁻⁴. So ``adapt`` rounds
(default 1) move the proposal to the estimate: a central fit p̂ (all the data, detector
model 0), then q_post refitted for ``adapt_epochs`` warm-started epochs on the passing pairs
reweighted by r(x) = p̂(x)/p_sim(x) (the odds of a classifier between draws of p̂ and the
simulated x, :func:`rarefy.unfold.generative.fit_ratio`, ``adapt_steps`` steps, clipped to
[1/20, 20]), and the nodes drawn again. q_post is then the posterior under p̂, near the
maximum, and the penalty pulls towards p̂ instead of the prior: on development seeds 1 and
2 the errors against the exact maximum likelihood went from (−1.7 %, −1.2 %) and
(−1.5 %, −1.3 %) in (mean, width) to (−0.4 %, +0.6 %) and (−0.6 %, −0.4 %). The members
start from, and fit through, the adapted nodes.

**Ensemble: independent members, data and simulation statistics.** ``kernels`` = K detector
models (ε_k, p_φk) are fitted, each on its own Poisson(1) bootstrap of the simulation's
weights. The proposal is shared (fitted once on all of the simulation: any proposal keeps the
integral unbiased), but each model draws its own node table from it. A node table is a random
input of the fit like the data's bootstrap: its finite number of nodes moves the maximum a
little, and replicas that shared one table would share that error, which their spread would
then miss. With one table per model the error varies between replicas, enters their spread,
and is averaged over K tables in the ensemble mean; the cost is the same (every model's table
takes one kernel evaluation per node either way, and one draw from the proposal). On the
Gaussian example's size (20,000 / 5,000, development seeds 1–10) one shared table left 1σ bars
covering 0.54 of the bins with χ²/ndf 4.3; own tables give 0.66 and 2.7
(docs/unfold/generative.md). ``shared_nodes`` restores one table for all.
Member j of replica g (g = j when ``starts`` = 1) uses detector model k = g mod K with its node
table, the replica's own Poisson(1) bootstrap weights of the data, and a **fresh** p_θ: a plain fit for
``init_epochs`` to the proposal's nodes weighted by its bootstrap weights / ε_k (a cheap
start near the one-pass posterior), then ``epochs`` of the folded likelihood, then
``samples`` unit-weight draws. Members thus differ by the data's and the simulation's
statistics and by the fit's own initialisation and batch order, so the spread also maps the
directions the smearing leaves almost unconstrained (structure finer than the resolution),
where a single fit's answer is arbitrary. An earlier version warm-started all members from
one central fit and shared one detector model: the members shared the central fit's error
and the spread undercovered by a factor of about 3 (docs/unfold/generative.md). ``info``
reports the members' spread of the mean and width.

**What the spread measures.** It is the error of one member's fit, not of the ensemble mean.
In bins narrower than the resolution where a fit puts probability between neighbours
depends on its start more than on the data; independent starts give independent patterns,
which the mean over members cancels, so on the Gaussian toy the per-bin spread is 2–3 times
the ensemble mean's actual error (docs/unfold/generative.md). The spread is therefore
conservative. (Members sharing one start would agree with each other and share one pattern:
small spread, large error.)

**Replicated starts.** With ``starts`` = r ≥ 2 the members come in ``members`` / r replicas:
the r members of a replica fit the same bootstrap of the data through the same detector
model, each from its own start and batch order. Their covariance is then the data's (and the
simulation's) share of the error without the start noise, and the result carries the
ensemble mean's error instead of the members' spread (:func:`rarefy.unfold.base.replicated_error`).

**Bounded support** (``bounded``). For a generator on a bounded range (XLZD's 2–13 keV) a
flow in x leaks probability past the simulated range, where no simulated event constrains
the learned kernel and efficiency, and the fit can explain edge events with mass outside.
With ``bounded`` p_θ is a flow in the logit coordinates u of the simulated range
(:mod:`rarefy.unfold.support`): log p_θ(x) = log p_u(u(x)) + log |du/dx| enters each node's
log-weight, nodes outside the range weigh zero, and every draw maps back inside. Off by
default: an unbounded prior's simulated range is only its sample's.

**Small data.** Epoch counts were chosen at 10⁵ measured events and 2·10⁵ simulated ones. With 5,000 and
20,000 the same epochs were a handful of steps: the kernel and proposal 5–8 per epoch, each member's start fit
10–16 in all. The start then stayed near its random initialisation, and the folded fit, from there, ended
between it and the data, pulled towards the simulation's prior (Gaussian example, development seed 1: mean
−5 %, width −9 %). So every fit takes at least as many steps per epoch as it does at the large size:
``kernel_min_steps`` (40) for the kernel and the proposal, 80 for the start fit, and 24 for the folded fit,
whose batch shrinks to no fewer than 2,048 events (or all of them), an epoch then passing over the data
more than once, so that its gradient is as little noisy as at the large size. None of these floors binds at
2·10⁵ / 10⁵ (checked on both cases; the batches there are unchanged).
A random initialisation of p_θ can also be one the start fit does not recover from in its steps (on one
development seed, a start at 3.9 nats per node where the others reached 1.6–1.7); the folded fit inherits
it and that member ends far from the others (mean 1.46 where they lie at 1.00–1.10). So a start fit whose
weighted log-density of its nodes is more than 0.25 nats worse than the nodes' own moment-matched Gaussian
is redrawn from a fresh initialisation, up to three times.

Settings were chosen on development seeds 1–10 of ``GaussianToy().problem(200_000, 100_000, seed)``
(docs/unfold/generative.md).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch
from scipy.special import logsumexp, ndtri
from scipy.stats import qmc

from ..errors import InputError
from ..nn.flows import DensityFlow, FlowSettings, fit_flow
from ..nn.seeding import seeded
from ..nn.trainer import Trainer, floored_batch
from .base import Problem, Unfolded
from .flow import member_seed
from .generative import LogitNet, fit_efficiency, fit_ratio
from .support import from_u, inside, log_du_dx, simulated_range, to_u

__all__ = ["FoldingNodes", "LikelihoodUnfolding", "stratified_normal"]

log = logging.getLogger(__name__)


def _log_gauss(x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    z = (x - mean) / sd
    return -0.5 * (z ** 2).sum(-1) - np.log(sd).sum() - 0.5 * x.shape[-1] * math.log(2 * math.pi)


def _gaussian_nll(x: np.ndarray, w: np.ndarray) -> float:
    """Weighted mean negative log-density (nats, units of x) of ``x`` (n, d) under its own weighted moment-matched
    diagonal Gaussian: a fit of a flexible density to ``x`` should not do much worse."""
    var = np.average((x - np.average(x, axis=0, weights=w)) ** 2, axis=0, weights=w)
    return float(0.5 * np.sum(np.log(2 * math.pi * math.e * np.maximum(var, 1e-300))))


def stratified_normal(n: int, m: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(n, m, d) standard-normal draws (dimensionless): for each of n rows a rank-1 lattice of m points in [0, 1)^d (equally
    spaced along the first axis) shifted by one uniform draw modulo 1 (Cranley–Patterson), through Φ⁻¹. Each
    point is marginally N(0, 1); within a row they are stratified."""
    a = next((k for k in range(max(1, round(m / 1.618)), 0, -1) if math.gcd(k, m) == 1), 1)
    h = np.array([pow(a, j, m) for j in range(d)], float)
    u = (np.arange(m)[:, None] * h[None, :] / m)[None] + rng.random((n, 1, d))
    return ndtri(np.clip(u % 1.0, 1e-12, 1 - 1e-12))


def _sobol_normal(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(n, d) standard-normal draws from a scrambled Sobol sequence (randomised quasi-Monte Carlo, unbiased)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # balance warning when n is not a power of two
        u = qmc.Sobol(d, scramble=True, seed=rng).random(n)
    return ndtri(np.clip(u, 1e-12, 1 - 1e-12))


_RATIO_CLIP = 20.0      # bound on the proposal's reweighting p̂ / p_sim
_START_MARGIN = 0.25    # nats per node: a start fit this much worse than a Gaussian failed
_START_TRIES = 3        # initialisations tried for a failed start fit
_STEPS_PER_EPOCH = 24   # what 10^5 measured events give at the default 4,096 per batch
_SMALLEST_BATCH = 2048  # the folded fit's least batch: 10^5 measured events in a Poisson bootstrap give 2,634
# the start fit's least steps per epoch: 10^5 measured events in a Poisson bootstrap (63,000 of positive
# weight) with 12 proposal nodes each give 93 batches of 8,192, so 80 leaves that size unchanged
_INIT_STEPS_PER_EPOCH = 80

@dataclass(frozen=True)
class _Prepared:
    """One detector model's node table in the fit's form (see ``LikelihoodUnfolding._prepare``)."""

    zx: torch.Tensor
    zz: torch.Tensor
    lk: torch.Tensor
    lkz: torch.Tensor
    m_q: int
    x0: np.ndarray
    inv_eps: np.ndarray


@dataclass
class FoldingNodes:
    """Fixed importance-sampling nodes: ``x`` (n_data, nodes, d) with log-weights ``log_k`` (n_data, nodes), so
    that ∫ ε p_φ(y_i | x) p(x) dx ≈ Σ_m exp(log_k[i, m]) p(x[i, m]); ``z`` with ``log_kz`` likewise for ∫ ε p;
    and the fitted detector parts (kernel p_φ(y | x), proposal q_post(x | y), efficiency)."""

    x: np.ndarray
    log_k: np.ndarray
    z: np.ndarray
    log_kz: np.ndarray
    kernel: DensityFlow
    proposal: DensityFlow
    efficiency: LogitNet

    def log_likelihood(self, log_p: Callable[[np.ndarray], np.ndarray], weight: np.ndarray | None = None) -> float:
        """The folded log-likelihood per (weighted) measured event of a density with log-density ``log_p`` (x units)."""
        n, m, d = self.x.shape
        lp = log_p(self.x.reshape(n * m, d)).reshape(n, m)
        num = logsumexp(self.log_k + lp, axis=1)
        norm = logsumexp(self.log_kz + log_p(self.z))
        w = np.ones(n) if weight is None else np.asarray(weight, np.float64)
        return float((w * num).sum() / w.sum() - norm)


@dataclass(frozen=True)
class LikelihoodUnfolding:
    """Maximum-likelihood fit of a generative flow folded through a learned kernel; see the module docstring.

    Parameters
    ----------
    members:
        Independent fits of the unfolded flow, each from a fresh initialisation on its own bootstrap of the data
        (shared by the ``starts`` members of one replica).
    kernels:
        Detector models (ε and kernel), each fitted on its own bootstrap of the simulation; replica g uses
        model g mod ``kernels``.
    nodes:
        Importance-sampling nodes per measured event (``defensive`` of them from the wide Gaussian).
    norm_nodes:
        Nodes for the efficiency normalisation ∫ ε p_θ.
    defensive:
        Fraction α of nodes from the wide Gaussian g.
    transforms, hidden, bins:
        The unfolded flow p_θ (NSF; ``hidden`` is unused for one generation-level column, whose spline parameters
        are plain constants).
    init_epochs:
        Epochs of the plain fit of p_θ to the proposal's 1/ε-weighted nodes that starts each member (0: none).
    epochs:
        Epochs of each member's folded-likelihood fit.
    batch_size, lr:
        Measured events per step (at most; smaller when fewer than 24 batches of it fit in the data, down to
        2,048 or all of them, and an epoch of fewer events passes over them more than once: small data sets get
        as many optimiser steps per epoch, of as little gradient noise) and Adam learning rate of p_θ.
    kernel_transforms, kernel_hidden, kernel_bins, kernel_epochs:
        The conditional flows p_φ(y | x) and q_post(x | y) (and their epochs on the passing pairs).
    kernel_min_steps:
        Least optimiser steps per epoch of those flows: with fewer passing simulated pairs (of positive weight)
        than this many batches of 2,048, the batch shrinks (to no fewer than 256 pairs). The Gaussian toy's
        200,000 simulated events leave 148,000 passing pairs, 94,000 in a Poisson bootstrap: 46 batches, so
        40 leaves fits at that size and above unchanged, while 20,000 simulated events get about 40 steps
        per epoch instead of 5–8 (0: no floor).
    samples:
        Draws per member (0: as many as measured events).
    efficiency_correction:
        Fold with the learned ε (off: ε ≡ 1, which fits the passing truth instead; for comparison).
    adapt:
        Rounds of moving the proposal to a central fit before the members run (0: the posterior under the
        simulation's prior).
    adapt_epochs, adapt_steps:
        Epochs of the proposal's warm-started refit, and optimiser steps of the density-ratio classifier, per round.
    stratified:
        Draw each event's nodes as a randomly shifted lattice per mixture component, and the normalisation nodes
        as scrambled Sobol points (off: independent draws).
    starts:
        Members per data replica, each from its own start (1: every member its own replica, and the result's
        uncertainty is the members' spread; ≥ 2: the ensemble mean's error from the replicas, see above).
    shared_nodes:
        Draw one node table for all detector models instead of one per model (their spread then misses the
        table's error; for comparison).
    bounded:
        Fit p_θ in the logit coordinates of the simulated range (:mod:`rarefy.unfold.support`), so that it puts
        no probability outside it; for a generator on a bounded range (XLZD's 2–13 keV), not for an unbounded
        prior.
    """

    name: ClassVar[str] = "likelihood"

    members: int = 16
    kernels: int = 8
    nodes: int = 16
    norm_nodes: int = 16384
    defensive: float = 0.25
    transforms: int = 2
    hidden: tuple[int, ...] = (32, 32)
    bins: int = 8
    init_epochs: int = 2
    epochs: int = 8
    batch_size: int = 4096
    lr: float = 1e-2
    kernel_transforms: int = 2
    kernel_hidden: tuple[int, ...] = (32, 32)
    kernel_bins: int = 8
    kernel_epochs: int = 16
    kernel_min_steps: int = 40
    samples: int = 0
    efficiency_correction: bool = True
    adapt: int = 1
    adapt_epochs: int = 4
    adapt_steps: int = 800
    stratified: bool = True
    starts: int = 2
    bounded: bool = False
    shared_nodes: bool = False

    def _check(self) -> None:
        if self.starts < 1 or self.members % self.starts or (self.starts > 1 and self.members < 2 * self.starts):
            raise InputError(f"likelihood unfolding: starts must be >= 1 and divide members into at least two "
                             f"replicas, got starts {self.starts} for {self.members} members", column="starts")
        if self.init_epochs < 0:
            raise InputError(f"likelihood unfolding: init_epochs must be >= 0, got {self.init_epochs}",
                             column="init_epochs")
        if self.adapt < 0:
            raise InputError(f"likelihood unfolding: adapt must be >= 0, got {self.adapt}", column="adapt")
        if self.kernel_min_steps < 0:
            raise InputError(f"likelihood unfolding: kernel_min_steps must be >= 0, got {self.kernel_min_steps}",
                             column="kernel_min_steps")
        for key in ("members", "kernels", "nodes", "adapt_epochs", "adapt_steps", "norm_nodes", "epochs", "batch_size", "transforms",
                    "bins", "kernel_transforms", "kernel_bins", "kernel_epochs"):
            if int(getattr(self, key)) < 1:
                raise InputError(f"likelihood unfolding: {key} must be >= 1, got {getattr(self, key)}", column=key)
        if not 0 < self.defensive < 1:
            raise InputError(f"likelihood unfolding: defensive must be in (0, 1), got {self.defensive}",
                             column="defensive")

    def unfold(self, problem: Problem, seed: int) -> Unfolded:
        """Unfold ``problem``; deterministic for ``seed``."""
        self._check()
        t0 = time.perf_counter()
        p = problem
        n, d = p.n_data, len(p.gen_names)
        # K detector models, each fitted on its own Poisson(1) bootstrap of the simulation
        sim_w = [p.sim_weight * np.random.default_rng([int(seed), 40, k]).poisson(1.0, len(p.sim_weight))
                 for k in range(self.kernels)]
        detectors = self._detectors(p, seed, sim_w)
        post = self._proposal(p, seed)
        tables = self._draw(p, seed, post, detectors, 0)
        settings = self._theta_settings(d)
        # p_θ in the standardised coordinates of the simulated x (the same for every member)
        support = simulated_range(p) if self.bounded else None
        ref = DensityFlow(to_u(p.sim_gen, support), None, settings, member_seed(seed, 43), p.sim_weight)
        for a in range(self.adapt):
            # a central fit on all of the data, then nodes from the posterior under it
            sa = member_seed(seed, 53, a)
            center = self._member(p, ref, self._prepare(ref, tables, support), 0, p.data_weight,
                                  (sa, member_seed(sa, 1), member_seed(sa, 2)), f"likelihood central fit {a + 1}",
                                  support)
            post = self._adapt(p, seed, post, center, a, support)
            tables = self._draw(p, seed, post, detectors, a + 1)
        prepared = self._prepare(ref, tables, support)
        t_nodes = time.perf_counter() - t0
        members: list[tuple[np.ndarray, np.ndarray]] = []
        n_out = self.samples or n
        moments = []
        replica = np.arange(self.members) // self.starts
        for j in range(self.members):
            g = int(replica[j])
            wj = p.data_weight * np.random.default_rng([int(seed), 45, g]).poisson(1.0, n)
            fj = self._member(p, ref, prepared, g % self.kernels, wj,
                              (member_seed(seed, 43, j), member_seed(seed, 48, j), member_seed(seed, 46, j)),
                              f"likelihood member {j}", support)
            xs = from_u(fj.sample(n=n_out, seed=member_seed(seed, 47, j)), support)
            members.append((xs, np.ones(len(xs))))
            moments.append((xs.mean(0), xs.std(0)))
        means = np.array([mm[0] for mm in moments])
        widths = np.array([mm[1] for mm in moments])
        info = {"members": self.members, "starts": self.starts, "kernels": self.kernels, "nodes": self.nodes,
                "adapt": self.adapt, "bounded": self.bounded,
                "kernel_nll": float(np.mean([k.history[-1]["train_loss"] for _, k in detectors if k.history]))
                if detectors[0][1].history else float("nan"),
                "member_mean_sd": means.std(0, ddof=1).tolist() if len(means) > 1 else [0.0] * d,
                "member_width_sd": widths.std(0, ddof=1).tolist() if len(widths) > 1 else [0.0] * d,
                "detector_and_nodes_s": t_nodes, "wall_s": time.perf_counter() - t0}
        return Unfolded(self.name, p.gen_names, members, info, replica if self.starts > 1 else None)

    def _prepare(self, ref: DensityFlow, tables: list[FoldingNodes],
                 support: tuple[np.ndarray, np.ndarray] | None) -> list[_Prepared]:
        """The node tables as the fit reads them, one per detector model: standardised nodes (in the logit
        coordinates u with a ``support``, whose log |du/dx| joins the log-weights and outside which a node's
        weight is zero), float32 log-weights and the start fit's 1/ε at the proposal's nodes."""
        n, m, d = tables[0].x.shape
        m_q = m - max(1, round(self.defensive * m))

        def coords(x: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
            ok = inside(x, support)
            u = np.where(ok[:, None], to_u(x, support), 0.0)
            return torch.from_numpy(ref.sx(u)), np.where(ok, log_du_dx(x, support), -np.inf)

        out: list[_Prepared] = []
        for t in tables:
            zx, jx = coords(t.x.reshape(n * m, d))
            zz, jz = coords(t.z)
            x0 = t.x[:, :m_q].reshape(n * m_q, d)
            ok0 = inside(x0, support)
            u0 = np.where(ok0[:, None], to_u(x0, support), 0.0)
            out.append(_Prepared(zx.reshape(n, m, d), zz, torch.from_numpy((t.log_k + jx.reshape(n, m)).astype(np.float32)),
                                 torch.from_numpy((t.log_kz + jz).astype(np.float32)), m_q, u0,
                                 ok0 / t.efficiency.probability(x0) if self.efficiency_correction else ok0.astype(float)))
        return out

    def _member(self, p: Problem, ref: DensityFlow, prepared: list[_Prepared], k: int, weight: np.ndarray,
                seeds: tuple[int, int, int], name: str, support: tuple[np.ndarray, np.ndarray] | None) -> DensityFlow:
        """A fresh p_θ fitted to the measured events with weights ``weight`` through detector model ``k``: a plain
        start on the proposal's nodes weighted by ``weight`` / ε_k, then the folded likelihood. ``seeds``: the
        flow's initialisation, its start fit and its folded fit."""
        t = prepared[k]
        settings = self._theta_settings(t.zx.shape[2])
        unf = DensityFlow(to_u(p.sim_gen, support), None, settings, seeds[0], p.sim_weight)
        if t.m_q and self.init_epochs:
            # start from the proposal's unfolding of these data (its nodes weighted by 1/ε_k), a cheap plain fit
            # that leaves the folded fit less ground to cover
            init = replace(settings, epochs=self.init_epochs, batch_size=8192, lr=self.lr, min_steps=_INIT_STEPS_PER_EPOCH)
            w0 = np.repeat(weight, t.m_q) * t.inv_eps
            gauss = _gaussian_nll(t.x0, w0)
            for attempt in range(_START_TRIES):
                if attempt:
                    # the start fit is worse than a Gaussian by a wide margin: a random initialisation it could
                    # not recover from in its few steps; the folded fit would inherit it, so draw another
                    log.info("%s: start fit %.3f nats worse than a Gaussian, fresh initialisation %d", name,
                             nll - gauss, attempt)
                    unf = DensityFlow(to_u(p.sim_gen, support), None, settings, member_seed(seeds[0], 59, attempt),
                                      p.sim_weight)
                unf = fit_flow(t.x0, None, init, seeds[1] if not attempt else member_seed(seeds[1], 59, attempt),
                               weight=w0, start=unf, name=f"{name} start")
                nll = -float(np.average(unf.log_prob(t.x0), weights=w0))
                if nll <= gauss + _START_MARGIN:
                    break
        return self._fit(unf, t.zx, t.lk, t.zz, t.lkz, ref.sx.log_jacobian, weight, self.epochs, self.lr, seeds[2],
                         name)

    def _theta_settings(self, d: int) -> FlowSettings:
        # with one column and no context the autoregressive mask leaves the hypernetwork no input: its spline
        # parameters are constants, and hidden layers would only reparameterise them (slower, worse conditioned)
        return FlowSettings(transforms=self.transforms, hidden=tuple(self.hidden) if d > 1 else (), bins=self.bins)

    def folding_nodes(self, problem: Problem, seed: int, center: DensityFlow | None = None) -> FoldingNodes:
        """Fit ε, the kernel p_φ(y | x) and the proposal q_post(x | y) on all of the simulation and draw the fixed
        importance-sampling nodes with their log-weights (see the module docstring). The proposal is the
        posterior under the simulation's prior, or with ``center`` (an unconditional flow over the generation
        level) under that density instead, as after one adaptation round."""
        p = problem
        post = self._proposal(p, seed)
        if center is not None:
            post = self._adapt(p, seed, post, center, 0, None)
        return self._draw(p, seed, post, self._detectors(p, seed, [p.sim_weight]), 0 if center is None else 1)[0]

    def _kernel_settings(self) -> FlowSettings:
        return FlowSettings(transforms=self.kernel_transforms, hidden=tuple(self.kernel_hidden), bins=self.kernel_bins,
                            epochs=self.kernel_epochs, batch_size=2048, lr=3e-3, min_steps=self.kernel_min_steps)

    def _proposal(self, p: Problem, seed: int) -> DensityFlow:
        """q_post(x | y) under the simulation's prior, fitted on the passing pairs."""
        return fit_flow(p.sim_gen[p.sim_pass], p.sim_rec[p.sim_pass], self._kernel_settings(), member_seed(seed, 3),
                        weight=p.sim_weight[p.sim_pass], name="likelihood proposal")

    def _detectors(self, p: Problem, seed: int, sim_weights: list[np.ndarray]) -> list[tuple[LogitNet, DensityFlow]]:
        """One detector model (ε, kernel p_φ(y | x)) per set of simulation weights."""
        out = []
        for k, w in enumerate(sim_weights):
            eff = fit_efficiency(p.sim_gen, p.sim_pass, w, member_seed(seed, 1, k))
            kernel = fit_flow(p.sim_rec[p.sim_pass], p.sim_gen[p.sim_pass], self._kernel_settings(),
                              member_seed(seed, 2, k), weight=w[p.sim_pass], name=f"likelihood kernel {k}")
            out.append((eff, kernel))
        return out

    def _adapt(self, p: Problem, seed: int, post: DensityFlow, center: DensityFlow, a: int,
               support: tuple[np.ndarray, np.ndarray] | None) -> DensityFlow:
        """The proposal refitted on the passing pairs reweighted by r(x) = p̂(x) / p_sim(x), so that it is the
        posterior under the current estimate p̂ (``center``, a flow in the coordinates u of ``support``) instead
        of the simulation's prior."""
        xs = from_u(center.sample(n=min(p.n_sim, 200_000), seed=member_seed(seed, 50, a)), support)
        ratio = fit_ratio(xs, np.ones(len(xs)), p.sim_gen, p.sim_weight, member_seed(seed, 51, a),
                          min_steps=self.adapt_steps)
        r = np.clip(np.exp(ratio.logit(p.sim_gen)), 1 / _RATIO_CLIP, _RATIO_CLIP)
        w = (p.sim_weight * r)[p.sim_pass]
        return fit_flow(p.sim_gen[p.sim_pass], p.sim_rec[p.sim_pass], self._kernel_settings(), member_seed(seed, 52, a),
                        weight=w, start=post, epochs=self.adapt_epochs, name=f"likelihood proposal {a + 1}")

    def _draw(self, p: Problem, seed: int, post: DensityFlow, detectors: list[tuple[LogitNet, DensityFlow]],
              a: int) -> list[FoldingNodes]:
        """One table of fixed nodes from the defensive mixture of ``post`` and the wide Gaussian g, with their
        log-weights, per detector model: each model its own nodes, or one set for all with ``shared_nodes``
        (``a`` numbers the proposal, for the seeds)."""
        w_sim = p.sim_weight
        g_mean = np.average(p.sim_gen, axis=0, weights=w_sim)
        g_sd = 1.5 * np.sqrt(np.average((p.sim_gen - g_mean) ** 2, axis=0, weights=w_sim))
        m = self.nodes
        y_rep = np.repeat(p.data_rec, m, axis=0)                       # (n·m, k), event-major
        out = []
        shared = self._nodes(p, seed, post, a, None, g_mean, g_sd, y_rep) if self.shared_nodes else None
        for k, (eff, kernel) in enumerate(detectors):
            draw = shared if shared is not None else self._nodes(p, seed, post, a, k, g_mean, g_sd, y_rep)
            x_nodes, z_nodes, log_q = draw
            xf = x_nodes.reshape(-1, x_nodes.shape[2])
            log_eps = -np.logaddexp(0.0, -eff.logit(xf)) if self.efficiency_correction else np.zeros(len(xf))
            log_k = (log_eps + kernel.log_prob(y_rep, xf) - log_q - math.log(m)).reshape(p.n_data, m)
            log_eps_z = -np.logaddexp(0.0, -eff.logit(z_nodes)) if self.efficiency_correction else 0.0
            log_kz = log_eps_z - _log_gauss(z_nodes, g_mean, g_sd) - math.log(self.norm_nodes)
            out.append(FoldingNodes(x_nodes, log_k, z_nodes, log_kz, kernel, post, eff))
        return out

    def _nodes(self, p: Problem, seed: int, post: DensityFlow, a: int, k: int | None, g_mean: np.ndarray,
               g_sd: np.ndarray, y_rep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One draw of the nodes (n_data, nodes, d) and normalisation nodes (norm_nodes, d), x units, with the
        nodes' log proposal density; ``k`` numbers a detector model's own set (None: the shared one)."""
        d = len(p.gen_names)
        m = self.nodes
        m_g = max(1, round(self.defensive * m))
        m_q = m - m_g
        n = p.n_data
        own = [] if k is None else [k]
        keys = own if a == 0 and k is None else [a, *own]     # the shared first draw keeps its original streams
        rng = np.random.default_rng([int(seed), 41, *keys])
        x_nodes = np.empty((n, m, d))
        if self.stratified:
            # each event's nodes of a component: a lattice of that many points shifted by one uniform draw
            # per event (unbiased: every node is marginally a draw of its component), mapped through Φ⁻¹
            if m_q:
                zq = stratified_normal(n, m_q, d, np.random.default_rng([int(seed), 44, a] + own))
                x_nodes[:, :m_q] = post.sample(np.repeat(p.data_rec, m_q, axis=0),
                                               base=zq.reshape(n * m_q, d)).reshape(n, m_q, d)
            x_nodes[:, m_q:] = g_mean + g_sd * stratified_normal(n, m_g, d, rng)
            z_nodes = g_mean + g_sd * _sobol_normal(self.norm_nodes, d, rng)
        else:
            if m_q:
                x_nodes[:, :m_q] = post.sample(np.repeat(p.data_rec, m_q, axis=0),
                                               seed=member_seed(seed, 42, *keys)
                                               ).reshape(n, m_q, d)
            x_nodes[:, m_q:] = g_mean + g_sd * rng.standard_normal((n, m_g, d))
            z_nodes = g_mean + g_sd * rng.standard_normal((self.norm_nodes, d))
        xf = x_nodes.reshape(n * m, d)
        log_g = np.log(m_g / m) + _log_gauss(xf, g_mean, g_sd)
        log_q = np.logaddexp(np.log(m_q / m) + post.log_prob(xf, y_rep), log_g) if m_q else log_g
        return x_nodes, z_nodes, log_q

    def _fit(self, unf: DensityFlow, zx: torch.Tensor, lk: torch.Tensor, zz: torch.Tensor, lkz: torch.Tensor,
             jac: float, weight: np.ndarray, epochs: int, lr: float, seed: int, name: str) -> DensityFlow:
        """Maximise the folded log-likelihood over p_θ (in place on ``unf``, which is returned)."""
        keep = np.flatnonzero(weight > 0)
        wt = torch.from_numpy((weight / weight[keep].mean()).astype(np.float32))
        _n, m, d = zx.shape
        # at least _STEPS_PER_EPOCH steps per epoch of at least _SMALLEST_BATCH events (or all of them): with
        # few measured events an epoch passes over the data more than once, so a fit takes as many steps, of
        # as little gradient noise, as at 10^5 events and 4,096 per batch (unchanged there)
        bs = floored_batch(len(keep), self.batch_size, _STEPS_PER_EPOCH, smallest=min(len(keep), _SMALLEST_BATCH))
        natural = math.ceil(len(keep) / bs)
        nb = max(_STEPS_PER_EPOCH, natural)
        passes = 1 if nb == natural else math.ceil(nb * bs / len(keep))

        def batches(epoch: int) -> Iterator[torch.Tensor]:
            perm = np.concatenate([np.random.default_rng([seed, 2, epoch] + ([r] if r else [])).permutation(len(keep))
                                   for r in range(passes)])
            perm = torch.from_numpy(keep[perm])
            for b in range(nb):
                yield perm[b * bs:(b + 1) * bs]

        def step(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
            dist = model()
            lp = dist.log_prob(zx[idx].reshape(-1, d)).reshape(len(idx), m) + jac
            num = torch.logsumexp(lk[idx] + lp, dim=1)
            log_norm = torch.logsumexp(lkz + dist.log_prob(zz) + jac, dim=0)
            w = wt[idx]
            return -(w * num).sum() / w.sum() + log_norm

        with seeded(seed):
            Trainer(unf.flow, lambda ps: torch.optim.Adam(ps, lr=lr), step, epochs=epochs, lr_schedule="cosine",
                    seed=seed, name=name).fit(batches)
        unf.flow.eval()
        return unf
