"""A weighted binary classifier whose odds estimate a density ratio.

**Loss.** Every event i carries a weight for each class, ``w1_i`` (label 1) and ``w0_i``
(label 0); the loss is the weighted binary cross-entropy

    L(f) = Σ_i [ w1_i · softplus(−f(x_i)) + w0_i · softplus(f(x_i)) ] / Σ_i (w1_i + w0_i),

with f the network's logit. Its minimiser is ``f(x) = log(p1(x) / p0(x))``, where p1 and
p0 are the w1- and w0-weighted densities of x: **the odds exp(f) are the density ratio**,
the quantity OmniFold, CWoLa and CATHODE need. Two weights per event (instead of one
weight and one label) let the same x appear in both classes once: reweighting a sample
against itself (OmniFold's generation-level step) costs one pass over the sample, not
two over a duplicated one.

**Class balance** (``balance=True``, the default): the weights of each class are scaled
to the same total, so the odds are the ratio of the *normalised* densities and the loss
does not start far from log 2 when one class has more events or larger weights.

**Inputs** are standardised with the weighted mean and standard deviation of the first
:meth:`WeightedClassifier.fit`'s events (both classes); later fits (warm starts on
reweighted samples) keep that scale, so the network's input does not move under it.

**Network and training.** An MLP (``hidden`` widths, ``activation``) with one logit
output, trained by :class:`rarefy.nn.trainer.Trainer` with Adam (``lr``,
``weight_decay``) for a fixed number of epochs of ``batch_size`` events, optionally on a
cosine learning-rate schedule updated ``parts`` times per epoch (a short fit's SGD noise
in the logit then decays with the learning rate instead of staying at its initial level). Calling :meth:`~WeightedClassifier.fit` again continues
from the current weights with a fresh optimiser (warm start).

**Determinism.** Parameters are initialised under :func:`rarefy.nn.seeding.seeded`, the
batches of epoch e are a permutation from ``numpy.random.default_rng([seed, fit, e])``
and the trainer's own generator is seeded: for a given seed (and thread count) the
result is the same, and the caller's global random state is untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch

from ..errors import InputError
from .schedule import LRSchedule
from .seeding import seeded
from .trainer import Trainer, floored_batch

__all__ = ["WeightedClassifier", "mlp"]

Activation = Literal["relu", "gelu", "silu", "tanh"]
_ACT = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU, "tanh": torch.nn.Tanh}
_EVAL_BATCH = 65536


def mlp(d_in: int, hidden: tuple[int, ...], d_out: int = 1, activation: Activation = "relu") -> torch.nn.Sequential:
    """A fully connected network ``d_in → hidden… → d_out`` with ``activation`` between layers (draws from
    torch's global generator: build it under :func:`~rarefy.nn.seeding.seeded`)."""
    if activation not in _ACT:
        raise InputError(f"unknown activation {activation!r} (have {', '.join(_ACT)})")
    layers: list[torch.nn.Module] = []
    w = d_in
    for h in hidden:
        layers += [torch.nn.Linear(w, int(h)), _ACT[activation]()]
        w = int(h)
    layers.append(torch.nn.Linear(w, d_out))
    return torch.nn.Sequential(*layers)


class WeightedClassifier:
    """Weighted binary classifier of x ∈ R^d; :meth:`logit` estimates log(p1/p0) (see the module docstring).

    Parameters
    ----------
    d:
        Input dimension.
    hidden, activation:
        MLP widths and activation.
    lr, weight_decay:
        Adam settings.
    batch_size:
        Events per gradient step (at most; see ``min_steps``).
    min_steps:
        Least gradient steps per epoch (0: no floor). With fewer than ``min_steps`` batches of
        ``batch_size`` in the events, the batch shrinks (down to 256 events) so that a fit takes
        about as many optimiser steps on small data as on large: an epoch count chosen at 10⁵
        events would otherwise leave a classifier of 10⁴ events a handful of steps, underfitted.
    lr_schedule:
        ``constant`` or ``cosine`` within each :meth:`fit`.
    parts:
        Steps of the schedule per epoch: each epoch's batches are split into ``parts`` trainer epochs,
        so a cosine schedule decays within a one-epoch fit.
    balance:
        Scale each class's weights to the same total.
    seed:
        Initialisation and batch order.
    name:
        Names the runs in log lines.
    """

    def __init__(self, d: int, *, hidden: tuple[int, ...] = (32, 32), activation: Activation = "relu",
                 lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int = 1024, min_steps: int = 0,
                 lr_schedule: LRSchedule = "constant", parts: int = 1, balance: bool = True, seed: int = 0,
                 name: str = "classifier") -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.d = int(d)
        self.lr, self.weight_decay, self.batch_size = float(lr), float(weight_decay), int(batch_size)
        if min_steps < 0:
            raise InputError(f"min_steps must be >= 0, got {min_steps}")
        self.min_steps = int(min_steps)
        self.lr_schedule: LRSchedule = lr_schedule
        self.parts = max(1, int(parts))
        self.balance = bool(balance)
        self.seed = int(seed)
        self.name = name
        with seeded(self.seed):
            self.model = mlp(self.d, tuple(hidden), 1, activation)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.fits = 0
        self.history: list[list[dict]] = []

    def _scale(self, x: np.ndarray) -> np.ndarray:
        assert self.mean is not None and self.std is not None
        return ((np.asarray(x, np.float64) - self.mean) / self.std).astype(np.float32)

    def _matrix(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1 and self.d == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.d:
            raise InputError(f"{self.name}: inputs have shape {x.shape}, expected (events, {self.d})")
        return x

    def fit(self, x: np.ndarray, w1: np.ndarray, w0: np.ndarray, *, epochs: int) -> WeightedClassifier:
        """Train (or go on training) on events ``x`` with class-1 weights ``w1`` and class-0 weights ``w0``
        (non-negative, shape (n,)) for ``epochs`` epochs; returns self."""
        x = self._matrix(x)
        w1 = np.asarray(w1, dtype=np.float64).reshape(-1)
        w0 = np.asarray(w0, dtype=np.float64).reshape(-1)
        n = x.shape[0]
        if w1.shape[0] != n or w0.shape[0] != n:
            raise InputError(f"{self.name}: {n} events but {w1.shape[0]} class-1 and {w0.shape[0]} class-0 weights")
        s1, s0 = float(w1.sum()), float(w0.sum())
        if not (s1 > 0 and s0 > 0) or np.any(w1 < 0) or np.any(w0 < 0):
            raise InputError(f"{self.name}: each class needs non-negative weights with a positive total "
                             f"(class 1: {s1:.6g}, class 0: {s0:.6g})")
        if self.balance:
            w1, w0 = w1 * (0.5 * n / s1), w0 * (0.5 * n / s0)
        else:
            scale = n / (s1 + s0)
            w1, w0 = w1 * scale, w0 * scale
        if self.mean is None:
            wt = w1 + w0
            m = np.average(x, axis=0, weights=wt)
            sd = np.sqrt(np.average((x - m) ** 2, axis=0, weights=wt))
            self.mean, self.std = m, np.where(sd > 0, sd, 1.0)
        keep = (w1 + w0) > 0
        xt = torch.from_numpy(self._scale(x[keep]))
        a = torch.from_numpy(w1[keep].astype(np.float32))
        b = torch.from_numpy(w0[keep].astype(np.float32))
        m_ = xt.shape[0]
        bs = floored_batch(m_, self.batch_size, self.min_steps)
        nb = max(1, math.ceil(m_ / bs))
        fit_id = self.fits
        seed = self.seed

        parts = max(1, min(self.parts, nb))
        bounds = np.linspace(0, nb, parts + 1).round().astype(int)

        def batches(part: int) -> Iterator[torch.Tensor]:
            epoch, j = divmod(part, parts)
            p = torch.from_numpy(np.random.default_rng([seed, fit_id, epoch]).permutation(m_))
            for k in range(bounds[j], bounds[j + 1]):
                yield p[k * bs:(k + 1) * bs]

        def step(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
            f = model(xt[idx])[:, 0]
            loss = a[idx] * torch.nn.functional.softplus(-f) + b[idx] * torch.nn.functional.softplus(f)
            return loss.sum() / (a[idx].sum() + b[idx].sum())

        wd = self.weight_decay
        lr = self.lr
        state = Trainer(self.model, lambda p: torch.optim.Adam(p, lr=lr, weight_decay=wd), step, epochs=int(epochs) * parts,
                        lr_schedule=self.lr_schedule, seed=seed * 7919 + fit_id,
                        name=f"{self.name} fit {fit_id}").fit(batches)
        self.history.append(state.history)
        self.fits += 1
        return self

    @torch.no_grad()
    def logit(self, x: np.ndarray) -> np.ndarray:
        """The logit f(x) ≈ log(p1(x)/p0(x)), shape (n,)."""
        if self.mean is None:
            raise RuntimeError(f"{self.name}: fit before predicting")
        x = self._matrix(x)
        self.model.eval()
        z = torch.from_numpy(self._scale(x))
        if z.shape[0] == 0:
            return np.zeros(0)
        return np.concatenate([self.model(z[i:i + _EVAL_BATCH])[:, 0].double().numpy()
                               for i in range(0, z.shape[0], _EVAL_BATCH)])

    def probability(self, x: np.ndarray) -> np.ndarray:
        """P(class 1 | x) = sigmoid(f(x)) under the training's class balance."""
        return 1.0 / (1.0 + np.exp(-self.logit(x)))

    def ratio(self, x: np.ndarray, clip: float = 50.0) -> np.ndarray:
        """The density ratio exp(f(x)), clipped to [1/``clip``, ``clip``] against extrapolation."""
        c = math.log(clip)
        return np.exp(np.clip(self.logit(x), -c, c))
