"""Shared parts of the generative unfolding methods: a weighted logit network for the efficiency and for density
ratios.

:class:`LogitNet` is a small MLP f(x) trained with the weighted binary cross-entropy

    L(f) = Σ_i [ a_i · softplus(−f(x_i)) + b_i · softplus(f(x_i)) ] / Σ_i (a_i + b_i),

where each event carries a weight ``a_i`` for label 1 and ``b_i`` for label 0. Its
minimiser is f = log(A(x) / B(x)), the log-ratio of the a- and b-weighted densities of x
(per unit x, including the totals). Two uses:

* **Efficiency** (:func:`fit_efficiency`): a = w·pass, b = w·(1 − pass) on the simulated
  x, so sigmoid(f(x)) = P(pass | x) = ε(x), learnt without histograms; its statistical
  error is that of a smooth fit to all n_sim events.
* **Density ratio** (:func:`fit_ratio`): one sample as label 1 and another as label 0,
  each class's weights scaled to the same total, so exp(f(x)) = p₁(x)/p₀(x) for the
  normalised densities.

Inputs are standardised with the weighted mean and std of all events given. Training is
:class:`rarefy.nn.trainer.Trainer` with Adam, a cosine schedule and a fixed number of
epochs, batches from ``numpy.random.default_rng([seed, 5, epoch])``, the network built
under :func:`rarefy.nn.seeding.seeded`: deterministic for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from ..errors import InputError
from ..nn.classifier import mlp
from ..nn.flows import Standardiser
from ..nn.seeding import seeded
from ..nn.trainer import Trainer

__all__ = ["LogitNet", "fit_efficiency", "fit_logit", "fit_ratio"]

_CHUNK = 65536


class LogitNet:
    """A trained logit f(x) with its input standardisation; see the module docstring."""

    def __init__(self, net: torch.nn.Module, scaler: Standardiser) -> None:
        self.net = net.eval()
        self.scaler = scaler

    @torch.no_grad()
    def logit(self, x: np.ndarray) -> np.ndarray:
        """f(x) per event (float64)."""
        z = torch.from_numpy(self.scaler(np.asarray(x, np.float64).reshape(len(x), -1)))
        out = [self.net(z[i:i + _CHUNK])[:, 0].double().numpy() for i in range(0, len(z), _CHUNK)]
        return np.concatenate(out) if out else np.zeros(0)

    def probability(self, x: np.ndarray) -> np.ndarray:
        """sigmoid(f(x))."""
        return 1.0 / (1.0 + np.exp(-self.logit(x)))


def fit_logit(x: np.ndarray, a: np.ndarray, b: np.ndarray, seed: int, *, hidden: tuple[int, ...] = (32, 32),
              epochs: int = 4, batch_size: int = 4096, lr: float = 3e-3, min_steps: int = 1500,
              name: str = "classifier") -> LogitNet:
    """Fit f with label-1 weights ``a`` and label-0 weights ``b`` per event of ``x`` (n, d), for ``epochs`` epochs
    or more, so that there are at least ``min_steps`` optimiser steps: with too few steps the network stays
    near its almost linear start, a logit linear in x, which cannot level off (an efficiency from 0.5 to 0.9
    would be fitted as one running from 0 to 1 and the 1/ε weights would blow up in the tails)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    keep = (a + b) > 0
    if a[keep].sum() <= 0 or b[keep].sum() <= 0:
        raise InputError(f"{name}: one class has no weight")
    x, a, b = x[keep], a[keep], b[keep]
    scaler = Standardiser(x, a + b)
    z = torch.from_numpy(scaler(x))
    s = float((a + b).mean())
    at, bt = torch.from_numpy((a / s).astype(np.float32)), torch.from_numpy((b / s).astype(np.float32))
    with seeded(int(seed)):
        net = mlp(x.shape[1], tuple(hidden), 1, "silu")
    nb = max(1, math.ceil(len(x) / batch_size))
    epochs = max(int(epochs), math.ceil(min_steps / nb))

    def batches(epoch: int) -> Iterator[torch.Tensor]:
        p = torch.from_numpy(np.random.default_rng([seed, 5, epoch]).permutation(len(x)))
        for k in range(nb):
            yield p[k * batch_size:(k + 1) * batch_size]

    def step(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
        f = model(z[idx])[:, 0]
        sp = torch.nn.functional.softplus
        return (at[idx] * sp(-f) + bt[idx] * sp(f)).sum() / (at[idx] + bt[idx]).sum()

    Trainer(net, lambda p: torch.optim.Adam(p, lr=lr), step, epochs=epochs, lr_schedule="cosine", seed=seed,
            name=name).fit(batches)
    return LogitNet(net, scaler)


def fit_efficiency(x: np.ndarray, passed: np.ndarray, weight: np.ndarray, seed: int, *,
                   hidden: tuple[int, ...] = (32, 32), epochs: int = 1, batch_size: int = 4096,
                   lr: float = 1e-2, min_steps: int = 800) -> LogitNet:
    """ε(x) = P(pass | x) from simulated generation-level ``x``, pass flags and weights (``probability``)."""
    passed = np.asarray(passed, bool)
    w = np.asarray(weight, np.float64)
    return fit_logit(x, w * passed, w * ~passed, seed, hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr,
                     min_steps=min_steps, name="efficiency")


def fit_ratio(x1: np.ndarray, w1: np.ndarray, x0: np.ndarray, w0: np.ndarray, seed: int, *,
              hidden: tuple[int, ...] = (32, 32), epochs: int = 1, batch_size: int = 4096,
              lr: float = 1e-2, min_steps: int = 400) -> LogitNet:
    """log p₁(x)/p₀(x) of two weighted samples, each normalised (``logit``)."""
    x1 = np.asarray(x1, np.float64).reshape(len(x1), -1)
    x0 = np.asarray(x0, np.float64).reshape(len(x0), -1)
    w1 = np.asarray(w1, np.float64)
    w0 = np.asarray(w0, np.float64)
    scale = w1.sum() / w0.sum()
    x = np.concatenate([x1, x0])
    a = np.concatenate([w1, np.zeros(len(x0))])
    b = np.concatenate([np.zeros(len(x1)), w0 * scale])
    return fit_logit(x, a, b, seed, hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr, min_steps=min_steps,
                     name="ratio")
