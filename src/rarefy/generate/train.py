"""Maximum-likelihood training of the generator with rarefy's one trainer (:class:`rarefy.nn.trainer.Trainer`).

The loss is the flow's negative log-likelihood per event,

    L = - mean_i log q(z_i | c_i),     z_i = F(φ_i, u_i),   c_i = (unit(θ_i) [, y_i]),

with F the feature map (:mod:`rarefy.generate.features`: dequantisation by u_i ~ U[0, 1)
for integer columns, min–max scaling, logit, standardisation). Maximising it minimises
KL(p_data ‖ q) of the (dequantised) event density, whose floor gives back the integer
probabilities exactly.

**Discrete heads** (``discrete: auto``, :mod:`rarefy.generate.discrete`): integer columns
with at most ``max_categories`` distinct values leave the flow and get a categorical head
each; the loss is then the joint negative log-likelihood

    L = - mean_i [log q(z_{c,i} | c_i) + Σ_k log P(d_{k,i} | φ_{c,i}, d_{<k,i}, θ_i)],

flow and heads trained together (one trainer, one early stopping on the joint validation
NLL; the heads are initialised after the flow under the same seed, so the flow starts from
the same weights either way).

**Split.** Whole runs are held out for validation (``val_fraction`` of the runs, at
least one when there are two or more runs), so the validation NLL is measured at designs
the flow never saw; early stopping keeps the best epoch by it. With a single run, events
are split at random instead.

**Determinism and resume.** The flow is initialised under :func:`rarefy.nn.seeding.seeded`;
epoch ``e``'s batch order and dequantisation noise come from
``numpy.random.default_rng([seed, 2, e])`` and depend only on ``e``, so a resumed run
(``checkpoint.pt`` in the work folder) ends with the same weights as an uninterrupted one;
the checkpoint's fingerprint (config, seed, events) refuses another run's checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..config import GenerateConfig
from ..data.events import RUN_ID, EventTable
from ..errors import InputError
from ..nn.early_stopping import EarlyStopping
from ..nn.seeding import seeded
from ..nn.trainer import Trainer
from ..space import DesignSpace
from .discrete import DiscreteHeads, FlowWithHeads, select_discrete
from .features import FeatureMap
from .model import Generator, build_flow

__all__ = ["fit_generator", "GeneratorFit", "check_events", "select_phi", "CHECKPOINT", "TENSORBOARD"]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
TENSORBOARD = "tensorboard"
_VAL_CAP = 50_000


@dataclass
class GeneratorFit:
    """A trained :class:`Generator` with its per-epoch ``history`` and the train / validation run ids."""

    generator: Generator
    history: list[dict[str, Any]] = field(default_factory=list)
    train_runs: list[str] = field(default_factory=list)
    val_runs: list[str] = field(default_factory=list)


def select_phi(events: EventTable, phi: list[str] | None, source: str | None = None) -> list[str]:
    """The φ columns to model: ``phi`` (each must be a numeric column of the events) or every φ column."""
    names = list(events.phi_names) if phi is None else list(phi)
    if not names:
        raise InputError("the events have no φ columns to generate", file=source)
    have = set(events.table.column_names)
    for c in names:
        if c not in have:
            raise InputError(f"the events lack the φ column (have φ: {', '.join(events.phi_names)})",
                             file=source, column=c)
    return names


def _column(events: EventTable, name: str, source: str | None) -> np.ndarray:
    values = np.asarray(events.table.column(name).to_numpy(zero_copy_only=False), dtype=float)
    if not np.isfinite(values).all():
        raise InputError("φ column holds a non-finite value", file=source, column=name)
    return values


def _split(run_ids: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, list[str], list[str]]:
    """Boolean validation mask by whole runs (random events when there is a single run)."""
    runs = sorted(set(run_ids.tolist()))
    if fraction <= 0:
        return np.zeros(len(run_ids), bool), runs, []
    if len(runs) < 2:
        return rng.random(len(run_ids)) < fraction, runs, []
    n_val = min(len(runs) - 1, max(1, int(round(fraction * len(runs)))))
    val = sorted(rng.choice(runs, n_val, replace=False).tolist())
    return np.isin(run_ids, val), [r for r in runs if r not in val], val


def check_events(events: EventTable, space: DesignSpace, cfg: GenerateConfig, source: str | None = None
                 ) -> tuple[list[str], np.ndarray, np.ndarray, list[bool]]:
    """Every input check, before any work: θ columns of the space, φ columns present and finite, θ inside the
    space, ``integer`` naming generated columns. Returns the φ names, φ (n, p), θ (n, d) and the integer flags."""
    missing = [k for k in space.names if k not in events.theta_names]
    if missing:
        raise InputError(f"the events lack the θ column (have θ: {', '.join(events.theta_names)})",
                         file=source, column=missing[0])
    names = select_phi(events, cfg.phi, source)
    if not len(events):
        raise InputError("no events to train the generator on", file=source)
    phi = np.column_stack([_column(events, c, source) for c in names])
    theta = np.column_stack([events.table.column(k).to_numpy() for k in space.names]).astype(float)
    bad = ~space.in_bounds(theta)
    if bad.any():
        raise InputError(f"an event's θ {dict(zip(space.names, theta[int(np.argmax(bad))]))} lies outside the space",
                         file=source, row=int(np.argmax(bad)))
    if cfg.integer is None:
        integer = [bool(np.all(phi[:, j] == np.round(phi[:, j]))) for j in range(len(names))]
    else:
        unknown = [c for c in cfg.integer if c not in names]
        if unknown:
            raise InputError(f"generate.integer names {unknown}, which are not generated φ columns {names}",
                             file=source, column=unknown[0])
        integer = [c in cfg.integer for c in names]
    return names, phi, theta, integer


def fit_generator(events: EventTable, space: DesignSpace, cfg: GenerateConfig, *, seed: int,
                  workdir: str | os.PathLike[str] | None = None, source: str | None = None,
                  on_epoch: Callable[[dict[str, Any]], None] | None = None,
                  stop_after_epochs: int | None = None) -> GeneratorFit:
    """Train a :class:`Generator` of p(φ | θ) (or p(φ | θ, y)) on ``events`` (see the module docstring).

    ``events`` are the events of one fidelity (θ columns named as the ``space``'s
    parameters); ``cfg`` the ``generate`` config section; ``workdir`` (optional) receives the
    trainer's ``checkpoint.pt`` and ``tensorboard/``; ``stop_after_epochs`` ends this call
    after that many epochs (the checkpoint stays; call again to go on). Returns the generator
    (best validation epoch once finished) with its history; saving it is the caller's.
    """
    names, phi, theta, integer = check_events(events, space, cfg, source)
    y = events.outcome.astype(np.float32)
    run_ids = (np.asarray(events.table.column(RUN_ID).to_numpy(zero_copy_only=False), dtype=str)
               if RUN_ID in events.table.column_names else np.full(len(events), "run"))

    rng = np.random.default_rng([seed, 1])
    is_val, train_runs, val_runs = _split(run_ids, cfg.val_fraction, rng)
    tr = np.flatnonzero(~is_val)
    va = np.flatnonzero(is_val)
    if cfg.max_events is not None and len(tr) > cfg.max_events:
        tr = np.sort(rng.choice(tr, cfg.max_events, replace=False))
    if len(va) > _VAL_CAP:
        va = np.sort(rng.choice(va, _VAL_CAP, replace=False))
    d_cols = select_discrete(phi, names, integer, cfg.discrete, cfg.max_categories)
    cont = [j for j in range(len(names)) if j not in d_cols]
    features = FeatureMap.fit(phi[tr][:, cont], [names[j] for j in cont], [integer[j] for j in cont], cfg.margin,
                              np.random.default_rng([seed, 4]))
    unit = space.to_unit(theta).astype(np.float32)
    ctx_all = np.column_stack([unit, y]) if cfg.condition_on_outcome else unit
    ctx_tr = torch.from_numpy(np.ascontiguousarray(ctx_all[tr], dtype=np.float32))
    log.info("generate: %d training events (%d runs), %d validation events (%d runs), φ = %s, integer: %s, "
             "categorical: %s", len(tr), len(train_runs), len(va), len(val_runs), names,
             [c for c, i in zip(names, integer) if i], [names[j] for j in d_cols])

    o = cfg.flow
    heads = None
    with seeded(seed):
        flow = build_flow(len(cont), ctx_all.shape[1], o.kind, o.transforms, o.hidden, o.bins, o.passes)
        if d_cols:
            heads = DiscreteHeads(names, [names[j] for j in d_cols], [np.unique(phi[:, j]) for j in d_cols],
                                  len(cont), ctx_all.shape[1], cfg.discrete_hidden)
    model: torch.nn.Module = flow if heads is None else FlowWithHeads(flow, heads)
    phi_tr, idx_tr = (phi[tr], None) if heads is None else heads.split(phi[tr])
    n, bs = len(tr), cfg.batch_size
    nb = max(1, math.ceil(n / bs))
    if cfg.max_batches is not None:
        nb = min(nb, cfg.max_batches)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        erng = np.random.default_rng([seed, 2, epoch])
        perm = erng.permutation(n)[: nb * bs]
        z = features.forward(phi_tr[perm], erng)
        if idx_tr is not None:     # the heads read φ_c at the integer bins' mid-points, and the categories
            zm = torch.from_numpy(features.forward(phi_tr[perm], None) if features.integer.any() else z)
            d = torch.from_numpy(idx_tr[perm])
        for b in range(nb):
            sl = slice(b * bs, (b + 1) * bs)
            if sl.start >= len(perm):
                break
            if idx_tr is None:
                yield torch.from_numpy(z[sl]), ctx_tr[torch.from_numpy(perm[sl])]
            else:
                yield torch.from_numpy(z[sl]), ctx_tr[torch.from_numpy(perm[sl])], zm[sl], d[sl]

    def step(model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if len(batch) == 2:
            z, c = batch
            return -model(c).log_prob(z).mean()
        flow_nll, discrete_nll = model.nll(*batch)
        return (flow_nll + discrete_nll).mean()

    validate = None
    if len(va) and heads is None:
        z_va = torch.from_numpy(features.forward(phi[va], np.random.default_rng([seed, 3])))
        c_va = torch.from_numpy(np.ascontiguousarray(ctx_all[va], dtype=np.float32))

        def validate(model: torch.nn.Module) -> dict[str, float]:
            nll = float(torch.cat([-model(c_va[i:i + 65536]).log_prob(z_va[i:i + 65536])
                                   for i in range(0, len(z_va), 65536)]).double().mean())
            return {"val_loss": nll, "val_nll": nll}
    elif len(va):
        phi_va, idx_va = heads.split(phi[va])
        val = (torch.from_numpy(features.forward(phi_va, np.random.default_rng([seed, 3]))),
               torch.from_numpy(np.ascontiguousarray(ctx_all[va], dtype=np.float32)),
               torch.from_numpy(features.forward(phi_va, None)), torch.from_numpy(idx_va))

        def validate(model: torch.nn.Module) -> dict[str, float]:
            parts = [model.nll(*(t[i:i + 65536] for t in val)) for i in range(0, len(val[0]), 65536)]
            f = float(torch.cat([p[0] for p in parts]).double().mean())
            d = float(torch.cat([p[1] for p in parts]).double().mean())
            return {"val_loss": f + d, "val_nll": f + d, "val_nll_flow": f, "val_nll_discrete": d}

    work = Path(workdir) if workdir is not None else None
    fingerprint = hashlib.sha256(json.dumps(
        {"cfg": cfg.model_dump(mode="json"), "seed": seed, "n": len(events), "theta": space.to_dict(),
         "runs": train_runs + ["|"] + val_runs, "sum": float(phi[tr].sum())}, sort_keys=True).encode()).hexdigest()
    trainer: Trainer[tuple[torch.Tensor, ...]] = Trainer(
        model, lambda p: torch.optim.Adam(p, lr=cfg.lr, weight_decay=cfg.weight_decay), step, epochs=cfg.epochs,
        validate=validate, early_stopping=EarlyStopping(cfg.patience if validate is not None else None),
        lr_schedule=cfg.lr_schedule, grad_clip=cfg.grad_clip, seed=seed,
        checkpoint=work / CHECKPOINT if work is not None else None, fingerprint=fingerprint,
        tensorboard=work / TENSORBOARD if work is not None else None, on_epoch=on_epoch, name="generate",
        batch_weight=lambda b: float(len(b[0])))
    state = trainer.fit(batches, stop_after_epochs=stop_after_epochs)
    info = {"seed": seed, "events_train": int(len(tr)), "events_val": int(len(va)), "runs_train": len(train_runs),
            "runs_val": len(val_runs), "epochs": state.epochs_run, "best_epoch": state.best_epoch,
            "val_nll": None if not math.isfinite(state.best_val_loss) else state.best_val_loss,
            "stopped_early": state.stopped_early, "categorical": [names[j] for j in d_cols]}
    options = {"kind": o.kind, "transforms": o.transforms, "hidden": list(o.hidden), "bins": o.bins,
               "passes": o.passes}
    fidelity = str(events.table.column("fidelity")[0].as_py()) if "fidelity" in events.table.column_names else ""
    gen = Generator(flow, features, space, options, fidelity, cfg.condition_on_outcome, info, heads)
    return GeneratorFit(gen, list(state.history), train_runs, val_runs)
