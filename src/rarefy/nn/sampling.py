"""Class-imbalance schedule: per-batch positive oversampling in phases.

A schedule is a list of :class:`Phase` (``epochs``, ``positive_ratio``, ``max_reuse``),
run one after the other. In an epoch of a phase with ``positive_ratio = ρ`` each batch
of ``B`` targets holds ``round(ρ·B)`` events drawn from the *positive pool* (all signal
events of the training runs that are not context) and ``B - round(ρ·B)`` regular events
(the shuffled training targets, which carry their natural share of signal). Each pool
event is drawn at most ``max_reuse`` times per epoch: the epoch's pool stream is
``max_reuse`` random permutations of the pool, consumed in order; once it is used up the
remaining batches hold regular events only. ``ρ = None`` is the natural distribution.
This works at any imbalance (down to one positive in 1e7 events): pool draws are indices
into a small in-memory pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError

__all__ = ["Phase", "Schedule", "PositiveStream", "regular_batches"]


@dataclass(frozen=True)
class Phase:
    """``epochs`` epochs with ``positive_ratio`` pool positives per batch (None: natural), ≤ ``max_reuse`` uses each per epoch."""

    epochs: int
    positive_ratio: float | None = None
    max_reuse: int = 10

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InputError(f"an imbalance phase needs epochs >= 1, got {self.epochs}")
        if self.positive_ratio is not None and not 0.0 <= self.positive_ratio < 1.0:
            raise InputError(f"positive_ratio must be in [0, 1), got {self.positive_ratio}")
        if self.max_reuse < 1:
            raise InputError(f"max_reuse must be >= 1, got {self.max_reuse}")

    def n_pool(self, batch_size: int) -> int:
        """Pool positives per batch."""
        return 0 if not self.positive_ratio else max(1, int(round(self.positive_ratio * batch_size)))


class Schedule:
    """Phases in order; :meth:`at` gives the phase of a (0-based) epoch."""

    def __init__(self, phases: Sequence[Phase]) -> None:
        if not phases:
            raise InputError("an imbalance schedule needs at least one phase")
        self.phases = list(phases)
        self.ends = np.cumsum([p.epochs for p in self.phases])

    @property
    def total_epochs(self) -> int:
        return int(self.ends[-1])

    def at(self, epoch: int) -> tuple[int, Phase]:
        """(phase index, phase) of 0-based ``epoch``."""
        i = int(np.searchsorted(self.ends, epoch, side="right"))
        if i >= len(self.phases):
            raise IndexError(f"epoch {epoch} is past the schedule ({self.total_epochs} epochs)")
        return i, self.phases[i]


class PositiveStream:
    """The epoch's pool draws: ``max_reuse`` permutations of ``range(n_pool)``, taken in order."""

    def __init__(self, n_pool: int, max_reuse: int, rng: np.random.Generator) -> None:
        self.order = (np.concatenate([rng.permutation(n_pool) for _ in range(max_reuse)])
                      if n_pool else np.zeros(0, np.int64))
        self.pos = 0

    def take(self, k: int) -> np.ndarray:
        out = self.order[self.pos:self.pos + k]
        self.pos += len(out)
        return out

    @property
    def used(self) -> int:
        return self.pos


def regular_batches(eligible: np.ndarray, size: int, rng: np.random.Generator, n_batches: int | None = None
                    ) -> list[np.ndarray]:
    """Index batches of ``size`` over the True entries of ``eligible`` (bool, n).

    ``n_batches=None``: one shuffled pass (every eligible event once; last batch may be
    short). Otherwise ``n_batches`` batches drawn uniformly with replacement (no (n,)
    index array is built, so this stays cheap for 1e7+ events).
    """
    if size < 1:
        return []
    if n_batches is None:
        idx = np.flatnonzero(eligible)
        rng.shuffle(idx)
        return [idx[i:i + size] for i in range(0, len(idx), size)]
    n = len(eligible)
    frac = float(eligible.mean()) if n else 0.0
    if frac == 0.0:
        return []
    out = []
    for _ in range(n_batches):
        got = np.zeros(0, np.int64)
        while len(got) < size:
            cand = rng.integers(0, n, int((size - len(got)) / frac * 1.2) + 16)
            got = np.concatenate([got, cand[eligible[cand]]])
        out.append(got[:size])
    return out
