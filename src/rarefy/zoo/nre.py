"""Marginalised neural ratio estimator (NRE) backend: per-event signal probability from a ratio.

The "parameter" of an event is its label ``y`` and the "observation" its features
``x = (θ, φ)``; the simulator's transport variables that the event table does not record
are marginalised out by construction (a marginal NRE, Miller et al. 2021, for the
single parameter ``y``). A classifier ``d(x, y) = sigmoid(s(x, y))`` learns to tell
**joint** pairs ``(x_i, y_i)`` from **marginal** pairs ``(x_i, y')`` with ``y'`` drawn from the
batch's label marginal — NRE-A of Hermans et al. (2020); by default the draw is replaced
by its exact expectation (both labels, weighted by the batch's label fractions; see
:class:`NREObjective`). At the
optimum ``s(x, y) = log r(x, y) = log p_b(x, y) / (p_b(x) p_b(y))`` for the batch
distribution ``p_b``.

**From ratio to probability.** Oversampling positives changes the class prior of the
batch but not the class-conditional densities ``p(x|y)``, so the ratio of ratios is the
likelihood ratio at any imbalance:
``s(x, 1) - s(x, 0) = log p(x|1) / p(x|0)``. The backend therefore returns

    p(y = 1 | x) = sigmoid( s(x, 1) - s(x, 0) + logit π ),

with ``π`` the signal fraction of the training events ((k + ½)/(n + 1)), a calibrated
probability (``probabilistic = True``) that needs no prior-shift bookkeeping.

**Network.** ``s(x, y) = head([h(x), 2y - 1])``: an MLP trunk ``h`` (``hidden`` widths;
the last is the embedding, pretrainable contrastively) and an MLP head on the embedding
and the signed label. Training uses the shared trainer (positive-oversampling schedule,
checkpoints, early stopping on the validation BCE of ``p(y=1|x)``); the pair loss is
the configured stage-1 loss (default BCE). ``pos_weight`` and mixup do not apply.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from .base import EventBatch
from .torch_backend import ClassifierOptions, TorchBackend, mlp
from .training import POINT_LOG_VAR, ClassifierObjective, Objective, logit

__all__ = ["NREBackend", "NREOptions", "RatioNet", "NREObjective"]


class RatioNet(torch.nn.Module):
    """``s(x, y)`` (:meth:`log_ratio`) and the calibrated posterior logit (:meth:`calibrated`)."""

    def __init__(self, d: int, hidden: list[int]) -> None:
        super().__init__()
        emb = hidden[-1]
        self.trunk = torch.nn.Sequential(mlp(d, hidden[:-1], emb), torch.nn.SiLU())
        self.head = mlp(emb + 1, [emb], 1)
        self.register_buffer("logit_offset", torch.zeros(()))

    def log_ratio(self, x: torch.Tensor, y: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        h = self.trunk(x) if h is None else h
        return self.head(torch.cat([h, (2.0 * y - 1.0)[:, None]], dim=1)).reshape(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        one = torch.ones(len(x), dtype=x.dtype, device=x.device)
        return self.log_ratio(x, one, h) - self.log_ratio(x, 0 * one, h) + self.logit_offset

    calibrated = forward


class NREObjective:
    """Joint pairs ``(x_i, y_i)`` (target 1) against marginal pairs (target 0).

    ``marginal = "shuffle"``: the marginal pairs are ``(x_i, y_π(i))`` for a random
    permutation π of the batch (NRE-A). ``"exact"``: the expectation over the label
    marginal is taken in closed form — each ``x_i`` is paired with both labels, weighted
    by the batch's label fractions π̂ and 1 - π̂ (the Rao–Blackwellised NRE-A loss: same
    optimum, less noise). Loss = ½ (joint mean + marginal mean).
    """

    calibrates = False

    def __init__(self, loss: Any = None, marginal: str = "exact") -> None:
        self.clf = ClassifierObjective(loss)
        self.marginal = marginal

    def _mean(self, s: torch.Tensor, t: float) -> torch.Tensor:
        return self.clf.fn(s, torch.full_like(s, POINT_LOG_VAR), torch.full_like(s, t), batch_prior=0.5)

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_prior: float,
             rng: np.random.Generator) -> torch.Tensor:
        h = model.trunk(x)
        joint = self._mean(model.log_ratio(x, y, h), 1.0)
        if self.marginal == "shuffle":
            perm = torch.as_tensor(rng.permutation(len(y)))
            return 0.5 * (joint + self._mean(model.log_ratio(x, y[perm], h), 0.0))
        pi = float(y.mean())
        one = torch.ones_like(y)
        marg = pi * self._mean(model.log_ratio(x, one, h), 0.0) + (1 - pi) * self._mean(model.log_ratio(x, 0 * one, h), 0.0)
        return 0.5 * (joint + marg)

    def evaluate(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
                 ) -> dict[str, float]:
        return self.clf.evaluate(model, x, y, w)


class NREOptions(ClassifierOptions):
    """Trunk widths ``hidden`` (the last is the embedding), ``marginal`` pairs (see :class:`NREObjective`); plus the training options."""

    hidden: list[int] = Field(default_factory=lambda: [64, 64])
    marginal: Literal["exact", "shuffle"] = "exact"


class NREBackend(TorchBackend):
    """``nre``: calibrated signal probability from a joint-vs-marginal ratio classifier (see the module docstring)."""

    name: ClassVar[str] = "nre"
    Options: ClassVar[type[NREOptions]] = NREOptions
    option_checks = (
        (lambda o: bool(o.hidden), "hidden needs at least one width"),
        (lambda o: not o.mixup.enabled and o.pos_weight == 1.0, "mixup and pos_weight do not apply to the ratio estimator"),
        (lambda o: o.loss.name != "logit_adjusted", "loss 'logit_adjusted' does not apply to the pair classifier"),
    )

    def __init__(self, seed: int = 0, **options: Any) -> None:
        super().__init__(seed, **options)
        self._pi = 0.5

    def prepare(self, train: EventBatch) -> None:
        y = np.asarray(train.y, dtype=np.float64)
        self._pi = (float((y >= 0.5).sum()) + 0.5) / (len(y) + 1.0)

    def build(self, d: int, n_theta: int) -> torch.nn.Module:
        net = RatioNet(d, self.options.hidden)
        net.logit_offset.fill_(logit(self._pi))
        return net

    def objective(self) -> Objective:
        return NREObjective(self.options.loss, self.options.marginal)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(x))

    def encoder(self) -> tuple[torch.nn.Module, int]:
        return self.model.trunk, self.options.hidden[-1]
