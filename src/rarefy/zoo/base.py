"""The contract every event-level backend of the model zoo follows.

A backend learns a per-event signal score from labelled events and is compared with the
others by ``rarefy bench``. Features are the design θ and the per-event φ, concatenated
and *not* normalised (each backend normalises for itself, from its training data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["EventBatch", "Backend"]


@dataclass(frozen=True)
class EventBatch:
    """Labelled events as plain arrays.

    Attributes
    ----------
    x:
        ``(n, d)`` float32 features: the θ columns first, then the φ columns.
    y:
        ``(n,)`` uint8 outcome (1 = signal, the rare class).
    run:
        ``(n,)`` int64 run id of each event (events of one run share θ).
    feature_names:
        The ``d`` column names, θ first.
    n_theta:
        How many leading columns of ``x`` are θ.
    weight:
        Optional ``(n,)`` float32 per-event weights (None = all 1).
    """

    x: np.ndarray
    y: np.ndarray
    run: np.ndarray
    feature_names: tuple[str, ...]
    n_theta: int
    weight: np.ndarray | None = field(default=None)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, mask: np.ndarray) -> "EventBatch":
        """The events where ``mask`` (boolean or index array) selects."""
        w = None if self.weight is None else self.weight[mask]
        return EventBatch(self.x[mask], self.y[mask], self.run[mask], self.feature_names, self.n_theta, w)


@runtime_checkable
class Backend(Protocol):
    """An event-level learner: ``Cls(seed=0, **options)`` then fit / score / save / load.

    ``score`` returns one float per event, higher = more signal-like. Backends that model
    a probability return calibrated probabilities in [0, 1] (used for the ECE); the
    others return a monotone score and set ``probabilistic = False``.
    """

    name: str
    probabilistic: bool

    def fit(self, train: EventBatch, val: EventBatch | None = None, *, workdir: Path | None = None) -> "Backend":
        """Train on ``train`` (early stopping / model choice on ``val``); checkpoints and
        TensorBoard logs go under ``workdir`` when given. Returns ``self``."""
        ...

    def score(self, events: EventBatch) -> np.ndarray:
        """Per-event score, shape ``(n,)`` float64; ``events.y`` must not be read."""
        ...

    def save(self, path: Path) -> None:
        """Write the trained backend to the directory ``path`` (created if missing)."""
        ...

    @classmethod
    def load(cls, path: Path) -> "Backend":
        """Read a backend written by :meth:`save`."""
        ...
