"""The shared trainer of the per-event torch backends of the model zoo.

:func:`train_model` fits any ``torch.nn.Module`` to in-memory events under an
:class:`Objective` that turns a batch into a scalar loss:

* :class:`ClassifierObjective`: the model returns one raw logit per event; the loss is
  one of the stage-1 losses of :mod:`rarefy.nn.losses` (``bce``, ``focal``,
  ``logit_adjusted``, ``gaussian_nll``, ``brier``; a point logit, i.e. ``log_var → -∞``
  so ``κ = μ``), optionally with a positive-class weight ``pos_weight``;
* :class:`ReconstructionObjective`: the model returns a per-event loss (e.g. squared
  reconstruction error or negative ELBO, nats per event) through ``model.event_loss(x)``;
* contrastive objectives (:mod:`rarefy.zoo.contrastive`).

The epoch loop, early stopping, checkpoints, resume and TensorBoard are those of the one
trainer, :class:`rarefy.nn.trainer.Trainer`; this module adds the batches, the loss and
validation of an :class:`Objective`, and calibration. It reuses the stage-1 pieces: the
class-imbalance schedule (:mod:`rarefy.nn.sampling`: phases of per-batch positive
oversampling, each pool positive drawn at most ``max_reuse`` times per epoch) and
signal–background mixup (:mod:`rarefy.nn.mixup`, applied to the φ columns; a mixture
takes its signal's θ).

**Epochs.** An epoch is ``batches_per_epoch`` batches of ``batch_size`` events drawn
uniformly with replacement from the training events (``None``: one shuffled pass), plus
the phase's pool positives. All randomness of epoch ``e`` comes from
``numpy.random.default_rng([seed, tag, e])`` and the trainer's ``torch.Generator``
(seeded by ``seed`` and ``tag``, its state checkpointed), so an interrupted run resumed
from ``workdir/checkpoint.pt`` ends with the same weights as an uninterrupted one.

**Calibration of classifiers.** Oversampling, ``pos_weight`` and logit adjustment change
the training prior. After every epoch the model's ``logit_offset`` buffer (see
:class:`Calibrated`) is set to ``logit(π_data) - logit(π_eff) + shift``, with
``π_data`` the signal fraction of the training events ((k + ½)/(n + 1)), ``π_eff`` the
epoch's expected weighted signal fraction of a batch (``π_b w / (π_b w + 1 - π_b)`` for
batch prior ``π_b`` and ``pos_weight`` ``w``) and ``shift`` the logit adjustment of
``logit_adjusted`` — the prior-shift correction of :mod:`rarefy.denoise.train`.

**Validation** (each epoch, for early stopping): on the validation events, all signal
and at most ``val_max_events`` background events (a random subset whose events are
weighted up by the inverse subsampling fraction, so the loss is that of the natural
mix). Classifiers are validated by the weighted BCE of their calibrated probabilities
(a proper scoring rule, whatever the training loss), reconstruction models by their
mean per-event loss on the validation background. The best epoch's weights are restored.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import DenoiseLossConfig, EarlyStoppingConfig, ImbalancePhaseConfig, MixupConfig, format_validation_error
from ..nn.losses import get_loss
from ..nn.mixup import Mixup
from ..nn.early_stopping import EarlyStopping
from ..nn.sampling import Phase, PositiveStream, Schedule, regular_batches
from ..nn.trainer import Trainer, TrainState
from ..errors import InputError

__all__ = ["TrainOptions", "Objective", "ClassifierObjective", "ReconstructionObjective", "Calibrated",
           "TrainRecord", "train_model", "parse_options", "predict_batched", "val_subset", "weighted_bce",
           "logit", "CHECKPOINT"]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
#: log-variance given to the stage-1 losses for a point logit (σ² = e^-60: κ = μ in float32)
POINT_LOG_VAR = -60.0


class TrainOptions(BaseModel):
    """Settings of :func:`train_model` (every backend of the zoo accepts these as options).

    ``epochs`` applies without an ``imbalance`` schedule; with one, the phases' epochs run.
    ``batches_per_epoch`` batches of ``batch_size`` events make an epoch (``None``: one
    pass over the training events). ``lr`` / ``weight_decay`` are Adam's; gradients are
    clipped to norm ``grad_clip``. ``pos_weight`` multiplies the loss of signal events.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=8, ge=1)
    imbalance: list[ImbalancePhaseConfig] | None = None
    batch_size: int = Field(default=1024, ge=2)
    batches_per_epoch: int | None = Field(default=100, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float | None = Field(default=5.0, gt=0)
    loss: DenoiseLossConfig = Field(default_factory=DenoiseLossConfig)
    pos_weight: float = Field(default=1.0, gt=0)
    mixup: MixupConfig = Field(default_factory=MixupConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=lambda: EarlyStoppingConfig(patience=3))
    val_max_events: int = Field(default=50_000, ge=1)
    tensorboard: bool = True
    checkpoint: bool = True
    progress: bool = False

    def schedule(self) -> Schedule:
        if self.imbalance:
            return Schedule([Phase(p.epochs, p.positive_ratio, p.max_reuse) for p in self.imbalance])
        return Schedule([Phase(self.epochs)])


def parse_options(model: type[BaseModel], options: dict[str, Any], what: str) -> Any:
    """Validate ``options`` against the pydantic ``model``; one-line :class:`InputError` naming ``what``."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        raise InputError(f"{what} options: " + format_validation_error(exc)) from None


def logit(p: float) -> float:
    """log(p / (1 - p)), p clipped to [1e-12, 1 - 1e-12]."""
    p = min(max(float(p), 1e-12), 1.0 - 1e-12)
    return math.log(p / (1.0 - p))


class Calibrated(torch.nn.Module):
    """A logit network plus the ``logit_offset`` buffer that restores the data prior.

    ``forward`` gives the raw (training-prior) logit; :meth:`calibrated` adds the offset.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("logit_offset", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(-1)

    def calibrated(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x) + self.logit_offset


def weighted_bce(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> float:
    """Weighted mean binary cross-entropy (nats per event) of ``logits`` against labels ``y``."""
    per = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    if w is None:
        return float(per.mean())
    return float((per * w).sum() / w.sum())


@torch.no_grad()
def predict_batched(fn: Any, x: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    """``fn`` applied to ``x`` in slices of ``batch`` rows, concatenated (no gradients)."""
    if len(x) == 0:
        return fn(x[:0])
    return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


def val_subset(y: np.ndarray, max_events: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of all signal events plus ≤ ``max_events`` background, and weights (background: 1/fraction)."""
    y = np.asarray(y)
    pos = np.flatnonzero(y >= 0.5)
    neg = np.flatnonzero(y < 0.5)
    w = np.ones(len(y), np.float32)
    if len(neg) > max_events:
        frac = max_events / len(neg)
        neg = np.sort(rng.choice(neg, max_events, replace=False))
        w[neg] = 1.0 / frac
    idx = np.sort(np.concatenate([pos, neg]))
    return idx, w[idx]


class Objective(Protocol):
    """How a batch becomes a loss, and how a model is validated."""

    #: whether the trainer maintains ``model.logit_offset`` (prior-shift calibration)
    calibrates: bool

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_prior: float,
             rng: np.random.Generator) -> torch.Tensor:
        """Scalar training loss of a batch (``x`` (B, d) normalised features, ``y`` (B,) labels in [0, 1])."""
        ...

    def evaluate(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
                 ) -> dict[str, float]:
        """Validation metrics; must hold ``val_loss`` (lower is better)."""
        ...


class ClassifierObjective:
    """A stage-1 loss on the model's raw logit, signal events weighted by ``pos_weight``.

    With ``pos_weight`` w ≠ 1 the batch loss is ``(w n₊ L₊ + n₋ L₋) / (w n₊ + n₋)``, where
    L₊ / L₋ are the loss means over the batch's signal (y ≥ ½) and background events.
    """

    calibrates = True

    def __init__(self, loss: DenoiseLossConfig | None = None, pos_weight: float = 1.0) -> None:
        loss = loss or DenoiseLossConfig()
        self.loss_name = loss.name
        self.loss_params = dict(loss.params)
        self.fn = get_loss(loss.name, **loss.params)
        self.pos_weight = float(pos_weight)

    def shift(self, batch_prior: float) -> float:
        """Logit adjustment that ``logit_adjusted`` added while training (0 for other losses)."""
        if self.loss_name != "logit_adjusted":
            return 0.0
        prior = self.loss_params.get("prior")
        return float(self.loss_params.get("tau", 1.0)) * logit(prior if prior is not None else batch_prior)

    def _mean(self, mu: torch.Tensor, y: torch.Tensor, batch_prior: float) -> torch.Tensor:
        return self.fn(mu, torch.full_like(mu, POINT_LOG_VAR), y, batch_prior=batch_prior)

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_prior: float,
             rng: np.random.Generator) -> torch.Tensor:
        mu = model(x)
        if self.pos_weight == 1.0:
            return self._mean(mu, y, batch_prior)
        pos = y >= 0.5
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            return self._mean(mu, y, batch_prior)
        lp = self._mean(mu[pos], y[pos], batch_prior)
        ln = self._mean(mu[~pos], y[~pos], batch_prior)
        return (self.pos_weight * n_pos * lp + n_neg * ln) / (self.pos_weight * n_pos + n_neg)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
                 ) -> dict[str, float]:
        z = predict_batched(model.calibrated, x)
        out = {"val_loss": weighted_bce(z, y, w)}
        yb = y.numpy() >= 0.5
        if yb.any() and not yb.all():
            from sklearn.metrics import average_precision_score

            out["val_pr_auc"] = float(average_precision_score(yb, z.numpy(), sample_weight=w.numpy()))
        return out


class ReconstructionObjective:
    """Mean of ``model.event_loss(x)`` (per-event loss, e.g. reconstruction error or negative ELBO)."""

    calibrates = False

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_prior: float,
             rng: np.random.Generator) -> torch.Tensor:
        return model.event_loss(x).mean()

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
                 ) -> dict[str, float]:
        s = predict_batched(model.event_loss, x)
        bkg = y < 0.5
        out = {"val_loss": float((s[bkg] * w[bkg]).sum() / w[bkg].sum()) if bkg.any() else float(s.mean())}
        yb = y.numpy() >= 0.5
        if yb.any() and not yb.all():
            from sklearn.metrics import roc_auc_score

            out["val_roc_auc"] = float(roc_auc_score(yb, s.numpy(), sample_weight=w.numpy()))
        return out


#: What :func:`train_model` did (per-epoch ``history`` rows with ``epoch``, ``phase``, ``train_loss``,
#: ``val_loss``, ``batch_prior``, ``logit_offset``, ``positives_seen``, ``wall_s`` …), see :class:`TrainState`.
TrainRecord = TrainState


def _fingerprint(x: torch.Tensor, y: np.ndarray, options: TrainOptions, seed: int, tag: str,
                 model: torch.nn.Module) -> str:
    head = x[: min(len(x), 256)].numpy().tobytes()
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    return json.dumps({"n": int(len(x)), "d": int(x.shape[1]), "k": float(np.sum(y)), "crc": zlib.crc32(head),
                       "options": options.model_dump_json(exclude={"progress", "tensorboard"}), "seed": seed,
                       "tag": tag, "shapes": shapes})


def train_model(model: torch.nn.Module, objective: Objective, x: torch.Tensor, y: np.ndarray, *,
                options: TrainOptions, seed: int = 0, x_val: torch.Tensor | None = None,
                y_val: np.ndarray | None = None, n_theta: int = 0, workdir: Path | None = None,
                tag: str = "fit", stop_after_epochs: int | None = None) -> TrainRecord:
    """Train ``model`` in place on normalised features ``x`` (n, d) float32 and labels ``y`` (n,).

    The epoch loop, early stopping, checkpoints and resume are :class:`rarefy.nn.trainer.Trainer`'s;
    this function supplies the batches (imbalance schedule, mixup), the objective's loss and
    validation, and the prior-shift calibration.

    Parameters
    ----------
    model:
        The network; for a :class:`ClassifierObjective` a :class:`Calibrated`.
    objective:
        Turns batches into losses and validates (see :class:`Objective`).
    x, y:
        Training events (features normalised by the caller) and labels (0/1).
    options:
        :class:`TrainOptions`.
    seed:
        Seeds the batches and the torch randomness of training (with ``tag``); the caller
        seeds the initial weights.
    x_val, y_val:
        Validation events (None: no early stopping; the last epoch is kept).
    n_theta:
        Leading θ columns of ``x``: mixup mixes the other columns only.
    workdir:
        Folder for ``checkpoint.pt`` (each epoch; a later call resumes from it), ``history.json``
        and ``tensorboard/``. None: nothing is written.
    tag:
        Names this training (separate RNG streams for e.g. pretraining and fitting).
    stop_after_epochs:
        Return after this many epochs in this call (the checkpoint stays; call again to go on).
    """
    y = np.asarray(y, dtype=np.float32)
    if len(x) != len(y):
        raise InputError(f"{len(x)} feature rows but {len(y)} labels")
    if len(x) == 0:
        raise InputError("no training events")
    if not torch.isfinite(x).all():
        raise InputError("training features hold NaN or infinite values")
    schedule = options.schedule()
    mix = (Mixup(options.mixup.fraction, options.mixup.distribution, options.mixup.a, options.mixup.b)
           if options.mixup.enabled else None)
    tag_code = zlib.crc32(tag.encode())
    pi_data = (float(y.sum()) + 0.5) / (len(y) + 1.0)
    batches = _EpochBatches(x, y, schedule, options, mix, n_theta, pi_data, [seed, tag_code])

    validate = None
    has_val = x_val is not None and y_val is not None and len(y_val) > 0
    if has_val:
        vi, vw = val_subset(np.asarray(y_val), options.val_max_events, np.random.default_rng([seed, tag_code, 1 << 20]))
        xv, yv, wv = x_val[torch.from_numpy(vi)], torch.as_tensor(np.asarray(y_val)[vi], dtype=torch.float32), \
            torch.from_numpy(vw)

        def validate(m: torch.nn.Module) -> dict[str, float]:
            return objective.evaluate(m, xv, yv, wv)
    es = options.early_stopping

    def step(m: torch.nn.Module, b: _Batch) -> torch.Tensor:
        return objective.loss(m, b.x, b.y, batch_prior=b.prior, rng=b.rng)

    def end_epoch(epoch: int, row: dict[str, Any]) -> None:
        row.update(batches.stats, phase=schedule.at(epoch)[0])
        if objective.calibrates:
            w = options.pos_weight
            pb = row["batch_prior"]
            p_eff = pb * w / (pb * w + 1.0 - pb)
            shift = objective.shift(pb) if hasattr(objective, "shift") else 0.0
            model.logit_offset.fill_(logit(pi_data) - logit(p_eff) + shift)
            row["logit_offset"] = float(model.logit_offset)

    trainer: Trainer[_Batch] = Trainer(
        model, lambda p: torch.optim.Adam(p, lr=options.lr, weight_decay=options.weight_decay), step,
        epochs=schedule.total_epochs, validate=validate,
        early_stopping=EarlyStopping(es.patience if (es.enabled and has_val) else None, es.min_delta),
        grad_clip=options.grad_clip, seed=int(np.random.SeedSequence([seed, tag_code]).generate_state(1)[0]),
        checkpoint=workdir / CHECKPOINT if (workdir is not None and options.checkpoint) else None,
        fingerprint=_fingerprint(x, y, options, seed, tag, model),
        tensorboard=workdir / "tensorboard" if (workdir is not None and options.tensorboard) else None,
        end_epoch=end_epoch, batch_weight=lambda b: len(b.y), progress=options.progress, name=tag)
    state = trainer.fit(batches, stop_after_epochs=stop_after_epochs)
    if state.finished and workdir is not None:
        from ..io import atomic_path

        with atomic_path(workdir / "history.json") as tmp:
            tmp.write_text(json.dumps(state.history, indent=1, default=float))
    return state


@dataclass
class _Batch:
    """Features ``x`` (B, d), labels ``y`` (B,), expected signal fraction ``prior``, the epoch's ``rng``."""

    x: torch.Tensor
    y: torch.Tensor
    prior: float
    rng: np.random.Generator


class _EpochBatches:
    """``self(epoch)``: the epoch's batches, all randomness from ``default_rng([*key, epoch])``;
    ``stats``: the last epoch's counts, filled while its batches are drawn.

    An epoch is ``batches_per_epoch`` batches of regular events drawn with replacement
    (None: one shuffled pass), each topped up with the phase's pool positives, then mixup.
    """

    def __init__(self, x: torch.Tensor, y: np.ndarray, schedule: Schedule, options: TrainOptions, mix: Mixup | None,
                 n_theta: int, pi_data: float, key: list[int]) -> None:
        self.x, self.y = x, torch.from_numpy(y)
        self.pool = np.flatnonzero(y >= 0.5)
        self.schedule, self.options, self.mix, self.n_theta, self.pi_data = schedule, options, mix, n_theta, pi_data
        self.key = key
        self.stats: dict[str, Any] = {}

    def __call__(self, epoch: int) -> Iterator[_Batch]:
        rng = np.random.default_rng([*self.key, epoch])
        phase = self.schedule.at(epoch)[1]
        bs, pool, nt = self.options.batch_size, self.pool, self.n_theta
        b_pool = phase.n_pool(bs) if len(pool) else 0
        stream = PositiveStream(len(pool), phase.max_reuse, rng) if b_pool else None
        st = self.stats = {"positives_seen": 0, "samples": 0, "batch_prior": math.nan, "mixed": 0}
        tot_prior = 0.0
        for reg in regular_batches(np.ones(len(self.y), bool), bs - b_pool, rng, self.options.batches_per_epoch):
            idx = torch.from_numpy(reg)
            n_pool = 0
            if stream is not None:
                pick = stream.take(b_pool)
                n_pool = len(pick)
                if n_pool:
                    idx = torch.cat([idx, torch.from_numpy(pool[pick])])
            xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            st["positives_seen"] += int((yb >= 0.5).sum())
            lam_sum = 0.0
            if self.mix is not None:
                src = torch.arange(len(yb))
                y_mass = float(yb.sum())
                phi, yb, src, k = self.mix(xb[:, nt:], yb, src, rng)
                lam_sum = float(yb.sum()) - y_mass
                xb = torch.cat([xb[src, :nt], phi], dim=1)
                st["mixed"] += k
            prior = (self.pi_data * len(reg) + n_pool + lam_sum) / len(yb)
            st["samples"] += len(yb)
            tot_prior += prior * len(yb)
            st["batch_prior"] = tot_prior / st["samples"]
            yield _Batch(xb, yb, prior, rng)
