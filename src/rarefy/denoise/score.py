"""Scoring: per-event calibrated signal probabilities with leakage-free contexts.

Events are dealt into ``folds`` folds at random (independent of labels); the targets of
fold ``k`` are scored from a per-run context bank drawn from the *other* folds only
(:func:`rarefy.denoise.context.fold_banks`), so no event's label reaches its own score.
Per fold, each run's context is encoded once; targets are then decoded in large batches
by integer indexing (decoder-only cost per event).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .context import fold_banks
from .data import EventData, Source, iter_chunks
from ..nn.losses import predictive
from .models import CNP
from .normalize import Normalizer

__all__ = ["Scores", "score", "average_scores"]

_RUN_BLOCK = 256


@dataclass
class Scores:
    """Per-event scores and the run structure they belong to (events sorted by run).

    ``p``: calibrated signal probability p̄; ``sigma``: its 1σ σ_p (see
    :mod:`rarefy.denoise.models`); ``mu``/``log_var``: calibrated logit heads; ``y``: the
    observed outcomes; ``theta`` (R, dθ) per run; ``run_starts`` (R+1).
    """

    p: np.ndarray
    sigma: np.ndarray
    mu: np.ndarray
    log_var: np.ndarray
    y: np.ndarray
    run_starts: np.ndarray
    run_ids: list[str]
    theta: np.ndarray
    theta_names: list[str]
    fidelity: list[str] | None

    @property
    def n(self) -> int:
        return len(self.p)


def average_scores(members: list[Scores]) -> Scores:
    """The ensemble of several models' :class:`Scores` of the same events.

    ``p`` is the members' mean probability; ``sigma² = mean(σ_m²) + var(p_m)`` (law of total
    variance: each member's own uncertainty plus the members' disagreement, ddof 0);
    ``mu``/``log_var`` are the logit of ``p`` and the members' mean ``log_var``. One member
    is returned unchanged.
    """
    if not members:
        raise ValueError("average_scores needs at least one member")
    if len(members) == 1:
        return members[0]
    first = members[0]
    if any(m.n != first.n or not np.array_equal(m.run_starts, first.run_starts) for m in members):
        raise ValueError("ensemble members scored different events")
    ps = np.stack([m.p for m in members])
    p = ps.mean(axis=0)
    sigma = np.sqrt(np.mean(np.stack([m.sigma for m in members]) ** 2, axis=0) + ps.var(axis=0))
    pc = np.clip(p, 1e-30, 1 - 1e-7)
    return Scores(p=p.astype(first.p.dtype), sigma=sigma.astype(first.sigma.dtype),
                  mu=np.log(pc / (1 - pc)).astype(first.mu.dtype),
                  log_var=np.mean(np.stack([m.log_var for m in members]), axis=0).astype(first.log_var.dtype),
                  y=first.y, run_starts=first.run_starts, run_ids=first.run_ids, theta=first.theta,
                  theta_names=first.theta_names, fidelity=first.fidelity)


def _resolve(model: object, normalizer: Normalizer | None) -> tuple[CNP, Normalizer, int, int]:
    from .train import TrainResult, load_model

    if isinstance(model, TrainResult):
        return model.model, model.normalizer, model.config.context_size, model.config.score_folds
    if isinstance(model, (str, os.PathLike, Path)):
        m, norm, cfg = load_model(model)
        return m, norm, cfg.context_size, cfg.score_folds
    if isinstance(model, CNP):
        if normalizer is None:
            raise InputError("scoring a bare model needs its Normalizer")
        return model, normalizer, 64, 2
    raise InputError(f"cannot score with a {type(model).__name__}; give a TrainResult, a denoiser model "
                     "(rarefy.denoise.build_model) or a model path")


@torch.no_grad()
def _score_chunk(model: CNP, norm: Normalizer, data: EventData, context_size: int, folds: int, seed: int,
                 targets: np.ndarray | None, batch_size: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    mu_out = np.full(data.n, np.nan, np.float32)
    lv_out = np.full(data.n, np.nan, np.float32)
    theta_n = norm.theta(data.theta).to(device)
    phi_t = torch.from_numpy(data.phi)
    y_t = torch.from_numpy(data.y)
    for tmask, bank in fold_banks(data.run_starts, data.run_ids, context_size, seed, folds, targets):
        for r0 in range(0, data.n_runs, _RUN_BLOCK):
            r1 = min(r0 + _RUN_BLOCK, data.n_runs)
            lo, hi = int(data.run_starts[r0]), int(data.run_starts[r1])
            tgt = lo + np.flatnonzero(tmask[lo:hi])
            if not len(tgt):
                continue
            idx = bank.index[r0:r1]
            valid = torch.from_numpy(idx >= 0).to(device)
            safe = torch.from_numpy(np.where(idx >= 0, idx, 0))
            m = idx.shape[1]
            ctx_x = torch.cat([theta_n[r0:r1, None, :].expand(-1, m, -1),
                               norm.phi(phi_t[safe]).to(device)], dim=-1)
            ctx_y = y_t[safe].to(device) * valid
            h = model.encode(ctx_x, ctx_y, valid)
            rep = model.pool(h, valid)
            for i in range(0, len(tgt), batch_size):
                t = tgt[i:i + batch_size]
                group = torch.from_numpy(data.run_of(t) - r0).to(device)
                t_t = torch.from_numpy(t)
                x = torch.cat([theta_n.index_select(0, group + r0), norm.phi(phi_t.index_select(0, t_t)).to(device)], -1)
                mu, lv = model.decode(model.target_features(h, ctx_x, valid, rep, x, group))
                mu_out[t] = model.calibrate(mu, lv).cpu().numpy()
                lv_out[t] = lv.cpu().numpy()
    return mu_out, lv_out


def score(model: object, source: Source, normalizer: Normalizer | None = None, *, context_size: int | None = None,
          folds: int | None = None, seed: int = 0, targets: np.ndarray | None = None, batch_size: int = 16384,
          device: str = "cpu") -> Scores:
    """Calibrated per-event signal probabilities of every event in ``source``.

    Parameters
    ----------
    model:
        A :class:`TrainResult`, a model path / training folder (``model.pt``), or a
        :class:`CNP` together with its ``normalizer``.
    source:
        :class:`EventData` or a chunk source (chunks are scored one by one).
    context_size, folds:
        Context events per run and number of folds (default: the training config's).
    targets:
        Optional bool mask (in-memory data only): score just these events, with context
        drawn from the others (unscored events get NaN).
    seed:
        Seeds the fold deal and the context draws.
    """
    net, norm, m_default, k_default = _resolve(model, normalizer)
    net = net.to(device).eval()
    dev = torch.device(device)
    parts = []
    for chunk in iter_chunks(source):
        if chunk.phi.shape[1] != norm.dim_phi or chunk.theta.shape[1] != norm.dim_theta:
            raise InputError(f"data has {chunk.theta.shape[1]} θ and {chunk.phi.shape[1]} φ columns; the model was "
                             f"trained on {norm.dim_theta} and {norm.dim_phi}", file=chunk.source)
        if targets is not None and not isinstance(source, EventData):
            raise InputError("'targets' needs in-memory EventData")
        mu, lv = _score_chunk(net, norm, chunk, context_size or m_default, folds or k_default, seed, targets,
                              batch_size, dev)
        parts.append((chunk, mu, lv))
    if not parts:
        raise InputError("no events to score")
    mu = np.concatenate([p[1] for p in parts])
    lv = np.concatenate([p[2] for p in parts])
    ok = np.isfinite(mu)
    p = np.full(len(mu), np.nan, np.float32)
    s = np.full(len(mu), np.nan, np.float32)
    pp, ss = predictive(torch.from_numpy(mu[ok]), torch.from_numpy(lv[ok]))
    p[ok], s[ok] = pp.numpy(), ss.numpy()
    offsets = np.cumsum([0] + [c.n for c, _, _ in parts])
    starts = np.concatenate([parts[0][0].run_starts[:1]] + [c.run_starts[1:] + o for (c, _, _), o in zip(parts, offsets)])
    fid = None if any(c.fidelity is None for c, _, _ in parts) else sum((c.fidelity for c, _, _ in parts), [])
    return Scores(p=p, sigma=s, mu=mu, log_var=lv, y=np.concatenate([c.y for c, _, _ in parts]), run_starts=starts,
                  run_ids=sum((c.run_ids for c, _, _ in parts), []),
                  theta=np.concatenate([c.theta for c, _, _ in parts]), theta_names=parts[0][0].theta_names,
                  fidelity=fid)
