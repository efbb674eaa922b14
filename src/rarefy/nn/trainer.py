"""One resumable trainer for torch models: epochs, schedule, early stopping, checkpoints.

:class:`Trainer` knows nothing of the model it trains. The caller gives

* the model and an optimiser factory (``params -> torch.optim.Optimizer``);
* ``step(model, batch) -> loss`` (a scalar tensor), the whole of the model-specific work;
* ``batches(epoch) -> iterable of batches``, the data of an epoch;
* optionally ``validate(model) -> score`` (a float, or a dict holding ``val_loss``; lower
  is better) and ``end_epoch(epoch, row)``, a hook between the training pass and
  validation (e.g. to set a calibration buffer and add epoch statistics to the row).

Each epoch: the training pass (``zero_grad``, ``backward``, optional gradient-norm
clipping, ``step`` per batch), ``end_epoch``, validation, early stopping
(:class:`~rarefy.nn.early_stopping.EarlyStopping`), the learning-rate step
(:mod:`rarefy.nn.schedule`), then one history row goes to TensorBoard
(:class:`~rarefy.nn.board.Board`), to an **atomic checkpoint** and to ``on_epoch``.
When training ends (last epoch, or early stop) the best weights are loaded.

**Randomness and resume.** The trainer owns a :class:`torch.Generator` seeded by
``seed``. Each epoch draws a seed from it and runs under
:func:`~rarefy.nn.seeding.seeded`, so dropout or ``randn_like`` inside ``step`` are
reproducible while the caller's global RNG state is left as it was. The checkpoint holds
the model, optimiser, scheduler and early-stopping states, the generator state, the
epoch counter and the history; a later :meth:`Trainer.fit` on the same checkpoint path
goes on after the last finished epoch and ends with the same weights as an
uninterrupted run, provided ``batches(epoch)`` depends only on ``epoch`` (e.g. a
``numpy.random.default_rng([seed, epoch])`` per epoch). A checkpoint whose
``fingerprint`` differs from the caller's (other data, config or seed) is refused.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Mapping, TypeVar

import torch

from ..errors import InputError
from .board import Board
from .checkpoint import load_checkpoint, save_checkpoint
from .early_stopping import EarlyStopping
from .schedule import LRSchedule, lr_scheduler
from .seeding import cuda_devices, seeded

__all__ = ["Trainer", "TrainState", "floored_batch"]

log = logging.getLogger(__name__)

B = TypeVar("B")


def floored_batch(n: int, batch_size: int, min_steps: int, smallest: int = 256) -> int:
    """Events per step so that an epoch of ``n`` events takes at least ``min_steps`` steps (0: no floor).

    The batch is ``batch_size`` unless fewer than ``min_steps`` batches of it fit in ``n``; then it shrinks,
    to no fewer than ``smallest`` events, so that epoch counts chosen on large data do not leave a fit on
    small data a handful of optimiser steps.
    """
    if min_steps <= 0:
        return int(batch_size)
    return min(int(batch_size), max(int(smallest), math.ceil(n / min_steps)))


@dataclass
class TrainState:
    """Where a training run stands: per-epoch ``history`` rows (``epoch``, ``train_loss``,
    ``lr``, ``wall_s``, ``val_loss`` and whatever ``end_epoch`` and ``validate`` added), the
    best epoch and its validation score, the epochs finished, whether training stopped
    early, and whether it finished (False only after ``stop_after_epochs``)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    epochs_run: int = 0
    stopped_early: bool = False
    finished: bool = False


