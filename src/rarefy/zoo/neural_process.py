"""``cnp`` and ``attentive_np``: the denoiser's conditional neural processes (:mod:`rarefy.denoise`) as zoo backends.

Both wrap :func:`rarefy.denoise.train` — its losses, imbalance (positive oversampling)
schedules, mixup, early stopping, atomic checkpoints and TensorBoard logs — and
:func:`rarefy.denoise.score`. Options are the fields of
:class:`rarefy.config.DenoiseConfig` (``model``, ``loss``, ``imbalance``, ``mixup``,
``epochs``, ``batch_size``, ``batches_per_epoch``, ``lr``, ``context_size``, ...); the
model kind is fixed by the backend (``cnp`` / ``attentive``) and the run-directory keys
(``fidelities``, ``phi``, ``test_blocks``, ``stream``, ``split``) do not apply: the bench's
training and validation runs are used as they are.

**Labelled context.** A neural process conditions each event on labelled events of its
own run (the context). :meth:`score` therefore reads the labels of the scored runs, the
way ``rarefy denoise`` does: events are dealt into ``score_folds`` folds and each
fold is scored with context drawn from the other folds only, so an event's own label
never reaches its score. This is the one deliberate exception to "``score`` does not
read ``y``" in :class:`rarefy.zoo.base.Backend`; with rates of 1e-4 the context labels
are almost always all 0, so the run's rate, not the event, is what they carry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path
from ..config import DenoiseConfig
from ..errors import InputError
from .base import EventBatch

__all__ = ["CNPBackend", "AttentiveNPBackend", "to_event_data"]

_FORBIDDEN = ("fidelities", "phi", "test_blocks", "stream", "split")


def _run_ids(run: np.ndarray) -> np.ndarray:
    """Zero-padded string ids whose string order is the numeric order."""
    return np.char.add("r", np.char.zfill(np.asarray(run, np.int64).astype(str), 12))


def to_event_data(events: EventBatch) -> tuple[Any, np.ndarray]:
    """(:class:`rarefy.denoise.EventData` sorted by run, order) with ``data[i] = events[order[i]]``."""
    from ..denoise import EventData

    order = np.argsort(events.run, kind="stable")
    run = events.run[order]
    starts = np.flatnonzero(np.r_[True, run[1:] != run[:-1]])
    theta = events.x[order][starts, :events.n_theta].astype(np.float64)
    data = EventData(theta, events.x[order][:, events.n_theta:], events.y[order].astype(np.float32),
                     np.r_[starts, len(run)], list(_run_ids(run[starts])),
                     list(events.feature_names[:events.n_theta]), list(events.feature_names[events.n_theta:]))
    return data, order


class CNPBackend:
    """The conditional neural process (mean-pooled context) as a backend; see the module docstring.

    ``Cls(seed=0, **options)``: options are :class:`rarefy.config.DenoiseConfig` fields.
    """

    name = "cnp"
    probabilistic = True
    kind = "cnp"

    def __init__(self, seed: int = 0, **options: Any) -> None:
        bad = [k for k in options if k in _FORBIDDEN]
        if bad:
            raise InputError(f"backend {self.name!r}: option(s) {bad} do not apply to the bench "
                             "(it gives the training and validation runs)")
        model = dict(options.pop("model", {}) or {})
        if model.get("kind", self.kind) != self.kind:
            raise InputError(f"backend {self.name!r} is model kind {self.kind!r}, not {model['kind']!r}")
        model["kind"] = self.kind
        options.setdefault("progress", False)
        options.setdefault("device", "cpu")
        from ..denoise.train import denoise_config

        self.config: DenoiseConfig = denoise_config({**options, "model": model})
        self.seed = int(seed)
        self.result: Any = None
        self.model: Any = None
        self.normalizer: Any = None

    def fit(self, train: EventBatch, val: EventBatch | None = None, *, workdir: Path | None = None) -> "CNPBackend":
        """Train with :func:`rarefy.denoise.train` on the train runs, early-stopping on the val runs."""
        from ..denoise import train as train_cnp

        both = train if val is None or not len(val) else _concat(train, val)
        data, _ = to_event_data(both)
        train_ids = sorted(set(_run_ids(np.unique(train.run))))
        val_ids = [] if val is None or not len(val) else sorted(set(_run_ids(np.unique(val.run))))
        if set(train_ids) & set(val_ids):
            raise ValueError("training and validation runs overlap")
        cfg = self.config
        if not val_ids and cfg.early_stopping.enabled:
            cfg = cfg.model_copy(update={"early_stopping": cfg.early_stopping.model_copy(update={"enabled": False})})
        self.result = train_cnp(data, cfg, out=workdir, seed=self.seed, split=(train_ids, val_ids, []))
        self.model, self.normalizer = self.result.model, self.result.normalizer
        return self

    def score(self, events: EventBatch) -> np.ndarray:
        """Calibrated signal probability per event, with leave-fold-out labelled context from its run."""
        from ..denoise import score

        if self.model is None:
            raise RuntimeError("fit the backend before scoring")
        data, order = to_event_data(events)
        s = score(self.model, data, self.normalizer, context_size=self.config.context_size,
                  folds=self.config.score_folds, seed=self.seed, device=self.config.device if self.config.device != "auto"
                  else "cpu")
        out = np.empty(len(events), np.float64)
        out[order] = s.p
        return out

    def save(self, path: Path) -> None:
        """``path/model.pt`` (weights, normaliser, config; :func:`rarefy.denoise.save_model`) and ``backend.json``."""
        from ..denoise.train import save_model

        if self.model is None:
            raise RuntimeError("fit the backend before saving")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_model(path / "model.pt", self.model, self.normalizer, self.config, self.seed)
        with atomic_path(path / "backend.json") as tmp:
            tmp.write_text(json.dumps({"backend": self.name, "seed": self.seed}))

    @classmethod
    def load(cls, path: Path) -> "CNPBackend":
        """Read what :meth:`save` (or a denoiser training folder) wrote."""
        from ..denoise.train import load_model

        path = Path(path)
        model, norm, cfg = load_model(path / "model.pt")
        meta = json.loads((path / "backend.json").read_text()) if (path / "backend.json").exists() else {}
        obj = cls.__new__(cls)
        obj.config, obj.seed, obj.result = cfg, int(meta.get("seed", cfg.seed or 0)), None
        obj.model, obj.normalizer = model, norm
        return obj


class AttentiveNPBackend(CNPBackend):
    """The attentive neural process (targets cross-attend to their run's context) as a backend."""

    name = "attentive_np"
    kind = "attentive"


def _concat(a: EventBatch, b: EventBatch) -> EventBatch:
    w = None if a.weight is None or b.weight is None else np.concatenate([a.weight, b.weight])
    return EventBatch(np.concatenate([a.x, b.x]), np.concatenate([a.y, b.y]), np.concatenate([a.run, b.run]),
                      a.feature_names, a.n_theta, w)
