"""Contrastive pretraining of a backend's encoder: SupCon and InfoNCE heads.

Any backend with an encoder (autoencoder, VAE, FT-Transformer, BDT-FT-Transformer, NRE)
accepts the option ``pretrain: {kind: supcon | infonce, epochs, temperature, ...}``;
its encoder (features → embedding) is then trained contrastively *before* the backend's
own training, which starts from the pretrained weights.

**Views of a tabular event.** Events have no natural augmentations (no crops or colour
jitter), so two *views* of each event are made from its normalised features (θ scaled
to [-1, 1], φ standardised): Gaussian feature noise of ``noise`` standard deviations,
then feature dropout — each φ feature is set to 0 (its training mean) with probability
``dropout``. θ columns are left alone (all events of a run share θ) unless
``perturb_theta`` is set. The two views of an event are a positive pair.

**Heads.** Both heads embed a view with the encoder, then a projection MLP
(``embedding → embedding → proj_dim``), and L2-normalise: ``z = g(f(v)) / |g(f(v))|``.
The projection head is dropped after pretraining.

* ``infonce`` — InfoNCE / NT-Xent (Oord et al. 2018; Chen et al. 2020): over the ``2B``
  views of a batch, for anchor i with partner view j(i),
  ``ℓ_i = -log( exp(z_i·z_j(i)/τ) / Σ_{a≠i} exp(z_i·z_a/τ) )``, loss = mean over i.
  It uses no labels.
* ``supcon`` — supervised contrastive loss (Khosla et al. 2020, the ``L_out`` form):
  positives of anchor i are all other views with the same label (its own second view
  and every view of a same-class event, P(i)),
  ``ℓ_i = -1/|P(i)| Σ_{p∈P(i)} log( exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ) )``,
  loss = mean over anchors with at least one positive. Signal events are oversampled
  (``positive_ratio`` of each batch, :mod:`rarefy.nn.sampling`) so that every batch
  holds signal anchors at 1e-4 – 1e-6 imbalance.

Training uses :func:`rarefy.zoo.training.train_model` (checkpoints under
``workdir/pretrain``, TensorBoard, resume, seeded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from ..nn.seeding import seeded
from .training import TrainOptions, TrainRecord, train_model

__all__ = ["PretrainOptions", "supcon_loss", "infonce_loss", "make_views", "ContrastiveObjective", "pretrain"]


class PretrainOptions(BaseModel):
    """Contrastive pretraining settings (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["supcon", "infonce"] = "supcon"
    epochs: int = Field(default=3, ge=1)
    temperature: float = Field(default=0.1, gt=0)
    batch_size: int = Field(default=512, ge=4)
    batches_per_epoch: int = Field(default=50, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    positive_ratio: float | None = Field(default=0.25, ge=0, lt=1)
    max_reuse: int = Field(default=50, ge=1)
    noise: float = Field(default=0.1, ge=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    perturb_theta: bool = False
    proj_dim: int = Field(default=32, ge=1)


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, ``L_out``) of embeddings ``z`` (N, e).

    ``z`` is L2-normalised here; ``labels`` (N,) are class ids (equal id = positive pair).
    Mean over anchors that have a positive; 0 if none has.
    """
    z = F.normalize(z, dim=1)
    n = len(z)
    logits = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not has.any():
        return z.sum() * 0.0
    mean_log = log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has]
    return -mean_log.mean()


def infonce_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """InfoNCE / NT-Xent over two views ``z1``, ``z2`` (B, e) of the same B events (row i ↔ row i)."""
    b = len(z1)
    ids = torch.arange(b, device=z1.device)
    return supcon_loss(torch.cat([z1, z2]), torch.cat([ids, ids]), temperature)


def make_views(x: torch.Tensor, n_theta: int, noise: float, dropout: float, generator: torch.Generator,
               perturb_theta: bool = False, n_aux: int = 0) -> torch.Tensor:
    """One augmented view of normalised events ``x`` (B, d): Gaussian noise, then feature dropout to 0.

    The first ``n_theta`` columns (θ, unless ``perturb_theta``) and the last ``n_aux``
    (auxiliary inputs such as tree-leaf indices) are left unchanged.
    """
    lo = 0 if perturb_theta else n_theta
    hi = x.shape[1] - n_aux
    v = x.clone()
    part = v[:, lo:hi]
    if noise > 0:
        part = part + noise * torch.randn(part.shape, generator=generator)
    if dropout > 0:
        keep = torch.rand(part.shape, generator=generator) >= dropout
        part = part * keep
    v[:, lo:hi] = part
    return v


class _WithHead(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module, emb_dim: int, proj_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Sequential(torch.nn.Linear(emb_dim, emb_dim), torch.nn.ReLU(),
                                        torch.nn.Linear(emb_dim, proj_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class ContrastiveObjective:
    """Two views per event, then the SupCon or InfoNCE loss of their projections."""

    calibrates = False

    def __init__(self, options: PretrainOptions, n_theta: int, n_aux: int = 0) -> None:
        self.o = options
        self.n_theta = n_theta
        self.n_aux = n_aux

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_prior: float,
             rng: np.random.Generator) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        o = self.o
        v1 = make_views(x, self.n_theta, o.noise, o.dropout, g, o.perturb_theta, self.n_aux)
        v2 = make_views(x, self.n_theta, o.noise, o.dropout, g, o.perturb_theta, self.n_aux)
        z = model(torch.cat([v1, v2]))
        if o.kind == "infonce":
            return infonce_loss(z[: len(x)], z[len(x):], o.temperature)
        lab = (y >= 0.5).long()
        return supcon_loss(z, torch.cat([lab, lab]), o.temperature)

    def evaluate(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
                 ) -> dict[str, float]:  # pretraining runs without validation
        return {"val_loss": float("nan")}


def pretrain(encoder: torch.nn.Module, emb_dim: int, x: torch.Tensor, y: np.ndarray, options: PretrainOptions, *,
             seed: int = 0, n_theta: int = 0, n_aux: int = 0, workdir: Path | None = None) -> TrainRecord:
    """Train ``encoder`` (features (B, d) → embedding (B, ``emb_dim``)) contrastively, in place.

    A projection head is built (seeded by ``seed``) and discarded afterwards. Checkpoints
    and TensorBoard logs go to ``workdir`` (resumable), as in :func:`train_model`. The last
    ``n_aux`` columns of ``x`` are auxiliary inputs that views leave unchanged.
    """
    with seeded(seed + 7919):
        model = _WithHead(encoder, emb_dim, options.proj_dim)
    topts = TrainOptions(imbalance=[{"epochs": options.epochs, "positive_ratio": options.positive_ratio,
                                     "max_reuse": options.max_reuse}],
                         batch_size=options.batch_size, batches_per_epoch=options.batches_per_epoch, lr=options.lr,
                         early_stopping={"enabled": False})
    rec = train_model(model, ContrastiveObjective(options, n_theta, n_aux), x, y, options=topts, seed=seed,
                      n_theta=n_theta, workdir=workdir, tag="pretrain")
    encoder.train()
    return rec
