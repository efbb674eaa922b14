"""Weighted maximum-likelihood fits of (conditional) zuko normalizing flows.

:class:`DensityFlow` is a zuko neural spline flow q(x | c) (or q(x) without a context)
with its own standardisation of x and c: the flow sees ``(x − mean) / std``, and
:meth:`DensityFlow.log_prob` adds the Jacobian ``−Σ log std``, so densities are in the
units of x and two flows with different scalers compare.

:func:`fit_flow` maximises the **weighted** log-likelihood

    L(θ) = Σ_i w_i log q_θ(x_i | c_i) / Σ_i w_i ,

whose maximiser (for a flexible enough flow and many events) is the density of the
*weighted* sample, ``q(x | c) ∝ w(x, c) p(x, c) / p(c)``: event weights change the
prior the flow learns without resampling. Batches are drawn with
``numpy.random.default_rng([seed, 2, epoch])``, the network is built under
:func:`~rarefy.nn.seeding.seeded`, and training runs in :class:`~rarefy.nn.trainer.Trainer`,
so a fit is deterministic for its seed. ``start`` continues from an earlier fit
(same scalers, copied weights): the cheap way to refit after the weights changed a little.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import zuko

from ..errors import InputError
from .seeding import seeded
from .trainer import Trainer, floored_batch

__all__ = ["DensityFlow", "FlowSettings", "Standardiser", "fit_flow"]

log = logging.getLogger(__name__)

_CHUNK = 65536


@dataclass(frozen=True)
class FlowSettings:
    """A zuko NSF with ``transforms`` spline transforms of ``bins`` bins and ``hidden`` widths, trained with
    Adam(``lr``) and a cosine schedule for ``epochs`` epochs of ``batch_size`` events (at most: with
    ``min_steps`` > 0 and fewer than that many batches in the data, the batch shrinks, down to 256 events,
    so that an epoch takes ``min_steps`` optimiser steps; epoch counts chosen on large data then do not
    leave a small-data fit a handful of steps)."""

    transforms: int = 2
    hidden: tuple[int, ...] = (32, 32)
    bins: int = 8
    epochs: int = 8
    batch_size: int = 2048
    lr: float = 3e-3
    min_steps: int = 0


class Standardiser:
    """``z = (x − mean) / std`` per column, with the (weighted) mean and std of the events it was built on."""

    def __init__(self, x: np.ndarray, w: np.ndarray | None = None) -> None:
        x = np.asarray(x, np.float64)
        w = np.ones(len(x)) if w is None else np.asarray(w, np.float64)
        self.mean = np.average(x, axis=0, weights=w)
        sd = np.sqrt(np.average((x - self.mean) ** 2, axis=0, weights=w))
        self.std = np.where(sd > 0, sd, 1.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.std).astype(np.float32)

    def inverse(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        return np.asarray(z, np.float64) * self.std + self.mean

    @property
    def log_jacobian(self) -> float:
        """log |dz/dx| = −Σ log std."""
        return float(-np.log(self.std).sum())


class DensityFlow:
    """q(x | c) (``context`` columns, 0 for an unconditional q(x)) as a zuko NSF over standardised x and c."""

    def __init__(self, x: np.ndarray, c: np.ndarray | None, settings: FlowSettings, seed: int,
                 weight: np.ndarray | None = None) -> None:
        self.settings = settings
        self.sx = Standardiser(x, weight)
        self.sc = Standardiser(c, weight) if c is not None else None
        ctx = 0 if c is None else np.asarray(c).shape[1]
        with seeded(int(seed)):
            self.flow = zuko.flows.NSF(features=np.asarray(x).shape[1], context=ctx, transforms=settings.transforms,
                                       bins=settings.bins, hidden_features=tuple(settings.hidden))
        self.history: list[dict] = []

    @property
    def features(self) -> int:
        return int(self.sx.mean.shape[0])

    def dist(self, c: torch.Tensor | None = None) -> torch.distributions.Distribution:
        """The flow's distribution over standardised x (given standardised context ``c``)."""
        return self.flow(c) if self.sc is not None else self.flow()

    def copy(self) -> DensityFlow:
        """An independent copy (weights and scalers)."""
        return copy.deepcopy(self)

    @torch.no_grad()
    def log_prob(self, x: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
        """log q(x | c) per event, float64, in the units of x."""
        self.flow.eval()
        z = self.sx(x)
        cz = self.sc(c) if self.sc is not None else None
        out = []
        for i in range(0, len(z), _CHUNK):
            d = self.dist(torch.from_numpy(cz[i:i + _CHUNK]) if cz is not None else None)
            out.append(d.log_prob(torch.from_numpy(z[i:i + _CHUNK])).double().numpy())
        return (np.concatenate(out) if out else np.zeros(0)) + self.sx.log_jacobian

    @torch.no_grad()
    def sample(self, c: np.ndarray | None = None, n: int | None = None, seed: int = 0,
               with_log_prob: bool = False, base: np.ndarray | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """One x ~ q(x | c) per row of ``c`` (conditional) or ``n`` draws (unconditional), seeded; with
        ``with_log_prob`` also log q of each draw (units of x). ``base`` (conditional only; one row per row of
        ``c``): the standard-normal base draws to transform instead of fresh ones, e.g. stratified ones."""
        self.flow.eval()
        xs, lps = [], []
        if base is not None:
            if self.sc is None or len(base) != len(c):
                raise ValueError("base draws need a conditional flow and one row per row of c")
            cz = self.sc(c)
            zb = np.asarray(base, np.float32).reshape(len(cz), self.features)
            for i in range(0, len(cz), _CHUNK):
                d = self.dist(torch.from_numpy(cz[i:i + _CHUNK]))
                z = d.transform.inv(torch.from_numpy(zb[i:i + _CHUNK]))
                if with_log_prob:
                    lps.append(d.log_prob(z).double().numpy())
                xs.append(z.double().numpy())
            return self._draws(xs, lps, with_log_prob)
        with seeded(int(seed)):
            if self.sc is not None:
                cz = self.sc(c)
                for i in range(0, len(cz), _CHUNK):
                    d = self.dist(torch.from_numpy(cz[i:i + _CHUNK]))
                    if with_log_prob:
                        z, lp = d.rsample_and_log_prob()
                        lps.append(lp.double().numpy())
                    else:
                        z = d.sample()
                    xs.append(z.double().numpy())
            else:
                n = int(n or 0)
                d = self.dist()
                for i in range(0, n, _CHUNK):
                    z = d.sample((min(_CHUNK, n - i),))
                    if with_log_prob:
                        lps.append(d.log_prob(z).double().numpy())
                    xs.append(z.double().numpy())
        return self._draws(xs, lps, with_log_prob)

    def _draws(self, xs: list[np.ndarray], lps: list[np.ndarray],
               with_log_prob: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Chunks of standardised draws (and their log q) in the units of x."""
        x = self.sx.inverse(np.concatenate(xs)) if xs else np.zeros((0, self.features))
        if with_log_prob:
            return x, (np.concatenate(lps) if lps else np.zeros(0)) + self.sx.log_jacobian
        return x


def fit_flow(x: np.ndarray, c: np.ndarray | None, settings: FlowSettings, seed: int, *,
             weight: np.ndarray | None = None, start: DensityFlow | None = None, epochs: int | None = None,
             name: str = "flow") -> DensityFlow:
    """Fit q(x | c) (or q(x) with ``c`` None) by weighted maximum likelihood; see the module docstring.

    ``start`` continues from a copy of an earlier fit (its scalers kept) for ``epochs`` epochs
    (default ``settings.epochs``). Events with zero weight are dropped. No validation split:
    the fixed epoch budget is the regularisation, set on development data.
    """
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    w = np.ones(len(x)) if weight is None else np.asarray(weight, np.float64)
    keep = w > 0
    if keep.sum() < 10:
        raise InputError(f"{name}: too few weighted events to fit a flow ({int(keep.sum())})")
    x, w = x[keep], w[keep]
    if c is not None:
        c = np.asarray(c, np.float64)
        c = (c[:, None] if c.ndim == 1 else c)[keep]
    qf = start.copy() if start is not None else DensityFlow(x, c, settings, seed, w)
    zt = torch.from_numpy(qf.sx(x))
    ct = torch.from_numpy(qf.sc(c)) if qf.sc is not None else None
    wt = torch.from_numpy((w / w.mean()).astype(np.float32))
    bs = floored_batch(len(x), settings.batch_size, settings.min_steps)
    nb = max(1, math.ceil(len(x) / bs))

    def batches(epoch: int) -> Iterator[torch.Tensor]:
        p = torch.from_numpy(np.random.default_rng([seed, 2, epoch]).permutation(len(x)))
        for b in range(nb):
            yield p[b * bs:(b + 1) * bs]

    def step(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
        d = model(ct[idx]) if ct is not None else model()
        return -(wt[idx] * d.log_prob(zt[idx])).sum() / wt[idx].sum()

    trainer: Trainer[torch.Tensor] = Trainer(qf.flow, lambda p: torch.optim.Adam(p, lr=settings.lr), step,
                                             epochs=int(epochs or settings.epochs), lr_schedule="cosine",
                                             seed=seed, name=name)
    qf.history = qf.history + trainer.fit(batches).history
    log.info("%s: %d epochs on %d events, last train NLL %.4f", name, trainer.state.epochs_run, len(x),
             qf.history[-1]["train_loss"])
    return qf
