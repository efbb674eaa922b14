"""Common machinery of the zoo's torch backends: options, normalisation, fit / score / save / load.

A subclass sets ``name``, ``probabilistic``, ``Options`` (a :class:`TorchBackendOptions`
subclass) and implements :meth:`TorchBackend.build` (the network), :meth:`objective`,
:meth:`predict` (per-event score from normalised features) and, if it has one,
:meth:`encoder` (for contrastive pretraining). Features are θ scaled to [-1, 1] by the
training range and φ standardised by the training mean / std
(:class:`rarefy.denoise.normalize.Normalizer`).

``save(path)`` writes ``path/backend.pt`` (``torch.save`` of the state dicts, options,
seed and normaliser; read back with ``weights_only=True``) and ``path/backend.json``
(name, options, seed, training history; for people).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from pydantic import Field

from ..io import atomic_path
from ..denoise.normalize import Normalizer
from ..config import ImbalancePhaseConfig
from ..errors import InputError
from ..nn.seeding import seeded
from .base import EventBatch
from .contrastive import PretrainOptions, pretrain
from .training import (Objective, ReconstructionObjective, TrainOptions, TrainRecord, parse_options, predict_batched,
                       train_model)

__all__ = ["TorchBackendOptions", "ClassifierOptions", "TorchBackend", "ReconstructionBackend", "EmbedOf", "mlp",
           "DEFAULT_IMBALANCE"]

log = logging.getLogger(__name__)

STATE = "backend.pt"


#: default imbalance schedule of the classifier backends: oversampled, then natural
DEFAULT_IMBALANCE = [{"epochs": 5, "positive_ratio": 0.05, "max_reuse": 50},
                     {"epochs": 2, "positive_ratio": 0.01, "max_reuse": 20},
                     {"epochs": 1}]


class TorchBackendOptions(TrainOptions):
    """:class:`rarefy.zoo.training.TrainOptions` plus ``pretrain`` (contrastive, None: off)."""

    pretrain: PretrainOptions | None = None


class ClassifierOptions(TorchBackendOptions):
    """Options of the classifier backends: by default the :data:`DEFAULT_IMBALANCE` schedule."""

    imbalance: list[ImbalancePhaseConfig] | None = Field(
        default_factory=lambda: [ImbalancePhaseConfig(**p) for p in DEFAULT_IMBALANCE])


class EmbedOf(torch.nn.Module):
    """``module.embed`` as a module (the encoder that contrastive pretraining trains)."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.embed(x)


def mlp(d_in: int, hidden: list[int] | tuple[int, ...], d_out: int, act: type[torch.nn.Module] = torch.nn.SiLU
        ) -> torch.nn.Sequential:
    """Linear → act → … → Linear."""
    layers: list[torch.nn.Module] = []
    d = d_in
    for h in hidden:
        layers += [torch.nn.Linear(d, h), act()]
        d = h
    layers.append(torch.nn.Linear(d, d_out))
    return torch.nn.Sequential(*layers)


