"""Training loop of the event-level denoiser, with resume, early stopping and logging.

:func:`train` takes a data source (in-memory :class:`EventData` or a chunk source, see
:mod:`rarefy.denoise.data`) and a :class:`rarefy.config.DenoiseConfig`, and

1. **sets up** (before any training, so bad input fails fast): reads the runs, splits
   them train / validation / test **by run** (:func:`split_runs`, deterministic for the
   seed), fits the φ normalisation on the training runs, draws a per-run context bank
   (:func:`rarefy.denoise.context.draw_bank`; bank events are never targets), collects
   the positive pool (training signal events outside the banks) and the validation
   targets;
2. **trains** for the schedule's epochs: batches of regular targets plus pool positives
   (:mod:`rarefy.nn.sampling`), optional mixup, a context subset per run from its
   bank, the configured loss (:mod:`rarefy.nn.losses`), Adam;
3. after each epoch **validates** (loss, PR-AUC, ECE on calibrated probabilities); the
   epoch loop is :class:`rarefy.nn.trainer.Trainer`'s (learning-rate schedule, TensorBoard
   when available, an **atomic checkpoint** of model, optimiser, scheduler, generator
   state, epoch, best state and history). Calling :func:`train` again with the same
   ``out`` resumes after the last finished epoch; the result equals that of an
   uninterrupted run (all randomness of epoch ``e`` comes from
   ``numpy.random.default_rng([seed, 2, e])``; the initial weights from ``seed``, drawn
   under :func:`rarefy.nn.seeding.seeded`, which leaves the global RNG alone);
4. **early stopping** on the validation loss restores the best weights;
5. writes ``model.pt`` (weights + normaliser + settings), ``history.json``, ``split.json``.

**Calibration.** Oversampling and logit adjustment shift the training prior. After
each epoch the trainer sets the model's ``logit_offset`` to
``logit(π_data) - logit(π_batch) + shift``, where ``π_data`` is the signal fraction of
the training targets ((k + ½)/(n + 1)), ``π_batch`` the *expected* signal fraction of
that epoch's batches (regular events at ``π_data``, pool positives at 1, mixtures at
λ; averaged over the epoch's batches), and ``shift`` the logit adjustment the loss
added (``τ·logit(π)``, with π the configured prior or the batch's expected fraction,
else 0). Without oversampling or mixup the offset is 0. This is the
prior-shift correction (Saerens et al. 2002), exact for proper losses; for focal loss it
is approximate. The validation loss is the configured loss (``bce`` for
``logit_adjusted``) on calibrated outputs.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from ..io import atomic_path, write_json
from ..config import DenoiseConfig
from ..errors import InputError
from ..space import DesignSpace
from .context import draw_bank
from .data import Source, iter_chunks, split_runs
from ..nn.losses import Loss, get_loss
from .metrics import expected_calibration_error, pr_auc
from ..nn.mixup import Mixup
from .models import CNP, build_model
from .normalize import Normalizer, PhiMoments
from ..nn.checkpoint import load_checkpoint
from ..nn.early_stopping import EarlyStopping
from ..nn.sampling import Phase, PositiveStream, Schedule, regular_batches
from ..nn.schedule import lr_factor
from ..nn.seeding import seeded
from ..nn.trainer import Trainer, TrainState

__all__ = ["train", "TrainResult", "denoise_config", "resolve_device", "load_model", "save_model", "model_from_config",
           "epoch_lr"]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
#: the files :func:`train` writes into its ``out`` folder
OUTPUT_FILES = (CHECKPOINT, MODEL, "history.json", "split.json")
_BANK_TAG = 1
_SCORE_BATCH = 16384


def denoise_config(config: DenoiseConfig | Mapping[str, Any] | None) -> DenoiseConfig:
    """A validated :class:`DenoiseConfig` from a config object, a dict or None (defaults)."""
    if config is None:
        return DenoiseConfig()
    if isinstance(config, DenoiseConfig):
        return config
    from pydantic import ValidationError

    from ..config import format_validation_error

    try:
        return DenoiseConfig.model_validate(dict(config))
    except ValidationError as exc:
        raise InputError("denoise: " + format_validation_error(exc)) from None


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but no CUDA device is available")
    return torch.device(device)


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def model_from_config(cfg: DenoiseConfig, dim_theta: int, dim_phi: int) -> CNP:
    """The untrained model ``cfg.model`` describes, for ``dim_theta`` θ and ``dim_phi`` φ features."""
    m = cfg.model
    return build_model(m.kind, dim_theta, dim_phi, m.encoder, m.decoder, m.rep_dim, m.heads, m.rank, m.design_widths)


def epoch_lr(cfg: DenoiseConfig, epoch: int, total: int) -> float:
    """Learning rate of (0-based) ``epoch`` of ``total``: ``lr``, or its cosine annealing (``lr_schedule``)."""
    return cfg.lr * lr_factor(cfg.lr_schedule, epoch, total)


def _schedule(cfg: DenoiseConfig) -> Schedule:
    if cfg.imbalance:
        return Schedule([Phase(p.epochs, p.positive_ratio, p.max_reuse) for p in cfg.imbalance])
    return Schedule([Phase(cfg.epochs or 20)])


# --------------------------------------------------------------------- set-up
@dataclass
class _Runs:
    """Run-level metadata gathered in the first pass over the source."""

    ids: list[str]
    theta: np.ndarray
    sizes: np.ndarray
    k: np.ndarray
    fidelity: list[str | None]
    theta_names: list[str]
    phi_names: list[str]
    code: dict[str, int] = field(default_factory=dict)


def _scan(source: Source) -> _Runs:
    ids: list[str] = []
    thetas, sizes, ks, fids = [], [], [], []
    names: tuple[list[str], list[str]] | None = None
    for chunk in iter_chunks(source):
        if names is None:
            names = (chunk.theta_names, chunk.phi_names)
        elif (chunk.theta_names, chunk.phi_names) != names:
            raise InputError(f"chunk θ/φ columns {chunk.theta_names}/{chunk.phi_names} differ from the first "
                             f"chunk's {names[0]}/{names[1]}", file=chunk.source)
        ids += chunk.run_ids
        thetas.append(chunk.theta)
        sizes.append(chunk.run_sizes)
        ks.append(chunk.run_k())
        fids += chunk.fidelity if chunk.fidelity is not None else [None] * chunk.n_runs
    if names is None:
        raise InputError("no events: the data source yielded nothing")
    if len(set(ids)) != len(ids):
        raise InputError("run ids repeat across chunks; a run must lie in a single chunk")
    runs = _Runs(ids, np.concatenate(thetas), np.concatenate(sizes), np.concatenate(ks), fids, *names)
    runs.code = {r: i for i, r in enumerate(ids)}
    return runs


@dataclass
class _Setup:
    runs: _Runs
    split: tuple[list[str], list[str], list[str]]
    role: np.ndarray            # (R,) 0 train, 1 val, 2 test, 3 unused
    normalizer: Normalizer
    theta_n: torch.Tensor       # (R, dθ)
    bank_local: np.ndarray      # (R, M) offsets within the run, -1 = none
    bank_x: torch.Tensor        # (R, M, dx)
    bank_y: torch.Tensor        # (R, M)
    bank_count: torch.Tensor    # (R,)
    pool_x: torch.Tensor        # (P, dx)
    pool_run: torch.Tensor      # (P,)
    val_x: torch.Tensor         # (V, dx)
    val_y: torch.Tensor         # (V,)
    val_run: torch.Tensor       # (V,)
    n_train_targets: int
    k_train_targets: float
    fingerprint: str


def _phi_log_mask(cfg: DenoiseConfig, moments: PhiMoments, names: list[str]) -> np.ndarray:
    """The φ columns to log-transform (``denoise.phi_log``), checked against the training data."""
    if cfg.phi_log == "none":
        return np.zeros(len(names), bool)
    if cfg.phi_log == "auto":
        return moments.log_mask()
    unknown = [c for c in cfg.phi_log if c not in names]
    if unknown:
        raise InputError(f"denoise.phi_log names {unknown}, which are not φ columns (φ: {', '.join(names)})",
                         column=str(unknown[0]))
    mask = np.array([n in set(cfg.phi_log) for n in names])
    bad = [n for n, m, pos in zip(names, mask, moments.positive) if m and not pos]
    if bad:
        raise InputError(f"denoise.phi_log: φ column {bad[0]!r} has values <= 0 in the training runs; "
                         "it cannot be log-transformed", column=bad[0])
    return mask


def _setup(source: Source, cfg: DenoiseConfig, seed: int, space: DesignSpace | None, device: torch.device,
           split: tuple[list[str], list[str], list[str]] | None = None) -> _Setup:
    runs = _scan(source)
    if split is None:
        train_ids, val_ids, test_ids = split_runs(runs.ids, cfg.split, seed)
    else:
        train_ids, val_ids, test_ids = (sorted(map(str, part)) for part in split)
        unknown = sorted(set(train_ids + val_ids + test_ids) - set(runs.ids))
        if unknown:
            raise InputError(f"the given split names run(s) {unknown[:5]} that are not in the data")
        if not train_ids:
            raise InputError("the given split has no training runs")
    role = np.full(len(runs.ids), 3, np.int8)  # 3: in no part of the split (unused)
    for r in train_ids:
        role[runs.code[r]] = 0
    for r in val_ids:
        role[runs.code[r]] = 1
    for r in test_ids:
        role[runs.code[r]] = 2
    if cfg.early_stopping.enabled and not val_ids:
        raise InputError(f"early stopping needs validation runs, but the split {cfg.split} of {len(runs.ids)} run(s) "
                         "leaves none; add runs or disable early_stopping")
    if space is not None:
        if list(space.names) != runs.theta_names:
            raise InputError(f"θ columns {runs.theta_names} do not match the design space's parameters {space.names}")
        lo, hi = space.bounds
    else:
        lo, hi = runs.theta.min(axis=0), runs.theta.max(axis=0)
    m_bank = cfg.context_size
    n_runs = len(runs.ids)
    d_phi = len(runs.phi_names)
    moments = PhiMoments(d_phi)
    bank_local = np.full((n_runs, m_bank), -1, np.int64)
    bank_phi = np.zeros((n_runs, m_bank, d_phi), np.float32)
    bank_y = np.zeros((n_runs, m_bank), np.float32)
    pool_phi, pool_run, val_phi, val_y, val_run = [], [], [], [], []
    n_train = 0
    k_train = 0.0
    for chunk in iter_chunks(source):
        codes = np.array([runs.code[r] for r in chunk.run_ids])
        bank = draw_bank(chunk.run_starts, chunk.run_ids, m_bank, seed, _BANK_TAG)
        is_bank = np.zeros(chunk.n, bool)
        is_bank[bank.flat()] = True
        for j, c in enumerate(codes):
            lo_j, hi_j = int(chunk.run_starts[j]), int(chunk.run_starts[j + 1])
            cnt = int(bank.count[j])
            bank_local[c, :cnt] = bank.index[j, :cnt] - lo_j
            bank_phi[c, :cnt] = chunk.phi[bank.index[j, :cnt]]
            bank_y[c, :cnt] = chunk.y[bank.index[j, :cnt]]
            tgt = ~is_bank[lo_j:hi_j]
            if role[c] == 0:
                moments.update(chunk.phi[lo_j:hi_j])
                pos = np.flatnonzero(tgt & (chunk.y[lo_j:hi_j] == 1)) + lo_j
                pool_phi.append(chunk.phi[pos])
                pool_run.append(np.full(len(pos), c))
                n_train += int(tgt.sum())
                k_train += float(chunk.y[lo_j:hi_j][tgt].sum())
            elif role[c] == 1:
                idx = np.flatnonzero(tgt) + lo_j
                cap = cfg.val_events_per_run
                if cap is not None and len(idx) > cap:
                    idx = np.sort(np.random.default_rng([seed, 3, c]).choice(idx, cap, replace=False))
                val_phi.append(chunk.phi[idx])
                val_y.append(chunk.y[idx])
                val_run.append(np.full(len(idx), c))
    if n_train == 0:
        raise InputError("no training events (every training run is used up by its context bank)")
    log_mask = _phi_log_mask(cfg, moments, runs.phi_names)
    mean, std = moments.mean_std(log_mask)
    norm = Normalizer(lo, hi, mean, std, log_mask)
    if log_mask.any():
        log.info("log-transformed φ columns: %s", [n for n, m in zip(runs.phi_names, log_mask) if m])
    theta_n = norm.theta(runs.theta)

    def x_of(phi: np.ndarray, run: np.ndarray) -> torch.Tensor:
        return torch.cat([theta_n[torch.as_tensor(run, dtype=torch.long)], norm.phi(phi)], dim=-1)

    bank_x = torch.cat([theta_n[:, None, :].expand(-1, m_bank, -1), norm.phi(bank_phi)], dim=-1)
    cat = lambda parts, dt, shape: np.concatenate(parts).astype(dt) if parts else np.zeros(shape, dt)  # noqa: E731
    p_phi, p_run = cat(pool_phi, np.float32, (0, d_phi)), cat(pool_run, np.int64, (0,))
    v_phi, v_y, v_run = cat(val_phi, np.float32, (0, d_phi)), cat(val_y, np.float32, (0,)), cat(val_run, np.int64, (0,))
    fp = json.dumps({"runs": runs.ids, "sizes": runs.sizes.tolist(), "k": runs.k.tolist(), "phi": runs.phi_names})
    return _Setup(
        runs=runs, split=(train_ids, val_ids, test_ids), role=role, normalizer=norm,
        theta_n=theta_n.to(device), bank_local=bank_local, bank_x=bank_x.to(device),
        bank_y=torch.as_tensor(bank_y, device=device),
        bank_count=torch.as_tensor((bank_local >= 0).sum(axis=1), device=device),
        pool_x=x_of(p_phi, p_run).to(device), pool_run=torch.as_tensor(p_run, device=device),
        val_x=x_of(v_phi, v_run).to(device), val_y=torch.as_tensor(v_y, device=device),
        val_run=torch.as_tensor(v_run, device=device),
        n_train_targets=n_train, k_train_targets=k_train, fingerprint=fp,
    )


# -------------------------------------------------------------- batch pieces
def _context(s: _Setup, groups: torch.Tensor, m: int, rng: np.random.Generator
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random subset (with replacement) of ``m`` bank events for each run in ``groups``."""
    count = s.bank_count[groups]
    sel = torch.as_tensor((rng.random((len(groups), m)) * count.cpu().numpy()[:, None]).astype(np.int64),
                          device=groups.device)
    ctx_x = s.bank_x[groups[:, None], sel]
    ctx_y = s.bank_y[groups[:, None], sel]
    ctx_mask = (count > 0)[:, None].expand(-1, m)
    return ctx_x, ctx_y, ctx_mask


