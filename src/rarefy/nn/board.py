"""TensorBoard scalars of a training run, when ``tensorboard`` is installed.

:class:`Board` writes every finite number of an epoch's history row (``train_loss`` as
``train/loss``, ``val_pr_auc`` as ``val/pr_auc`` …) at step = epoch. Without a folder,
or without the ``tensorboard`` package (one warning), it does nothing.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Board"]

log = logging.getLogger(__name__)

#: row entries that are bookkeeping, not scalars worth plotting
_SKIP = frozenset({"epoch", "phase", "stopped_early"})


class Board:
    """TensorBoard writer for per-epoch history rows (no-op without ``folder`` or ``tensorboard``)."""

    def __init__(self, folder: Path | None) -> None:
        self.writer: Any = None
        if folder is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("tensorboard is not installed; training scalars are not logged to TensorBoard")
            return
        self.writer = SummaryWriter(str(folder))

    def log(self, row: Mapping[str, Any], step: int) -> None:
        """Write the finite numbers of ``row`` at ``step``."""
        if self.writer is None:
            return
        for key, v in row.items():
            if key in _SKIP or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            self.writer.add_scalar(key.replace("_", "/", 1), float(v), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