class TorchBackend:
    """Base class; see the module docstring."""

    name: ClassVar[str] = "torch"
    probabilistic: ClassVar[bool] = True
    Options: ClassVar[type[TorchBackendOptions]] = TorchBackendOptions
    #: train on the background (y = 0) events only (reconstruction scorers)
    background_only: ClassVar[bool] = False
    #: (is_valid(options), message) pairs checked at construction; the message is
    #: formatted with ``o`` = the options
    option_checks: ClassVar[tuple[tuple[Callable[[Any], bool], str], ...]] = ()

    def __init__(self, seed: int = 0, **options: Any) -> None:
        self.seed = int(seed)
        self.options = parse_options(self.Options, options, self.name)
        for ok, message in self.option_checks:
            if not ok(self.options):
                raise InputError(f"{self.name} options: " + message.format(o=self.options))
        self.model: torch.nn.Module | None = None
        self.normalizer: Normalizer | None = None
        self.n_theta = 0
        self.feature_names: tuple[str, ...] = ()
        self.record: TrainRecord | None = None
        self.pretrain_record: TrainRecord | None = None

    # ------------------------------------------------------------ subclass hooks
    def build(self, d: int, n_theta: int) -> torch.nn.Module:
        """The untrained network for ``d`` input features (the first ``n_theta`` are θ)."""
        raise NotImplementedError

    def objective(self) -> Objective:
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Per-event score (B,) from normalised features; higher = more signal-like."""
        raise NotImplementedError

    def encoder(self) -> tuple[torch.nn.Module, int] | None:
        """(module mapping features to an embedding, embedding width) for pretraining, or None."""
        return None

    def prepare(self, train: EventBatch) -> None:
        """Fit anything that precedes the network (called after the normaliser)."""

    def features(self, x: np.ndarray) -> torch.Tensor:
        """Network input of raw features ``x`` (n, d): normalised θ and φ, float32."""
        assert self.normalizer is not None
        x = np.asarray(x, dtype=np.float32)
        nt = self.n_theta
        return torch.cat([self.normalizer.theta(x[:, :nt]), self.normalizer.phi(x[:, nt:])], dim=1)

    def extra_state(self) -> dict[str, Any]:
        """Non-network state to save (tensors, numbers, strings, lists, dicts)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned (before :meth:`build` is called)."""

    # ------------------------------------------------------------------ public
    def fit(self, train: EventBatch, val: EventBatch | None = None, *, workdir: Path | None = None
            ) -> "TorchBackend":
        """Train on ``train`` (early stopping on ``val``); checkpoints / TensorBoard under ``workdir``."""
        if len(train) == 0:
            raise InputError(f"{self.name}: no training events")
        x = np.asarray(train.x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise InputError(f"{self.name}: training features hold NaN or infinite values")
        self.n_theta = int(train.n_theta)
        self.feature_names = tuple(train.feature_names)
        nt = self.n_theta
        phi = x[:, nt:].astype(np.float64)
        self.normalizer = Normalizer(x[:, :nt].min(axis=0), x[:, :nt].max(axis=0), phi.mean(axis=0), phi.std(axis=0))
        workdir = Path(workdir) if workdir is not None else None
        self.prepare(train)
        xt = self.features(x)
        y = np.asarray(train.y, dtype=np.float32)
        with seeded(self.seed):
            self.model = self.build(xt.shape[1], nt)
        if self.options.pretrain is not None:
            enc = self.encoder()
            if enc is None:
                raise InputError(f"{self.name}: this backend has no encoder to pretrain")
            self.pretrain_record = pretrain(enc[0], enc[1], xt, y, self.options.pretrain, seed=self.seed,
                                            n_theta=nt, n_aux=xt.shape[1] - x.shape[1],
                                            workdir=None if workdir is None else workdir / "pretrain")
        xv = yv = None
        if val is not None and len(val):
            xv, yv = self.features(val.x), np.asarray(val.y, dtype=np.float32)
        if self.background_only:
            keep = y < 0.5
            xt, y = xt[torch.from_numpy(keep)], y[keep]
        self.record = train_model(self.model, self.objective(), xt, y, options=self.options, seed=self.seed,
                                  x_val=xv, y_val=yv, n_theta=nt,
                                  workdir=None if workdir is None else workdir / "fit")
        self.model.eval()
        return self

    def score(self, events: EventBatch) -> np.ndarray:
        """Per-event score, float64 (n,); never reads ``events.y``."""
        if self.model is None:
            raise InputError(f"{self.name}: score() before fit()")
        self.model.eval()
        s = predict_batched(self.predict, self.features(events.x))
        return s.double().numpy()

    def save(self, path: Path) -> None:
        """Write ``path/backend.pt`` and ``path/backend.json``."""
        if self.model is None or self.normalizer is None:
            raise InputError(f"{self.name}: save() before fit()")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        payload = {"name": self.name, "options": self.options.model_dump_json(), "seed": self.seed,
                   "n_theta": self.n_theta, "feature_names": list(self.feature_names),
                   "normalizer": self.normalizer.state_dict(), "model": self.model.state_dict(),
                   "extra": self.extra_state()}
        with atomic_path(path / STATE) as tmp:
            torch.save(payload, tmp)
        meta = {"name": self.name, "seed": self.seed, "options": json.loads(self.options.model_dump_json()),
                "history": self.record.history if self.record else None}
        with atomic_path(path / "backend.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=1, default=float))

    @classmethod
    def load(cls, path: Path) -> "TorchBackend":
        """Read a backend written by :meth:`save`."""
        f = Path(path) / STATE
        if not f.exists():
            raise InputError(f"no saved {cls.name} backend here", file=f)
        payload = torch.load(f, map_location="cpu", weights_only=True)
        if payload["name"] != cls.name:
            raise InputError(f"saved backend is {payload['name']!r}, not {cls.name!r}", file=f)
        self = cls(seed=payload["seed"], **json.loads(payload["options"]))
        self.n_theta = int(payload["n_theta"])
        self.feature_names = tuple(payload["feature_names"])
        self.normalizer = Normalizer.from_state_dict(payload["normalizer"])
        self.load_extra_state(payload["extra"])
        d = len(self.feature_names)
        self.model = self.build(int(self.features(np.zeros((1, d), np.float32)).shape[1]), self.n_theta)
        self.model.load_state_dict(payload["model"])
        self.model.eval()
        return self


class ReconstructionBackend(TorchBackend):
    """A scorer trained on background only whose score is the model's per-event loss
    (``model.event_loss(x)``, e.g. reconstruction error or negative ELBO); not a probability."""

    probabilistic: ClassVar[bool] = False
    background_only: ClassVar[bool] = True

    def objective(self) -> Objective:
        return ReconstructionObjective()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.event_loss(x)