def _full_bank_reps(model: CNP, s: _Setup, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    m = s.bank_x.shape[1]
    return s.bank_x[groups], s.bank_y[groups], torch.arange(m, device=groups.device)[None, :] < s.bank_count[groups][:, None]


@torch.no_grad()
def _validate(model: CNP, s: _Setup, val_loss: Loss) -> dict[str, float]:
    if not len(s.val_y):
        return {"val_loss": float("nan"), "val_pr_auc": float("nan"), "val_ece": float("nan")}
    model.eval()
    groups, inv = torch.unique(s.val_run, return_inverse=True)
    ctx = _full_bank_reps(model, s, groups)
    mus, lvs = [], []
    for i in range(0, len(s.val_y), _SCORE_BATCH):
        mu, lv = model.predict(*ctx, s.val_x[i:i + _SCORE_BATCH], inv[i:i + _SCORE_BATCH])
        mus.append(mu)
        lvs.append(lv)
    mu, lv = torch.cat(mus), torch.cat(lvs)
    from ..nn.losses import predictive

    p = predictive(mu, lv)[0].cpu().numpy()
    y = s.val_y.cpu().numpy()
    model.train()
    return {"val_loss": float(val_loss(mu, lv, s.val_y)), "val_pr_auc": pr_auc(y, p),
            "val_ece": expected_calibration_error(y, p)}


# ------------------------------------------------------------------- result
@dataclass(kw_only=True)
class TrainResult(TrainState):
    """A trained denoiser and its training record (:class:`rarefy.nn.trainer.TrainState`).

    ``history``: one dict per epoch (``epoch``, ``phase``, ``train_loss``, ``val_loss``,
    ``val_pr_auc``, ``val_ece``, ``positives_seen``, ``batch_prior``, ``logit_offset``,
    ``lr``, ``samples``, ``wall_s`` (seconds of the training pass)). ``split``: (train, val, test) run ids.
    """

    model: CNP
    normalizer: Normalizer
    split: tuple[list[str], list[str], list[str]]
    config: DenoiseConfig
    seed: int
    out: Path | None = None


def save_model(path: str | os.PathLike[str], model: CNP, normalizer: Normalizer, config: DenoiseConfig, seed: int) -> Path:
    """Write weights, normaliser and settings to ``path`` atomically (``torch.save`` of state dicts)."""
    path = Path(path)
    payload = {"model": model.state_dict(), "normalizer": normalizer.state_dict(),
               "config": config.model_dump_json(), "seed": seed,
               "dims": [model.dim_theta, model.dim_phi]}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_model(path: str | os.PathLike[str]) -> tuple[CNP, Normalizer, DenoiseConfig]:
    """Read what :func:`save_model` wrote (a file, or a training ``out`` folder holding ``model.pt``)."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL
    if not path.exists():
        raise InputError("denoiser model not found", file=path)
    payload = load_checkpoint(path)
    try:
        cfg = DenoiseConfig.model_validate_json(payload["config"])
        model = model_from_config(cfg, *payload["dims"])
        model.load_state_dict(payload["model"])
        normalizer = Normalizer.from_state_dict(payload["normalizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a foreign or edited file
        raise InputError(f"not a saved denoiser: {type(exc).__name__}: {exc}", file=path) from None
    model.eval()
    return model, normalizer, cfg




# --------------------------------------------------------------------- train
def train(source: Source, config: DenoiseConfig | Mapping[str, Any] | None = None, *,
          out: str | os.PathLike[str] | None = None, space: DesignSpace | None = None, seed: int | None = None,
          stop_after_epochs: int | None = None, on_epoch: Callable[[dict[str, Any]], None] | None = None,
          split: tuple[Sequence[str], Sequence[str], Sequence[str]] | None = None) -> TrainResult:
    """Train a denoiser model on ``source``; resume from ``out/checkpoint.pt`` when present.

    Parameters
    ----------
    source:
        :class:`EventData` (in memory) or a chunk source (streaming), see :mod:`rarefy.denoise.data`.
    config:
        :class:`rarefy.config.DenoiseConfig` (or a dict of its fields; None: defaults).
    out:
        Folder for ``checkpoint.pt`` (every epoch), ``model.pt``, ``history.json``,
        ``split.json`` and ``tensorboard/``. None: nothing is written (no resume).
    space:
        Design space whose bounds normalise θ (default: the θ range of the data).
    seed:
        Overrides ``config.seed`` (default 0). Determines split, banks, batches, init.
    stop_after_epochs:
        Return after this many epochs *in this call* (the checkpoint stays; call again to
        go on), e.g. to fit a job into a wall-clock slot.
    on_epoch:
        Called with each epoch's history row after its checkpoint is written.
    split:
        (train, val, test) run ids to use instead of ``config.split`` (runs in none of
        them are not used; e.g. the model zoo's bench split).
    """
    cfg = denoise_config(config)
    seed = int(seed if seed is not None else (cfg.seed if cfg.seed is not None else 0))
    device = resolve_device(cfg.device)
    loss_fn = get_loss(cfg.loss.name, **cfg.loss.params)
    val_loss_fn = get_loss("bce") if cfg.loss.name == "logit_adjusted" else loss_fn
    schedule = _schedule(cfg)
    mix = Mixup(cfg.mixup.fraction, cfg.mixup.distribution, cfg.mixup.a, cfg.mixup.b) if cfg.mixup.enabled else None
    out_dir = Path(out) if out is not None else None

    s = _setup(source, cfg, seed, space, device, None if split is None else tuple(list(p) for p in split))
    if len(s.pool_run) == 0 and any(p.positive_ratio for p in schedule.phases):
        log.warning("no signal events in the training runs: positive oversampling has nothing to draw from")

    with seeded(seed):
        model = model_from_config(cfg, len(s.runs.theta_names), len(s.runs.phi_names)).to(device)
    pi_data = (s.k_train_targets + 0.5) / (s.n_train_targets + 1.0)
    first = schedule.phases[0]
    pool_share = first.n_pool(cfg.batch_size) / cfg.batch_size if len(s.pool_run) else 0.0
    model.init_prior(pi_data * (1.0 - pool_share) + pool_share)   # the first phase's batch prior
    epochs = _EpochBatches(s, cfg, source, schedule, seed, mix, device, pi_data)

    def step(m: torch.nn.Module, b: _Batch) -> torch.Tensor:
        mu, log_var = m(b.ctx_x, b.ctx_y, b.ctx_mask, b.x, b.inv)
        return loss_fn(mu, log_var, b.y, batch_prior=b.prior)

    def end_epoch(epoch: int, row: dict[str, Any]) -> None:
        row.update(epochs.stats)
        shift = 0.0
        if cfg.loss.name == "logit_adjusted":
            tau = float(cfg.loss.params.get("tau", 1.0))
            prior = cfg.loss.params.get("prior")
            shift = tau * _logit(prior if prior is not None else row["batch_prior"])
        offset = _logit(pi_data) - _logit(row["batch_prior"]) + shift
        model.logit_offset.fill_(offset)
        row.update(phase=schedule.at(epoch)[0], logit_offset=offset)

    def on_row(row: dict[str, Any]) -> None:
        log.info("epoch %d phase %d: train %.5g, val %.5g, PR-AUC %.3g, ECE %.3g, positives %d",
                 row["epoch"], row["phase"], row["train_loss"], row["val_loss"], row["val_pr_auc"], row["val_ece"],
                 row["positives_seen"])
        if on_epoch is not None:
            on_epoch(row)

    es = cfg.early_stopping
    fingerprint = json.dumps({"config": cfg.model_dump_json(exclude={"progress", "tensorboard"}),
                              "data": s.fingerprint, "seed": seed})
    trainer: Trainer[_Batch] = Trainer(
        model, lambda p: torch.optim.Adam(p, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True), step,
        epochs=schedule.total_epochs, validate=lambda m: _validate(m, s, val_loss_fn),
        early_stopping=EarlyStopping(es.patience if es.enabled else None, es.min_delta),
        lr_schedule=cfg.lr_schedule, seed=seed,
        checkpoint=out_dir / CHECKPOINT if (out_dir is not None and cfg.checkpoint) else None,
        fingerprint=fingerprint,
        tensorboard=out_dir / "tensorboard" if (out_dir is not None and cfg.tensorboard) else None,
        end_epoch=end_epoch, on_epoch=on_row, batch_weight=lambda b: len(b.y), progress=cfg.progress,
        name="denoiser",
        extra_state=lambda st: {"phase": schedule.at(min(st.epochs_run, schedule.total_epochs - 1))[0]})
    state = trainer.fit(epochs, stop_after_epochs=stop_after_epochs)

    result = TrainResult(**{f.name: getattr(state, f.name) for f in fields(state)}, model=model,
                         normalizer=s.normalizer, split=s.split, config=cfg, seed=seed, out=out_dir)
    if out_dir is not None and state.finished:
        save_model(out_dir / MODEL, model, s.normalizer, cfg, seed)
        write_json(out_dir / OUTPUT_FILES[2], state.history)
        write_json(out_dir / OUTPUT_FILES[3], {"train": s.split[0], "val": s.split[1], "test": s.split[2]})
    return result


@dataclass
class _Batch:
    """One training batch: targets ``x`` (B, dx), ``y`` (B,), their run index ``inv`` into the
    batch's runs, the runs' context (``ctx_x`` (G, m, dx), ``ctx_y``, ``ctx_mask`` (G, m)) and the
    batch's expected signal fraction ``prior``."""

    x: torch.Tensor
    y: torch.Tensor
    inv: torch.Tensor
    ctx_x: torch.Tensor
    ctx_y: torch.Tensor
    ctx_mask: torch.Tensor
    prior: float


class _EpochBatches:
    """``self(epoch)``: the epoch's batches (all randomness from ``default_rng([seed, 2, epoch])``);
    ``stats``: the last epoch's counts, filled while its batches are drawn."""

    def __init__(self, s: _Setup, cfg: DenoiseConfig, source: Source, schedule: Schedule, seed: int,
                 mix: Mixup | None, device: torch.device, pi_data: float) -> None:
        self.s, self.cfg, self.source, self.schedule, self.seed = s, cfg, source, schedule, seed
        self.mix, self.device, self.pi_data = mix, device, pi_data
        self.stats: dict[str, Any] = {}

    def __call__(self, epoch: int) -> Iterator[_Batch]:
        s, cfg, device, mix, pi_data = self.s, self.cfg, self.device, self.mix, self.pi_data
        rng = np.random.default_rng([self.seed, 2, epoch])
        phase = self.schedule.at(epoch)[1]
        b_pool = phase.n_pool(cfg.batch_size) if len(s.pool_run) else 0
        b_reg = cfg.batch_size - b_pool
        stream = PositiveStream(len(s.pool_run), phase.max_reuse, rng) if b_pool else None
        m_bank = s.bank_x.shape[1]
        st = self.stats = {"positives_seen": 0, "samples": 0, "batch_prior": math.nan, "mixed": 0, "pool_draws": 0}
        tot_y = 0.0
        for chunk in iter_chunks(self.source):
            codes = np.array([s.runs.code[r] for r in chunk.run_ids])
            eligible = np.zeros(chunk.n, bool)
            for j, c in enumerate(codes):
                if s.role[c] == 0:
                    lo, hi = int(chunk.run_starts[j]), int(chunk.run_starts[j + 1])
                    eligible[lo:hi] = True
                    bl = s.bank_local[c]
                    eligible[lo + bl[bl >= 0]] = False
            n_elig = int(eligible.sum())
            if n_elig == 0:
                continue
            # batches per chunk: a full pass, or the epoch cap shared out by chunk size
            n_batches = None
            if cfg.batches_per_epoch is not None:
                n_batches = max(1, int(round(cfg.batches_per_epoch * n_elig / s.n_train_targets)))
            phi_t = torch.from_numpy(chunk.phi)
            y_t = torch.from_numpy(chunk.y)
            codes_t = torch.as_tensor(codes)
            for reg in regular_batches(eligible, b_reg, rng, n_batches):
                reg_t = torch.from_numpy(reg)
                run = codes_t[torch.from_numpy(chunk.run_of(reg))].to(device)
                phi_n = s.normalizer.phi(phi_t.index_select(0, reg_t)).to(device)
                x = torch.cat([s.theta_n.index_select(0, run), phi_n], dim=-1)
                y = y_t.index_select(0, reg_t).to(device)
                n_reg, n_pool, lam_sum = len(reg), 0, 0.0
                if stream is not None:
                    pick = torch.as_tensor(stream.take(b_pool), device=device)
                    n_pool = len(pick)
                    if len(pick):
                        x = torch.cat([x, s.pool_x.index_select(0, pick)])
                        y = torch.cat([y, torch.ones(len(pick), device=device)])
                        run = torch.cat([run, s.pool_run.index_select(0, pick)])
                st["positives_seen"] += int((y == 1).sum())
                if mix is not None:
                    dth = s.theta_n.shape[1]
                    y_mass = float(y.sum())
                    phi_mixed, y, run, k = mix(x[:, dth:], y, run, rng)
                    lam_sum = float(y.sum()) - y_mass
                    x = torch.cat([s.theta_n.index_select(0, run), phi_mixed], dim=-1)
                    st["mixed"] += k
                groups, inv = torch.unique(run, return_inverse=True)
                m = int(min(m_bank, max(cfg.min_context, cfg.context_per_batch // len(groups))))
                ctx_x, ctx_y, ctx_mask = _context(s, groups, m, rng)
                # expected signal fraction of this batch (regular events carry the data prior)
                prior = (pi_data * n_reg + n_pool + lam_sum) / len(y)
                st["samples"] += len(y)
                tot_y += prior * len(y)
                st["batch_prior"] = tot_y / st["samples"]
                st["pool_draws"] = 0 if stream is None else stream.used
                yield _Batch(x, y, inv, ctx_x, ctx_y, ctx_mask, prior)
        if st["samples"] == 0:
            raise InputError("no training batches: the training runs hold no targets")
