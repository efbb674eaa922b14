"""Learning-rate schedules per epoch, as :class:`torch.optim.lr_scheduler.LambdaLR`.

``constant``: the base rate every epoch. ``cosine``: cosine annealing to 0 over the
run, ``lr_e = lr · ½ (1 + cos(π e / E))`` for 0-based epoch ``e`` of ``E`` (Loshchilov &
Hutter 2017, without restarts). The closed form (not torch's recursive
``CosineAnnealingLR``) makes the rate of an epoch exact whatever the epoch a run was
resumed at; the scheduler's state (its epoch) goes into the checkpoint.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

import torch

__all__ = ["LRSchedule", "lr_factor", "lr_scheduler"]

LRSchedule = Literal["constant", "cosine"]


def lr_factor(kind: LRSchedule, epoch: int, total: int) -> float:
    """Multiplier of the base learning rate in (0-based) ``epoch`` of ``total``."""
    if kind == "cosine" and total > 0:
        return 0.5 * (1.0 + math.cos(math.pi * epoch / total))
    if kind not in ("constant", "cosine"):
        raise ValueError(f"unknown learning-rate schedule {kind!r} (constant, cosine)")
    return 1.0


def lr_scheduler(optimizer: torch.optim.Optimizer, kind: LRSchedule, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepped once per epoch that sets each epoch's rate by :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, kind, total=total))
