"""OmniFold: unbinned, multi-dimensional unfolding by classifier reweighting at both levels.

Andreassen, Komiske, Metodiev, Nachman, Thaler, *OmniFold: A Method to Simultaneously
Unfold All Observables*, PRL 124 (2020) 182001, arXiv 1911.09107. OmniFold is iterative
Bayesian unfolding with the histograms replaced by classifiers, so it needs no binning
and works in any number of dimensions.

**Iteration n** (weights over the simulated events i, each with prior weight s_i,
generation-level x_i, reconstructed y_i and pass flag π_i; ν⁰ ≡ 1):

1. *Pull* (reconstructed level). A classifier separates the data (weights d_j) from the
   passing simulation weighted by s_i ν^{n−1}_i. Its odds are the density ratio
   r(y) = p_data(y) / p_sim,ν(y) (:class:`~rarefy.nn.classifier.WeightedClassifier`), and
   ω^n_i = ν^{n−1}_i · r(y_i) for passing events. Events that did not pass have no y and
   no information from this step: they keep ω^n_i = ν^{n−1}_i (the treatment of the
   ``omnifold`` package).
2. *Push* (generation level). A classifier separates the simulation weighted by s_i ω^n_i
   from the same events weighted by s_i; its odds at x_i are ν^n_i. Step 1's weights are
   per-event (a function of y); this step turns them into a function of x, which is what
   a weight on the truth must be. Skipping it would leave weights that depend on the
   smearing of each event, and the failing events would never be corrected: the
   efficiency correction comes from here, because ν^n is learnt from every event.

The answer is the simulation at generation level with weights s_i ν^N_i, over **all**
simulated events (passed or not), so the efficiency ε(x) is corrected without being
modelled. In the infinite-data, perfect-classifier limit the iteration is exactly
D'Agostini's iterative Bayesian unfolding at infinitely fine binning; like it, a finite
number of iterations N regularises towards the prior, and N trades bias against variance.

**Choices, and why.**

* ``iterations`` = 12: a finite number of iterations regularises towards the prior, and
  OmniFold converges more slowly than binned IBU because events lost to the efficiency
  keep their weight in step 1 (only the passing fraction ε moves per iteration). The bias
  falls slowly with the iterations and the members' spread grows; on the Gaussian toy
  (development seeds 1–4, 8 members) the per-bin χ²/ndf against the truth falls from 3.5
  after 6 iterations to 2.1 after 10 and 1.9 after 12, the mean pull of the outermost bin
  from −5.3 to −2.8, the mean relative error of the width from −0.64 % to −0.44 %, while
  the per-bin 1σ coverage stays at 0.51–0.59 (docs/unfold/omnifold.md). 12 iterations cost
  about 65 s of one CPU core per pseudo-experiment with 8 members (6: about 43 s), twice
  that with the default 16.
* *Warm starts*: each step's classifier goes on training from the previous iteration's
  network (the package does the same) for ``epochs_next`` epochs at ``lr_next``: the
  ratio changes little between iterations, so most of the training is done once
  (``epochs_first`` at ``lr``). One epoch per warm start at a constant rate left the
  unfolded mean jumping by ±1 % from iteration to iteration (optimiser noise); a cosine
  schedule stepped ``parts`` = 4 times per epoch and 3 epochs bring the jumps down to a few
  tenths of a percent (development seed 2).
* *One pass at generation level*: the push classifier sees each simulated x once with two
  class weights (s ω and s) instead of the sample twice: half the cost, same loss.
* *Large batches, small network*: a low-dimensional density ratio is smooth; an MLP of
  two ReLU layers of 32 trained with batches of 4,096 (Adam, 10⁻² then 3·10⁻³) learns it
  in a few epochs: about 5 s of one CPU core per member for 200,000 simulated and
  100,000 measured events (docs/unfold/omnifold.md).
* *A floor of ``min_steps`` = 24 optimiser steps per epoch*: the epoch counts were chosen at
  200,000 simulated / 100,000 measured events, where an epoch of bootstrapped events is
  31–38 batches of 4,096. At 20,000 / 5,000 the same epochs are 4–6 steps, and the
  classifiers stay near their smooth start: an underfitted ratio moves the weights less
  per iteration, so the result stays nearer the prior (on the XLZD case, development seeds
  1–3, χ²/ndf 6.8 after 24 iterations without the floor, 2.7 with it). Below 24 batches
  the batch shrinks (to no fewer than 256 events); at the large size nothing changes.
* *Ratio clipping* to [1/``clip``, ``clip``]: where a class has no events the network
  extrapolates; a bounded weight keeps one event from dominating a member.

**Uncertainty: the ensemble.** Member m repeats the whole procedure with its own network
seeds and a Poisson(1) bootstrap of the event weights: of the data (the statistical
error of the measurement) and, with ``bootstrap_sim``, of the simulation too (the
simulation's finite size: it enters through the response learnt in both steps and
through the final weighted histogram of the simulated x). The member's result is
(x_i, b_i s_i ν^N_{m,i}) with b_i its simulation bootstrap factor. The spread of the
members is the uncertainty (bootstrap + training noise); their mean is the estimate.
Bootstrapping only the data understates the spread by the simulation's share.

**What the spread does not hold: the regularisation bias.** At a fixed number of
iterations the answer leans towards the prior where the data constrain it least: in the
tails where the prior is far below the truth. On the toy (prior N(0.5, 1), truth
N(1, 1.2)) the outermost bins of μ ± 3σ, where the prior is 10–40 times below the truth,
come out low, and binned IBU on the same events shows the same deficit; the members agree
with each other there, so per-bin 1σ coverage falls below 68 %. More iterations trade
this bias for variance, as for IBU, but slowly: 12 iterations halve the outermost bin's
pull, not remove it. The change of the answer between the last two iterations is no
usable estimate of the remaining bias: added in quadrature it moves the coverage by
0.01–0.06, and only 8 times that change reaches the target (measured values in
docs/unfold/omnifold.md).

The ensemble has ``ensemble`` = 16 members because the spread of a few members is itself
uncertain: with the sd estimated from M members an unbiased estimate's pull follows
Student's t with M − 1 degrees of freedom, whose χ²/ndf is (M − 1)/(M − 3) and whose
|pull| ≤ 1 fraction is below 0.683: 1.4 and 0.65 at M = 8, 1.15 and 0.667 at M = 16. With 8
a per-bin χ²/ndf ≤ 1.5 or a 1σ coverage ≥ 0.6 leaves almost no room for any bias.

**Units.** x and y in their columns' units; weights are dimensionless; ``info["n_true"]``
is the efficiency-corrected number of true events, Σ d_j / ε̂ with
ε̂ = Σ_pass s ν / Σ s ν, in events; ``info["wall_s"]`` in seconds.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..nn.classifier import WeightedClassifier
from ..threads import torch_threads
from .base import Problem, Unfolded

__all__ = ["OmniFold"]

log = logging.getLogger(__name__)


@dataclass
class OmniFold:
    """OmniFold settings (see the module docstring).

    ``iterations`` pull/push iterations; ``ensemble`` members (bootstrap + network seed);
    classifiers: ``hidden`` widths with ``activation``, ``epochs_first`` epochs at ``lr`` in the
    first iteration and ``epochs_next`` at ``lr_next`` in each later one (warm start),
    ``batch_size`` (at most; smaller when an epoch would take fewer than ``min_steps`` steps),
    ``lr_schedule`` stepped ``parts`` times per epoch, ``weight_decay``;
    ``bootstrap_data`` / ``bootstrap_sim`` Poisson(1) bootstrap of the data / simulation
    weights per member; ``clip`` bounds each ratio; ``threads`` torch intra-op threads
    during the fit (0: leave the current setting); ``on_iteration(member, iteration,
    weights)`` is called after each push step (diagnostics).
    """

    iterations: int = 12
    ensemble: int = 16
    hidden: tuple[int, ...] = (32, 32)
    activation: str = "relu"
    epochs_first: int = 4
    epochs_next: int = 3
    batch_size: int = 4096
    min_steps: int = 24
    lr: float = 1e-2
    lr_next: float = 3e-3
    lr_schedule: str = "cosine"
    parts: int = 4
    weight_decay: float = 0.0
    bootstrap_data: bool = True
    bootstrap_sim: bool = True
    clip: float = 50.0
    threads: int = 0
    on_iteration: Callable[[int, int, np.ndarray], None] | None = field(default=None, repr=False, compare=False)
    name: str = field(default="omnifold", init=False)

    def __post_init__(self) -> None:
        if int(self.min_steps) < 0:
            raise InputError(f"omnifold: min_steps must be >= 0, got {self.min_steps}")
        for key in ("iterations", "ensemble", "epochs_first", "epochs_next", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise InputError(f"omnifold: {key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise InputError(f"omnifold: lr must be > 0, got {self.lr}")
        if not self.clip > 1:
            raise InputError(f"omnifold: clip must be > 1, got {self.clip}")
        self.hidden = tuple(int(h) for h in self.hidden)

    def _classifier(self, d: int, seed: int, name: str) -> WeightedClassifier:
        # lr is set per fit (first fit ``lr``, warm starts ``lr_next``)
        return WeightedClassifier(d, hidden=self.hidden, activation=self.activation,  # type: ignore[arg-type]
                                  lr=self.lr, weight_decay=self.weight_decay, batch_size=self.batch_size,
                                  min_steps=self.min_steps,
                                  lr_schedule=self.lr_schedule, parts=self.parts,  # type: ignore[arg-type]
                                  seed=seed, name=name)

    def member(self, problem: Problem, seed: int, index: int) -> tuple[np.ndarray, dict]:
        """One ensemble member: the final simulation weights b·s·ν^N (shape (n_sim,)) and its figures."""
        rng = np.random.default_rng([int(seed), int(index), 11])
        dw = problem.data_weight * (rng.poisson(1.0, problem.n_data) if self.bootstrap_data else 1.0)
        sw = problem.sim_weight * (rng.poisson(1.0, problem.n_sim) if self.bootstrap_sim else 1.0)
        passed = problem.sim_pass
        y_sim = problem.sim_rec[passed]
        x_rec = np.concatenate([problem.data_rec, y_sim])
        nd = problem.n_data
        w1_rec = np.concatenate([dw, np.zeros(y_sim.shape[0])])
        c_seed = int(rng.integers(2**31))
        pull_clf = self._classifier(problem.data_rec.shape[1], c_seed, f"omnifold member {index} pull")
        push_clf = self._classifier(problem.sim_gen.shape[1], c_seed + 1, f"omnifold member {index} push")
        push = np.ones(problem.n_sim)
        for it in range(self.iterations):
            epochs = self.epochs_first if it == 0 else self.epochs_next
            pull_clf.lr = push_clf.lr = self.lr if it == 0 else self.lr_next
            w0_rec = np.concatenate([np.zeros(nd), (sw * push)[passed]])
            pull_clf.fit(x_rec, w1_rec, w0_rec, epochs=epochs)
            pull = push.copy()
            pull[passed] *= pull_clf.ratio(y_sim, self.clip)
            push_clf.fit(problem.sim_gen, sw * pull, sw, epochs=epochs)
            push = push_clf.ratio(problem.sim_gen, self.clip)
            if self.on_iteration is not None:
                self.on_iteration(index, it, sw * push)
        w = sw * push
        eff = float(w[passed].sum() / w.sum())
        return w, {"efficiency": eff, "n_true": float(dw.sum() / eff)}

    def unfold(self, problem: Problem, seed: int) -> Unfolded:
        """Unfold ``problem``: ``ensemble`` members (sim_gen, weights); deterministic for ``seed``."""
        if problem.sim_pass.sum() < 2 or problem.n_data < 2:
            raise InputError("omnifold needs at least 2 passing simulated and 2 measured events")
        t0 = time.perf_counter()
        members, effs, ntrue = [], [], []
        with torch_threads(self.threads) if self.threads > 0 else contextlib.nullcontext():
            for j in range(self.ensemble):
                w, info = self.member(problem, seed, j)
                members.append((problem.sim_gen, w))
                effs.append(info["efficiency"])
                ntrue.append(info["n_true"])
                log.info("omnifold member %d/%d: efficiency %.4f", j + 1, self.ensemble, info["efficiency"])
        sd = float(np.std(ntrue, ddof=1)) if len(ntrue) > 1 else 0.0
        return Unfolded(self.name, problem.gen_names, members,
                        {"iterations": self.iterations, "ensemble": self.ensemble,
                         "efficiency": float(np.mean(effs)), "n_true": float(np.mean(ntrue)), "n_true_sd": sd,
                         "wall_s": time.perf_counter() - t0})