class Trainer(Generic[B]):
    """Epoch loop with learning-rate schedule, early stopping, checkpoints and resume.

    Parameters
    ----------
    model:
        The module to train in place.
    optimizer:
        Factory ``params -> optimiser`` (e.g. ``lambda p: torch.optim.Adam(p, lr=1e-3)``).
    step:
        ``step(model, batch)``: the batch's scalar training loss (with gradients).
    epochs:
        Total epochs of the run.
    validate:
        ``validate(model)``: the validation score (float, or a dict of metrics holding
        ``val_loss``), called in ``eval`` mode. None: no validation; the last epoch is kept.
    early_stopping:
        Patience and tolerance (None, or ``patience=None``: never stop, keep the last epoch).
    lr_schedule:
        ``constant`` or ``cosine`` (:mod:`rarefy.nn.schedule`).
    grad_clip:
        Clip the gradient norm to this before each step (None: no clipping).
    seed:
        Seeds the trainer's generator (torch randomness inside ``step``).
    checkpoint:
        File written atomically after every epoch and resumed from (None: none).
    fingerprint:
        Identity of data, config and seed; a checkpoint with another is refused.
    tensorboard:
        Folder for TensorBoard scalars (None: none).
    end_epoch:
        ``end_epoch(epoch, row)`` after the training pass, before validation.
    on_epoch:
        ``on_epoch(row)`` after the epoch's checkpoint is written (progress reports).
    batch_weight:
        Weight of a batch in the epoch's mean ``train_loss`` (default 1 per batch).
    progress:
        Show a progress bar over each epoch's batches.
    name:
        Names the run in log lines and errors.
    extra_state:
        ``extra_state(state)``: more entries for the checkpoint (for people and tests).
    """

    def __init__(self, model: torch.nn.Module, optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
                 step: Callable[[torch.nn.Module, B], torch.Tensor], *, epochs: int,
                 validate: Callable[[torch.nn.Module], float | Mapping[str, float]] | None = None,
                 early_stopping: EarlyStopping | None = None, lr_schedule: LRSchedule = "constant",
                 grad_clip: float | None = None, seed: int = 0, checkpoint: Path | None = None,
                 fingerprint: str = "", tensorboard: Path | None = None,
                 end_epoch: Callable[[int, dict[str, Any]], None] | None = None,
                 on_epoch: Callable[[dict[str, Any]], None] | None = None,
                 batch_weight: Callable[[B], float] | None = None, progress: bool = False, name: str = "training",
                 extra_state: Callable[[TrainState], dict[str, Any]] | None = None) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        self.model = model
        self.optimizer = optimizer(model.parameters())
        self.scheduler = lr_scheduler(self.optimizer, lr_schedule, epochs)
        self.step = step
        self.epochs = int(epochs)
        self.validate = validate
        self.stopper = early_stopping if early_stopping is not None else EarlyStopping(None)
        self.grad_clip = grad_clip
        self.generator = torch.Generator().manual_seed(int(seed))
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.fingerprint = fingerprint
        self.tensorboard = tensorboard
        self.end_epoch = end_epoch
        self.on_epoch = on_epoch
        self.batch_weight = batch_weight
        self.progress = progress
        self.name = name
        self.extra_state = extra_state
        self.state = TrainState()

    # ----------------------------------------------------------------- resume
    def resume(self) -> bool:
        """Load the checkpoint when there is one (True), checking its fingerprint."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return False
        ck = load_checkpoint(self.checkpoint)
        if ck.get("fingerprint") != self.fingerprint:
            raise InputError("the checkpoint here was written for other data, config or seed (or another model); "
                             "use a new output folder", file=self.checkpoint)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.stopper.load_state_dict(ck["early_stopping"])
        self.generator.set_state(ck["generator"])
        self.state = TrainState(history=list(ck["history"]), best_epoch=self.stopper.best_epoch,
                                best_val_loss=self.stopper.best_value, epochs_run=int(ck["epoch"]),
                                stopped_early=bool(ck["stopped_early"]), finished=bool(ck["finished"]))
        log.info("%s: resuming at epoch %d from %s", self.name, self.state.epochs_run, self.checkpoint)
        return True

    def _save(self) -> None:
        if self.checkpoint is None:
            return
        s = self.state
        payload = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "scheduler": self.scheduler.state_dict(), "early_stopping": self.stopper.state_dict(),
                   "generator": self.generator.get_state(), "epoch": s.epochs_run, "finished": s.finished,
                   "stopped_early": s.stopped_early, "history": s.history, "fingerprint": self.fingerprint}
        if self.extra_state is not None:
            payload.update(self.extra_state(s))
        save_checkpoint(self.checkpoint, payload)

    # ------------------------------------------------------------------ train
    def fit(self, batches: Callable[[int], Iterable[B]], *, stop_after_epochs: int | None = None) -> TrainState:
        """Train (resuming from the checkpoint when present) until the run finishes, or for
        ``stop_after_epochs`` epochs in this call (the checkpoint stays; call again to go on)."""
        self.resume()
        s = self.state
        board = Board(self.tensorboard)
        n_this = 0
        try:
            while not s.finished and s.epochs_run < self.epochs:
                if stop_after_epochs is not None and n_this >= stop_after_epochs:
                    break
                epoch = s.epochs_run
                epoch_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
                with seeded(epoch_seed, cuda_devices(self.model)):
                    row = self._epoch(batches(epoch), epoch)
                    if self.end_epoch is not None:
                        self.end_epoch(epoch, row)
                    row.update(self._validate())
                stop = self.stopper.update(row.get("val_loss", math.nan), epoch, self.model)
                self.scheduler.step()
                s.epochs_run = epoch + 1
                n_this += 1
                if stop:
                    s.stopped_early = True
                    row["stopped_early"] = True
                s.finished = s.stopped_early or s.epochs_run >= self.epochs
                if s.finished:
                    self.stopper.restore(self.model)
                s.best_epoch, s.best_val_loss = self.stopper.best_epoch, self.stopper.best_value
                s.history.append(row)
                log.debug("%s epoch %d: train %.5g, val %.5g", self.name, epoch, row["train_loss"],
                         row.get("val_loss", math.nan))
                board.log(row, epoch)
                self._save()
                if self.on_epoch is not None:
                    self.on_epoch(row)
        finally:
            board.close()
        self.model.eval()
        return s

    def _epoch(self, batches: Iterable[B], epoch: int) -> dict[str, Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        t0 = time.perf_counter()
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.model.train()
        tot, weight = 0.0, 0.0
        total = len(batches) if hasattr(batches, "__len__") else None
        with Progress(TextColumn(f"{self.name} epoch {epoch}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("loss {task.fields[loss]:.4g}"), TimeRemainingColumn(), transient=True,
                      disable=not self.progress) as bar:
            task = bar.add_task("train", total=total, loss=float("nan"))
            for batch in batches:
                loss = self.step(self.model, batch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
                self.optimizer.step()
                lv = float(loss.detach())
                w = 1.0 if self.batch_weight is None else float(self.batch_weight(batch))
                tot += lv * w
                weight += w
                bar.update(task, advance=1, loss=lv)
        if weight == 0:
            raise InputError(f"{self.name}: no training batches")
        row = {"epoch": epoch, "train_loss": tot / weight, "lr": lr, "wall_s": time.perf_counter() - t0}
        if not math.isfinite(row["train_loss"]):
            raise FloatingPointError(f"{self.name}: training loss is not finite at epoch {epoch}; "
                                     "lower the learning rate")
        return row

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        if self.validate is None:
            return {}
        self.model.eval()
        try:
            out = self.validate(self.model)
        finally:
            self.model.train()
        return {"val_loss": float(out)} if isinstance(out, (int, float)) else dict(out)
