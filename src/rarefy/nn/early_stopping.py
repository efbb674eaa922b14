"""Early stopping on a validation score, keeping the best weights.

:class:`EarlyStopping` sees one score per epoch (lower is better). An epoch *improves*
when its score is below the best so far by more than ``min_delta``; its weights are
then kept (a detached copy of the state dict). After ``patience`` epochs in a row
without improvement, training stops. ``patience=None`` never stops and keeps the *last*
epoch's weights (what a run without validation data, or with early stopping off, ends
with). The trainer loads the kept weights when training ends, so buffers such as a
calibration offset come back with them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Best-score tracker; see the module docstring."""

    def __init__(self, patience: int | None = None, min_delta: float = 0.0) -> None:
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best_value = math.inf
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0

    def update(self, value: float, epoch: int, model: torch.nn.Module) -> bool:
        """Record ``epoch``'s score ``value``; True when training should stop."""
        if self.patience is None or value < self.best_value - self.min_delta:
            self.best_value, self.best_epoch, self.bad_epochs = float(value), int(epoch), 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        """Load the kept weights into ``model`` (nothing if no epoch was recorded)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "best_state": self.best_state,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_value, self.best_epoch = float(state["best_value"]), int(state["best_epoch"])
        self.best_state, self.bad_epochs = state["best_state"], int(state["bad_epochs"])
