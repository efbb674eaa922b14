"""``flow_ratio``: a normalizing-flow density ratio of signal and background (zuko).

Two flows model the standardised features x = (θ, φ): ``q_b(x)`` of background events
and ``q_s(x)`` of signal events. The score is the posterior signal probability

    p(s | x) = sigmoid( log q_s(x) - log q_b(x) + log(π / (1 - π)) ),

with π the signal fraction of the training events (the log prior odds); it is a
calibrated probability when both densities are right (``probabilistic = True``).

**Background flow.** A masked autoregressive flow (``kind: maf``, zuko's MAF; or
``nsf``, neural spline flow, slower) fitted by maximum likelihood to at most
``max_background`` background training events (a random subset: the density does not
depend on how many are used; π is taken from all events), with Adam, early stopping
on the negative log-likelihood of (at most 20,000) validation background events.

**Signal flow, few positives.** There are typically tens to hundreds of positives.
The signal flow therefore *starts as a copy of the background flow* and is fine-tuned
on the training positives with an L2 penalty ``anchor · ||w - w_b||²`` pulling its
weights towards the background flow's. The log-ratio starts at 0 everywhere and moves
only where the positives demand; the fewer the positives, the more the anchor (and
early stopping on the validation positives, when there are at least
``min_val_positives`` of them; else a fixed ``signal_epochs``) keeps it close to 0.
``noise`` adds Gaussian jitter (std in standardised units) to the training inputs of
both flows, which smooths the θ columns (one value per run) and regularises.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
import zuko

from ..io import atomic_path
from ..nn.early_stopping import EarlyStopping
from ..nn.seeding import seeded
from ..nn.trainer import Trainer
from .base import EventBatch

__all__ = ["FlowRatioBackend", "fit_flow", "build_flow", "Standardizer"]

log = logging.getLogger(__name__)

_VAL_CAP = 20_000


class Standardizer:
    """Column-wise ``(x - mean) / std`` with the training mean and std (std 0 -> 1)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = np.asarray(mean, np.float64)
        self.std = np.where(np.asarray(std, np.float64) > 0, np.asarray(std, np.float64), 1.0)

    @classmethod
    def fit(cls, x: np.ndarray) -> "Standardizer":
        x = np.asarray(x, np.float64)
        return cls(x.mean(axis=0), x.std(axis=0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.std).astype(np.float32)

    def state(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state(cls, s: dict[str, list[float]]) -> "Standardizer":
        return cls(np.asarray(s["mean"]), np.asarray(s["std"]))


def build_flow(features: int, kind: str = "maf", transforms: int = 3, hidden: tuple[int, ...] = (64, 64)
               ) -> zuko.flows.Flow:
    """An unconditional zuko flow over ``features`` dimensions (``maf`` or ``nsf``)."""
    cls = {"maf": zuko.flows.MAF, "nsf": zuko.flows.NSF}[kind]
    return cls(features=features, transforms=transforms, hidden_features=tuple(hidden))


@torch.no_grad()
def _log_prob(flow: zuko.flows.Flow, x: np.ndarray, batch: int = 65536) -> np.ndarray:
    flow.eval()
    out = [flow().log_prob(torch.from_numpy(x[i:i + batch])).double().numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros(0)


def fit_flow(flow: zuko.flows.Flow, x: np.ndarray, x_val: np.ndarray | None, *, rng: np.random.Generator,
             epochs: int, batch_size: int, lr: float, weight_decay: float = 0.0, noise: float = 0.0,
             anchor: float = 0.0, anchor_state: dict[str, torch.Tensor] | None = None, patience: int = 3,
             max_batches: int | None = None) -> list[dict[str, float]]:
    """Maximum-likelihood training of ``flow`` on ``x`` (n, d) with early stopping on ``x_val``.

    ``anchor`` > 0 adds ``anchor · Σ (w - anchor_state)²`` to the loss (mean NLL per event).
    ``max_batches`` caps the batches of one epoch. The best weights (validation NLL, or
    the last epoch's without validation data) are loaded on return. The epoch loop is
    :class:`rarefy.nn.trainer.Trainer`'s (no checkpoints: a flow fits in minutes);
    batches and jitter come from ``rng``, consumed epoch after epoch.
    """
    xt = torch.from_numpy(x)
    params = dict(flow.named_parameters())
    ref = {k: v.detach().clone() for k, v in anchor_state.items() if k in params} if anchor_state else {}
    n = len(x)
    nb = max(1, math.ceil(n / batch_size))
    if max_batches is not None:
        nb = min(nb, max_batches)

    def batches(epoch: int) -> Iterator[torch.Tensor]:
        perm = rng.permutation(n)
        for b in range(nb):
            xb = xt[torch.from_numpy(perm[(b * batch_size) % n:][:batch_size])]
            if noise > 0:
                xb = xb + noise * torch.from_numpy(rng.standard_normal(xb.shape).astype(np.float32))
            yield xb

    def step(model: torch.nn.Module, xb: torch.Tensor) -> torch.Tensor:
        loss = -model().log_prob(xb).mean()
        if anchor > 0 and ref:
            loss = loss + anchor * sum(((params[k] - r) ** 2).sum() for k, r in ref.items())
        return loss

    validate = None
    if x_val is not None and len(x_val):
        def validate(model: torch.nn.Module) -> dict[str, float]:
            nll = float(-_log_prob(model, x_val).mean())
            return {"val_loss": nll, "val_nll": nll}

    trainer: Trainer[torch.Tensor] = Trainer(
        flow, lambda p: torch.optim.Adam(p, lr=lr, weight_decay=weight_decay), step, epochs=epochs,
        validate=validate, early_stopping=EarlyStopping(patience if validate is not None else None), name="flow")
    return trainer.fit(batches).history


class FlowRatioBackend:
    """Signal/background density ratio of two zuko flows; see the module docstring.

    Parameters
    ----------
    seed:
        Seeds flow initialisation, subsampling, batches and jitter.
    kind, transforms, hidden:
        Flow family (``maf`` / ``nsf``), number of autoregressive transforms, hidden widths.
    epochs, batch_size, lr, max_background, max_batches:
        Background-flow training (``max_batches`` caps an epoch).
    signal_epochs, signal_lr, anchor:
        Signal-flow fine-tuning from the background flow, with the L2 anchor strength.
    noise:
        Gaussian jitter (standardised units) on the training inputs of both flows.
    weight_decay, patience, min_val_positives:
        Adam weight decay; early-stopping patience; validation positives needed to early-stop the signal flow.
    """

    name = "flow_ratio"
    probabilistic = True

    def __init__(self, seed: int = 0, *, kind: Literal["maf", "nsf"] = "maf", transforms: int = 3,
                 hidden: tuple[int, ...] | list[int] = (64, 64), epochs: int = 20, batch_size: int = 1024,
                 lr: float = 1e-3, max_background: int = 100_000, max_batches: int | None = None,
                 signal_epochs: int = 60, signal_lr: float = 5e-4, anchor: float = 1e-3, noise: float = 0.05,
                 weight_decay: float = 0.0, patience: int = 3, min_val_positives: int = 10) -> None:
        if kind not in ("maf", "nsf"):
            raise ValueError(f"kind must be 'maf' or 'nsf', got {kind!r}")
        self.seed = int(seed)
        self.options: dict[str, Any] = {
            "kind": kind, "transforms": int(transforms), "hidden": [int(h) for h in hidden], "epochs": int(epochs),
            "batch_size": int(batch_size), "lr": float(lr), "max_background": int(max_background),
            "max_batches": max_batches, "signal_epochs": int(signal_epochs), "signal_lr": float(signal_lr),
            "anchor": float(anchor), "noise": float(noise), "weight_decay": float(weight_decay),
            "patience": int(patience), "min_val_positives": int(min_val_positives)}
        self.scaler: Standardizer | None = None
        self.flow_b: zuko.flows.Flow | None = None
        self.flow_s: zuko.flows.Flow | None = None
        self.log_prior_odds = 0.0
        self.history: dict[str, list[dict[str, float]]] = {}
        self.d = 0

    def _new_flow(self) -> zuko.flows.Flow:
        o = self.options
        return build_flow(self.d, o["kind"], o["transforms"], tuple(o["hidden"]))

    def fit(self, train: EventBatch, val: EventBatch | None = None, *, workdir: Path | None = None
            ) -> "FlowRatioBackend":
        """Fit the background flow, then fine-tune the signal flow from it (see the module docstring)."""
        o = self.options
        rng = np.random.default_rng([self.seed, 13])
        pos = np.flatnonzero(train.y == 1)
        bg = np.flatnonzero(train.y == 0)
        if not len(pos) or not len(bg):
            raise ValueError("flow_ratio needs signal and background training events")
        self.scaler = Standardizer.fit(train.x)
        self.d = int(train.x.shape[1])
        pi = len(pos) / len(train.y)
        self.log_prior_odds = math.log(pi / (1 - pi))
        if len(bg) > o["max_background"]:
            bg = np.sort(rng.choice(bg, o["max_background"], replace=False))
        xv_b = xv_s = None
        if val is not None and len(val):
            vb = np.flatnonzero(val.y == 0)
            if len(vb) > _VAL_CAP:
                vb = np.sort(rng.choice(vb, _VAL_CAP, replace=False))
            xv_b = self.scaler(val.x[vb])
            vs = np.flatnonzero(val.y == 1)
            if len(vs) >= o["min_val_positives"]:
                xv_s = self.scaler(val.x[vs])
        with seeded(self.seed):
            self.flow_b = self._new_flow()
        self.history["background"] = fit_flow(
            self.flow_b, self.scaler(train.x[bg]), xv_b, rng=rng, epochs=o["epochs"], batch_size=o["batch_size"],
            lr=o["lr"], weight_decay=o["weight_decay"], noise=o["noise"], patience=o["patience"],
            max_batches=o["max_batches"])
        self.flow_s = copy.deepcopy(self.flow_b)
        anchor_state = {k: v.detach().clone() for k, v in self.flow_b.named_parameters()}
        self.history["signal"] = fit_flow(
            self.flow_s, self.scaler(train.x[pos]), xv_s, rng=rng, epochs=o["signal_epochs"],
            batch_size=min(o["batch_size"], 256), lr=o["signal_lr"], weight_decay=0.0, noise=o["noise"],
            anchor=o["anchor"], anchor_state=anchor_state, patience=max(o["patience"], 5))
        log.info("flow_ratio: background flow %d epochs on %d events, signal flow %d epochs on %d positives",
                 len(self.history["background"]), len(bg), len(self.history["signal"]), len(pos))
        if workdir is not None:
            self.save(Path(workdir))
        return self

    def log_ratio(self, events: EventBatch) -> np.ndarray:
        """``log q_s(x) - log q_b(x)`` per event (float64)."""
        if self.flow_b is None or self.flow_s is None or self.scaler is None:
            raise RuntimeError("fit the backend before scoring")
        x = self.scaler(events.x)
        return _log_prob(self.flow_s, x) - _log_prob(self.flow_b, x)

    def score(self, events: EventBatch) -> np.ndarray:
        """Posterior signal probability ``sigmoid(log-ratio + log prior odds)`` per event."""
        z = self.log_ratio(events) + self.log_prior_odds
        return 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))

    def save(self, path: Path) -> None:
        """``path/flows.pt`` (both state dicts) and ``path/backend.json``."""
        if self.flow_b is None or self.flow_s is None or self.scaler is None:
            raise RuntimeError("fit the backend before saving")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "flows.pt") as tmp:
            torch.save({"background": self.flow_b.state_dict(), "signal": self.flow_s.state_dict()}, tmp)
        meta = {"seed": self.seed, "options": self.options, "scaler": self.scaler.state(),
                "log_prior_odds": self.log_prior_odds, "d": self.d}
        with atomic_path(path / "backend.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: Path) -> "FlowRatioBackend":
        """Read what :meth:`save` wrote."""
        path = Path(path)
        meta = json.loads((path / "backend.json").read_text())
        obj = cls(meta["seed"], **meta["options"])
        obj.scaler = Standardizer.from_state(meta["scaler"])
        obj.log_prior_odds = float(meta["log_prior_odds"])
        obj.d = int(meta["d"])
        states = torch.load(path / "flows.pt", map_location="cpu", weights_only=True)
        obj.flow_b, obj.flow_s = obj._new_flow(), obj._new_flow()
        obj.flow_b.load_state_dict(states["background"])
        obj.flow_s.load_state_dict(states["signal"])
        obj.flow_b.eval()
        obj.flow_s.eval()
        return obj
