"""Small synthetic event sets for the model-zoo tests (not a test module)."""

from __future__ import annotations

import numpy as np

from rarefy.zoo.base import EventBatch

#: training options that keep a backend test to a few seconds
FAST = {"epochs": 4, "batch_size": 256, "batches_per_epoch": 30, "tensorboard": False, "checkpoint": False,
        "lr": 3e-3}


def separable(n_bkg: int = 3000, n_sig: int = 150, seed: int = 0, shift: float = 4.0, n_runs: int = 10
              ) -> EventBatch:
    """θ (1 column, per run) and φ (3 columns); signal has φ₀ shifted by ``shift`` (trivially separable)."""
    rng = np.random.default_rng(seed)
    n = n_bkg + n_sig
    run = rng.integers(0, n_runs, n)
    theta = (np.linspace(0, 1, n_runs)[run])[:, None] * 10.0 + 5.0
    phi = rng.normal(size=(n, 3))
    y = np.zeros(n, np.uint8)
    y[n_bkg:] = 1
    phi[n_bkg:, 0] += shift
    perm = rng.permutation(n)
    x = np.concatenate([theta, phi], axis=1).astype(np.float32)[perm]
    return EventBatch(x, y[perm], run[perm].astype(np.int64), ("t", "a", "b", "c"), 1)


def relabel(ev: EventBatch, y: np.ndarray) -> EventBatch:
    """The same events with other labels (to check that ``score`` ignores them)."""
    return EventBatch(ev.x, y, ev.run, ev.feature_names, ev.n_theta, ev.weight)


def manifold(n_bkg: int = 3000, n_sig: int = 150, seed: int = 0, n_runs: int = 10) -> EventBatch:
    """Background on the plane φ₁ = 2 φ₀ (± 0.05); signal 1.5 off it, every feature within the background's range."""
    rng = np.random.default_rng(seed)
    n = n_bkg + n_sig
    run = rng.integers(0, n_runs, n)
    theta = (np.linspace(0, 1, n_runs)[run])[:, None] * 10.0 + 5.0
    a = rng.normal(size=n)
    phi = np.stack([a, 2 * a + 0.05 * rng.normal(size=n), rng.normal(size=n)], 1)
    y = np.zeros(n, np.uint8)
    y[n_bkg:] = 1
    phi[n_bkg:, 1] += 1.5
    perm = rng.permutation(n)
    x = np.concatenate([theta, phi], axis=1).astype(np.float32)[perm]
    return EventBatch(x, y[perm], run[perm].astype(np.int64), ("t", "a", "b", "c"), 1)
