"""Context / target splits that are disjoint **by construction** (no label leakage).

A conditional neural process (``kind: cnp`` / ``attentive``) scores a target event from a
*context*: other events of the same run, with their labels (the factorised classifier
reads none, but gets the same banks). If a target's own label were in its context the score could copy it, so every
function here builds context sets from an explicit ``allowed`` set that excludes the
targets, and checks the disjointness before returning:

- training: per run, a fixed *context bank* is drawn once (:func:`draw_bank`); the
  training targets are all the other events of the run;
- scoring (:func:`fold_banks`): events are dealt into ``K`` folds at random (independent
  of the labels); the targets of fold ``k`` are scored from a bank drawn from the other
  folds only, so a fold's scores do not depend on that fold's labels.

Randomness is per run, from ``numpy.random.default_rng([seed, tag, crc32(run_id)])``, so
banks do not depend on how runs are chunked or ordered.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["ContextBank", "draw_bank", "fold_banks", "run_rng"]


def run_rng(seed: int, tag: int, run_id: str) -> np.random.Generator:
    """The generator of one run for one purpose (``tag``), independent of chunking."""
    return np.random.default_rng([int(seed), int(tag), zlib.crc32(run_id.encode())])


@dataclass
class ContextBank:
    """Context events per run: ``index`` (R, M) event indices (``-1`` = padding), ``count`` (R,)."""

    index: np.ndarray
    count: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.index >= 0

    def flat(self) -> np.ndarray:
        """All context event indices (no padding)."""
        return self.index[self.index >= 0]


def draw_bank(run_starts: np.ndarray, run_ids: Sequence[str], size: int, seed: int, tag: int,
              allowed: np.ndarray | None = None, keep_targets: int = 1) -> ContextBank:
    """Draw up to ``size`` context events per run, uniformly without replacement.

    ``allowed`` (bool, n): only these events may be context (default: all, but at least
    ``keep_targets`` events of each run are left out so the run has targets). The result
    is checked to lie inside ``allowed``.
    """
    run_starts = np.asarray(run_starts, dtype=np.int64)
    n_runs = len(run_starts) - 1
    index = np.full((n_runs, max(int(size), 0)), -1, dtype=np.int64)
    count = np.zeros(n_runs, dtype=np.int64)
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        csum = np.concatenate([[0], np.cumsum(allowed, dtype=np.int64)])
        n_allowed = csum[run_starts[1:]] - csum[run_starts[:-1]]
    for r in range(n_runs):
        lo, hi = int(run_starts[r]), int(run_starts[r + 1])
        rng = run_rng(seed, tag, run_ids[r])
        if allowed is None:
            m = min(int(size), max(hi - lo - keep_targets, 0))
            pick = lo + rng.choice(hi - lo, m, replace=False) if m else np.zeros(0, np.int64)
        else:
            na = int(n_allowed[r])
            m = min(int(size), na)
            if m == 0:
                pick = np.zeros(0, np.int64)
            elif na * 4 >= hi - lo and m * 8 < na:  # mostly allowed: rejection sampling on a few candidates
                c = min(hi - lo, int(np.ceil(m * (hi - lo) / na * 1.5)) + 16)
                cand = lo + rng.choice(hi - lo, c, replace=False)
                cand = cand[allowed[cand]]
                pick = cand[:m] if len(cand) >= m else lo + rng.choice(np.flatnonzero(allowed[lo:hi]), m, replace=False)
            else:
                pick = lo + rng.choice(np.flatnonzero(allowed[lo:hi]), m, replace=False)
        index[r, :m] = pick
        count[r] = m
    bank = ContextBank(index, count)
    if allowed is not None and not allowed[bank.flat()].all():  # structural guarantee, checked
        raise AssertionError("context bank contains events outside the allowed set")
    return bank


def fold_banks(run_starts: np.ndarray, run_ids: Sequence[str], size: int, seed: int, n_folds: int = 2,
               targets: np.ndarray | None = None) -> list[tuple[np.ndarray, ContextBank]]:
    """(target mask, context bank) pairs whose union of targets covers the events to score.

    With ``targets`` (bool, n) given: a single pair, context drawn from ``~targets``.
    Otherwise events are dealt at random into ``n_folds`` folds (independent of labels);
    pair ``k`` has the fold-``k`` events as targets and a bank drawn from the other folds.
    Each pair is checked to be disjoint.
    """
    run_starts = np.asarray(run_starts, dtype=np.int64)
    n = int(run_starts[-1])
    if targets is not None:
        masks = [np.asarray(targets, dtype=bool)]
    else:
        if n_folds < 2:
            raise ValueError("scoring needs at least 2 folds")
        fold = np.random.default_rng([int(seed), 7]).integers(0, n_folds, n, dtype=np.int8)
        masks = [fold == k for k in range(n_folds)]
    out = []
    for k, tmask in enumerate(masks):
        bank = draw_bank(run_starts, run_ids, size, seed, tag=100 + k, allowed=~tmask)
        if tmask[bank.flat()].any():
            raise AssertionError("context and targets overlap")
        out.append((tmask, bank))
    return out
