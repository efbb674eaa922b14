"""``isolation_forest``: scikit-learn's IsolationForest trained on background events.

The forest is fitted on the training events with ``y == 0`` only (an outlier detector
of the background; at most ``max_background`` of them, drawn at random, since isolation
trees use ``max_samples`` events each anyway). The score is the anomaly score
``-score_samples(x)`` (higher = more unusual = more signal-like); it is not a
probability (``probabilistic = False``). Features are θ and φ as given (isolation trees
split uniformly between a feature's minimum and maximum, so no scaling is needed);
``features: phi`` drops the θ columns.

A saved backend is its settings (JSON) and the background events it was fitted on (a
plain ``.npy`` array, read with ``allow_pickle=False``); loading refits the forest from
them, which gives the same forest (same events, same ``random_state``). Nothing is
unpickled, so a run directory from elsewhere cannot run code when it is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from sklearn.ensemble import IsolationForest

from ..io import atomic_path
from .base import EventBatch

__all__ = ["IsolationForestBackend"]


class IsolationForestBackend:
    """Isolation forest of the background; see the module docstring.

    Parameters
    ----------
    seed:
        ``random_state`` of the forest and of the background subsample.
    n_estimators, max_samples, max_features:
        As in :class:`sklearn.ensemble.IsolationForest`.
    max_background:
        At most this many background training events are used (random subset).
    features:
        ``all`` (θ and φ) or ``phi`` (φ only).
    """

    name = "isolation_forest"
    probabilistic = False

    def __init__(self, seed: int = 0, *, n_estimators: int = 200, max_samples: int | float | str = "auto",
                 max_features: float = 1.0, max_background: int = 200_000,
                 features: Literal["all", "phi"] = "all", n_jobs: int | None = 1) -> None:
        if features not in ("all", "phi"):
            raise ValueError(f"features must be 'all' or 'phi', got {features!r}")
        self.seed = int(seed)
        self.options = {"n_estimators": int(n_estimators), "max_samples": max_samples, "max_features": float(max_features),
                        "max_background": int(max_background), "features": features, "n_jobs": n_jobs}
        self.forest: IsolationForest | None = None
        self.background: np.ndarray | None = None  # the events the forest was fitted on, (m, features)
        self.n_theta = 0

    def _x(self, events: EventBatch) -> np.ndarray:
        return events.x[:, events.n_theta:] if self.options["features"] == "phi" else events.x

    def fit(self, train: EventBatch, val: EventBatch | None = None, *, workdir: Path | None = None
            ) -> "IsolationForestBackend":
        """Fit the forest on (a random subset of) the background training events."""
        bg = np.flatnonzero(train.y == 0)
        if not len(bg):
            raise ValueError("isolation_forest needs background (y == 0) training events")
        cap = self.options["max_background"]
        if len(bg) > cap:
            bg = np.sort(np.random.default_rng([self.seed, 11]).choice(bg, cap, replace=False))
        # float32: what the trees split on (scikit-learn's tree dtype), so saving it loses nothing
        self._fit_forest(np.ascontiguousarray(self._x(train)[bg], dtype=np.float32))
        self.n_theta = train.n_theta
        if workdir is not None:
            self.save(Path(workdir))
        return self

    def _fit_forest(self, background: np.ndarray) -> None:
        self.forest = IsolationForest(n_estimators=self.options["n_estimators"], max_samples=self.options["max_samples"],
                                      max_features=self.options["max_features"], random_state=self.seed,
                                      n_jobs=self.options["n_jobs"])
        self.forest.fit(background)
        self.background = background

    def score(self, events: EventBatch) -> np.ndarray:
        """Anomaly score ``-score_samples`` per event (float64; higher = more anomalous)."""
        if self.forest is None:
            raise RuntimeError("fit the backend before scoring")
        return -self.forest.score_samples(self._x(events)).astype(np.float64)

    def save(self, path: Path) -> None:
        """``path/background.npy`` (the fitted background events, float32) and ``path/backend.json``."""
        if self.forest is None or self.background is None:
            raise RuntimeError("fit the backend before saving")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "background.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, self.background, allow_pickle=False)
        with atomic_path(path / "backend.json") as tmp:
            tmp.write_text(json.dumps({"seed": self.seed, "options": self.options, "n_theta": self.n_theta}))

    @classmethod
    def load(cls, path: Path) -> "IsolationForestBackend":
        """Read what :meth:`save` wrote and refit the forest on the saved events (the same forest)."""
        path = Path(path)
        meta = json.loads((path / "backend.json").read_text())
        obj = cls(meta["seed"], **meta["options"])
        background = np.load(path / "background.npy", allow_pickle=False)
        if background.dtype != np.float32 or background.ndim != 2:
            raise ValueError(f"{path / 'background.npy'}: expected a 2-D float32 array, got {background.dtype} "
                             f"{background.shape}")
        obj._fit_forest(background)
        obj.n_theta = int(meta["n_theta"])
        return obj
