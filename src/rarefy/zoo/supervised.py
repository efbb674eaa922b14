"""A generic supervised backend around a user's :class:`torch.nn.Module` (the ``custom`` backend).

The module maps standardised features ``(B, d)`` (θ then φ, each column standardised
with the training mean and std) to one signal logit per event, ``(B,)`` or ``(B, 1)``.

**Training.** Adam on binary cross-entropy. Each batch holds ``batch_size`` events of
which a fraction ``positive_fraction`` are training positives drawn with replacement
(``None``: plain uniform batches); an epoch is ``batches_per_epoch`` batches (default:
one pass over the training events). After each epoch the validation BCE of the
*calibrated* output is computed and the best state kept (early stopping after
``patience`` epochs without improvement). With ``workdir`` the best state goes to
``workdir/checkpoint.pt`` after every improving epoch and per-epoch scalars to
``workdir/tensorboard`` (when tensorboard is installed).

**Calibration.** Oversampling shifts the batch prior from π_data to π_batch; the
output logit gets the offset ``logit(π_data) - logit(π_batch)`` (prior-shift correction,
Saerens et al. 2002), so ``score`` returns calibrated probabilities.

Deterministic for a seed (torch and numpy generators seeded from ``seed``).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import InputError
from .base import EventBatch

__all__ = ["TorchModuleBackend", "Standardizer", "train_logit_model"]

log = logging.getLogger(__name__)


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


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


def _bce(logit: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logit, y)


def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = net(x)
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim != 1 or out.shape[0] != x.shape[0]:
        raise InputError(f"the custom module must return one logit per event, (B,) or (B, 1); got {tuple(out.shape)}")
    return out


@torch.no_grad()
def _predict_logits(net: nn.Module, x: np.ndarray, batch: int = 65536) -> np.ndarray:
    net.eval()
    out = [(_logits(net, torch.from_numpy(x[i:i + batch]))).double().numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros(0)


def train_logit_model(net: nn.Module, x: np.ndarray, y: np.ndarray, x_val: np.ndarray | None, y_val: np.ndarray | None,
                      *, seed: int = 0, epochs: int = 10, batch_size: int = 1024, batches_per_epoch: int | None = None,
                      lr: float = 1e-3, weight_decay: float = 0.0, positive_fraction: float | None = 0.1,
                      patience: int = 3, workdir: Path | None = None) -> tuple[float, list[dict[str, float]]]:
    """Train ``net`` (standardised x -> logit) by BCE with positive oversampling; see the module docstring.

    Returns ``(logit_offset, history)``; ``net`` holds the best weights on return.
    """
    rng = np.random.default_rng([seed, 7])
    torch.manual_seed(seed)
    n = len(y)
    pos = np.flatnonzero(y == 1)
    pi_data = (len(pos) + 0.5) / (n + 1.0)
    n_pos = int(round(positive_fraction * batch_size)) if (positive_fraction and len(pos)) else 0
    n_reg = batch_size - n_pos
    pi_batch = (pi_data * n_reg + n_pos) / batch_size
    offset = _logit(pi_data) - _logit(pi_batch)
    nb = batches_per_epoch or max(1, math.ceil(n / max(n_reg, 1)))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    has_val = x_val is not None and y_val is not None and len(y_val) > 0
    board = None
    if workdir is not None:
        try:
            from torch.utils.tensorboard import SummaryWriter

            board = SummaryWriter(str(Path(workdir) / "tensorboard"))
        except ImportError:
            log.warning("tensorboard is not installed; training scalars are not logged")
    best = (math.inf, None)
    bad = 0
    history: list[dict[str, float]] = []
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            net.train()
            tot = 0.0
            for _ in range(nb):
                idx = rng.integers(0, n, n_reg)
                if n_pos:
                    idx = np.concatenate([idx, pos[rng.integers(0, len(pos), n_pos)]])
                it = torch.from_numpy(idx)
                loss = _bce(_logits(net, xt[it]), yt[it])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss)
            row = {"epoch": epoch, "train_loss": tot / nb, "wall_s": time.perf_counter() - t0}
            if has_val:
                z = _predict_logits(net, x_val) + offset
                row["val_loss"] = float(_bce(torch.from_numpy(z), torch.from_numpy(y_val.astype(np.float64))))
            else:
                row["val_loss"] = row["train_loss"]
            if not np.isfinite(row["train_loss"]):
                raise FloatingPointError(f"training loss is not finite at epoch {epoch}; lower the learning rate")
            history.append(row)
            if board is not None:
                board.add_scalar("train/loss", row["train_loss"], epoch)
                board.add_scalar("val/loss", row["val_loss"], epoch)
            if row["val_loss"] < best[0]:
                best = (row["val_loss"], {k: v.detach().clone() for k, v in net.state_dict().items()})
                bad = 0
                if workdir is not None:
                    with atomic_path(Path(workdir) / "checkpoint.pt") as tmp:
                        torch.save({"model": best[1], "epoch": epoch, "offset": offset}, tmp)
            else:
                bad += 1
                if bad >= patience:
                    break
    finally:
        if board is not None:
            board.close()
    if best[1] is not None:
        net.load_state_dict(best[1])
    net.eval()
    return offset, history


class TorchModuleBackend:
    """Supervised backend around a torch module class; ``custom`` backends whose import path is a module.

    Parameters
    ----------
    module_cls:
        The :class:`torch.nn.Module` subclass (built with ``in_features=d`` and ``module`` options).
    seed:
        Seeds initialisation and batches.
    module:
        Keyword arguments of the module's constructor.
    epochs, batch_size, batches_per_epoch, lr, weight_decay, positive_fraction, patience:
        Trainer settings (see :func:`train_logit_model`).
    """

    name = "custom"
    probabilistic = True

    def __init__(self, module_cls: type, seed: int = 0, *, module_path: str | None = None,
                 module: dict[str, Any] | None = None, epochs: int = 10, batch_size: int = 1024,
                 batches_per_epoch: int | None = None, lr: float = 1e-3, weight_decay: float = 0.0,
                 positive_fraction: float | None = 0.1, patience: int = 3) -> None:
        self.module_cls = module_cls
        self.module_path = module_path or f"{module_cls.__module__}:{module_cls.__qualname__}"
        self.seed = int(seed)
        self.module_options = dict(module or {})
        self.train_options = {"epochs": int(epochs), "batch_size": int(batch_size), "batches_per_epoch": batches_per_epoch,
                              "lr": float(lr), "weight_decay": float(weight_decay),
                              "positive_fraction": positive_fraction, "patience": int(patience)}
        self.net: nn.Module | None = None
        self.scaler: Standardizer | None = None
        self.offset = 0.0
        self.history: list[dict[str, float]] = []
        self.in_features: int | None = None

    def _build(self, d: int) -> nn.Module:
        params = inspect.signature(self.module_cls).parameters
        torch.manual_seed(self.seed)
        if "in_features" in params:
            return self.module_cls(in_features=d, **self.module_options)
        return self.module_cls(d, **self.module_options)

    def fit(self, train: EventBatch, val: EventBatch | None = None, *, workdir: Path | None = None
            ) -> "TorchModuleBackend":
        """Standardise, build the module and train it (see :func:`train_logit_model`)."""
        self.scaler = Standardizer.fit(train.x)
        self.in_features = int(train.x.shape[1])
        self.net = self._build(self.in_features)
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        xv = None if val is None else self.scaler(val.x)
        yv = None if val is None else val.y
        self.offset, self.history = train_logit_model(self.net, self.scaler(train.x), train.y, xv, yv, seed=self.seed,
                                                      workdir=workdir, **self.train_options)
        return self

    def score(self, events: EventBatch) -> np.ndarray:
        """Calibrated signal probability per event, float64."""
        if self.net is None or self.scaler is None:
            raise RuntimeError("fit the backend before scoring")
        z = _predict_logits(self.net, self.scaler(events.x)) + self.offset
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, path: Path) -> None:
        """``path/model.pt`` (weights) and ``path/backend.json`` (module path, options, scaler, offset)."""
        if self.net is None or self.scaler is None:
            raise RuntimeError("fit the backend before saving")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "model.pt") as tmp:
            torch.save(self.net.state_dict(), tmp)
        meta = {"module_path": self.module_path, "seed": self.seed, "module": self.module_options,
                "train": self.train_options, "scaler": self.scaler.state(), "offset": self.offset,
                "in_features": self.in_features}
        with atomic_path(path / "backend.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: Path) -> "TorchModuleBackend":
        """Read what :meth:`save` wrote (re-imports the module class by its import path)."""
        from .registry import import_object

        path = Path(path)
        meta = json.loads((path / "backend.json").read_text())
        obj = cls(import_object(meta["module_path"]), seed=meta["seed"], module_path=meta["module_path"],
                  module=meta["module"], **meta["train"])
        obj.scaler = Standardizer.from_state(meta["scaler"])
        obj.offset = float(meta["offset"])
        obj.in_features = int(meta["in_features"])
        obj.net = obj._build(obj.in_features)
        obj.net.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
        obj.net.eval()
        return obj
