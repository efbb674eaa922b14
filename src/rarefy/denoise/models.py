"""Per-event signal-probability models over (θ, φ): two conditional neural processes and a classifier.

Shapes: ``U`` context groups (one per run present), ``m`` context events per group, ``B``
target events, ``dx = dθ + dφ`` (normalised θ and φ concatenated).

- :class:`CNP`: an MLP encoder maps each context event ``(x, y)`` to ``h``; a masked
  **mean** over the group gives the permutation-invariant representation ``r``; the
  decoder maps ``(r, x_target)`` to two numbers per target event.
- :class:`AttentiveCNP`: as CNP, plus each target cross-attends
  (:class:`torch.nn.MultiheadAttention`) to the encoded context of its own group; the
  decoder sees ``(r, attention output, x_target)``.
- :class:`FactorisedClassifier` (a factorised per-event classifier, not a neural process):
  the logit is ``a(φ) + Σ_k u_k(θ)·v_k(φ)``: the design
  enters each event's logit only through a low-rank interaction (``rank`` terms, ``u``
  linear in the normalised θ by default), and the context representation is not read.
  Given a track record that already carries the design's effect, the capture probability
  of most events barely depends on θ; a full decoder over ``(r, θ, φ)`` then fits spurious
  design dependence to the one or two positives of each run (docs/denoise.md).

**Output / uncertainty.** The decoder predicts a logit-normal: the signal logit
``z ~ N(μ, σ²)`` with ``μ`` and ``log σ²`` (clamped to [-12, 8]) as its two heads. The
predictive probability is ``p̄ = E[sigmoid(z)] ≈ sigmoid(μ / sqrt(1 + πσ²/8))`` and its
1σ is ``σ_p ≈ sigmoid(μ)(1 - sigmoid(μ)) σ`` (delta method), see
:func:`rarefy.nn.losses.predictive`. A buffer ``logit_offset`` (set by the trainer,
0 by default) shifts the moderated logit (:meth:`CNP.calibrate`, used by
:meth:`CNP.predict` and scoring) to undo the prior shift of oversampling / logit
adjustment, so scores are calibrated probabilities per event.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CNP", "AttentiveCNP", "FactorisedClassifier", "build_model", "mlp", "RESUM_WIDTHS"]

#: RESuM-size hidden widths (encoder and decoder each); ≈1e5 parameters in all
RESUM_WIDTHS = (32, 64, 128, 128, 128, 64, 48, 32)

LOG_VAR_MIN, LOG_VAR_MAX = -12.0, 8.0


def mlp(n_in: int, widths: Sequence[int], n_out: int) -> nn.Sequential:
    """Fully connected network ``n_in -> widths... -> n_out`` with SiLU between layers."""
    layers: list[nn.Module] = []
    prev = n_in
    for w in widths:
        layers += [nn.Linear(prev, int(w)), nn.SiLU()]
        prev = int(w)
    layers.append(nn.Linear(prev, n_out))
    return nn.Sequential(*layers)


class CNP(nn.Module):
    """Conditional neural process with a mean-pooled context representation.

    Parameters
    ----------
    dim_theta, dim_phi:
        Numbers of θ and φ features (already normalised by :class:`Normalizer`).
    encoder, decoder:
        Hidden widths; the representation size is ``rep_dim`` (default: last encoder width).
    """

    kind = "cnp"

    def __init__(self, dim_theta: int, dim_phi: int, encoder: Sequence[int] = RESUM_WIDTHS,
                 decoder: Sequence[int] = RESUM_WIDTHS, rep_dim: int | None = None) -> None:
        super().__init__()
        self.dim_theta, self.dim_phi = int(dim_theta), int(dim_phi)
        self.dim_x = self.dim_theta + self.dim_phi
        self.rep_dim = int(rep_dim or (encoder[-1] if len(encoder) else 32))
        self.encoder = mlp(self.dim_x + 1, encoder, self.rep_dim)
        self.decoder = mlp(self._decoder_in(), decoder, 2)
        self.register_buffer("logit_offset", torch.zeros(()))

    def _decoder_in(self) -> int:
        return self.rep_dim + self.dim_x

    # ------------------------------------------------------------------ parts
    def encode(self, ctx_x: torch.Tensor, ctx_y: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        """Encoded context events, (U, m, h); masked-out entries are zero."""
        h = self.encoder(torch.cat([ctx_x, ctx_y.unsqueeze(-1)], dim=-1))
        return h * ctx_mask.unsqueeze(-1).to(h.dtype)

    @staticmethod
    def pool(h: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        """Masked mean over the context axis, (U, h); a group with no context gives zeros."""
        count = ctx_mask.sum(dim=1, keepdim=True).clamp_min(1).to(h.dtype)
        return h.sum(dim=1) / count

    def decode(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.decoder(feats)
        return out[:, 0], out[:, 1].clamp(LOG_VAR_MIN, LOG_VAR_MAX)

    def target_features(self, h: torch.Tensor, ctx_x: torch.Tensor, ctx_mask: torch.Tensor,
                        rep: torch.Tensor, tgt_x: torch.Tensor, tgt_group: torch.Tensor) -> torch.Tensor:
        return torch.cat([rep.index_select(0, tgt_group), tgt_x], dim=-1)

    # ---------------------------------------------------------------- forward
    def forward(self, ctx_x: torch.Tensor, ctx_y: torch.Tensor, ctx_mask: torch.Tensor,
                tgt_x: torch.Tensor, tgt_group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw heads ``(μ, log σ²)`` of the targets, each (B,).

        ``ctx_x`` (U, m, dx), ``ctx_y`` (U, m) labels in [0, 1], ``ctx_mask`` (U, m) bool,
        ``tgt_x`` (B, dx), ``tgt_group`` (B,) long: the context group of each target.
        """
        h = self.encode(ctx_x, ctx_y, ctx_mask)
        rep = self.pool(h, ctx_mask)
        return self.decode(self.target_features(h, ctx_x, ctx_mask, rep, tgt_x, tgt_group))

    def calibrate(self, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """Calibrated logit mean ``μ + logit_offset·sqrt(1 + πσ²/8)``.

        The losses act on the moderated logit ``κ = μ / sqrt(1 + πσ²/8)``, so the prior
        shift must move ``κ`` by ``logit_offset``; scaling the offset by the moderation
        factor does exactly that (adding it to ``μ`` unscaled would shrink it for events
        with a large σ, a per-event miscalibration).
        """
        return mu + self.logit_offset * torch.sqrt(1.0 + (math.pi / 8.0) * torch.exp(log_var))

    @torch.no_grad()
    def init_prior(self, prior: float) -> None:
        """Start the output at the signal fraction ``prior`` (0 < prior < 1): set the μ head's bias.

        The bias of the logit head is set to ``logit(prior)·sqrt(1 + π/8)``, so the moderated
        logit of an untrained model (σ² ≈ 1) is ``logit(prior)``. At 1e-5 imbalance a model
        that starts at p = 0.5 spends its first steps on huge negative gradients that
        saturate its hidden units, and never learns the fine φ structure of the few positives
        (Lin et al. 2017, §4.1; with the moderator acceptance data's factorised model, a
        held-out r of 0.12 instead of 0.86).
        """
        p = min(max(float(prior), 1e-12), 1.0 - 1e-12)
        self.decoder[-1].bias[0] = math.log(p / (1.0 - p)) * math.sqrt(1.0 + math.pi / 8.0)

    @torch.no_grad()
    def predict(self, ctx_x: torch.Tensor, ctx_y: torch.Tensor, ctx_mask: torch.Tensor,
                tgt_x: torch.Tensor, tgt_group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated heads: ``(calibrate(μ, log σ²), log σ²)`` (see :meth:`calibrate`)."""
        mu, log_var = self(ctx_x, ctx_y, ctx_mask, tgt_x, tgt_group)
        return self.calibrate(mu, log_var), log_var


class AttentiveCNP(CNP):
    """CNP whose targets also cross-attend to the encoded context of their own group.

    Queries and keys are linear embeddings (width ``rep_dim``) of the target's and the
    context events' ``x``; values are the encoded context events; padded / excluded
    context entries are masked out (``key_padding_mask``).
    """

    kind = "attentive"

    def __init__(self, dim_theta: int, dim_phi: int, encoder: Sequence[int] = RESUM_WIDTHS,
                 decoder: Sequence[int] = RESUM_WIDTHS, rep_dim: int | None = None, heads: int = 4) -> None:
        super().__init__(dim_theta, dim_phi, encoder, decoder, rep_dim)
        if self.rep_dim % heads:
            raise ValueError(f"rep_dim {self.rep_dim} must be a multiple of heads {heads}")
        self.query = nn.Linear(self.dim_x, self.rep_dim)
        self.key = nn.Linear(self.dim_x, self.rep_dim)
        self.attention = nn.MultiheadAttention(self.rep_dim, heads, batch_first=True)

    def _decoder_in(self) -> int:
        return 2 * self.rep_dim + self.dim_x

    def target_features(self, h: torch.Tensor, ctx_x: torch.Tensor, ctx_mask: torch.Tensor,
                        rep: torch.Tensor, tgt_x: torch.Tensor, tgt_group: torch.Tensor) -> torch.Tensor:
        """``(r, attention output, x)`` per target.

        Computes exactly what ``self.attention(q, k, v, key_padding_mask=...)`` of
        :class:`torch.nn.MultiheadAttention` computes (same weights), but applies its
        key/value in-projections once per *group* (U, m, h) instead of once per target
        (B, m, h), which made scoring with large contexts several times slower.
        """
        mha = self.attention
        e, heads = self.rep_dim, mha.num_heads
        d = e // heads
        u, m = ctx_mask.shape
        b = tgt_x.shape[0]
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
        b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
        q = F.linear(self.query(tgt_x), w_q, b_q).view(b, heads, 1, d)                # (B, H, 1, d)
        k = F.linear(self.key(ctx_x), w_k, b_k).view(u, m, heads, d).transpose(1, 2)  # (U, H, m, d)
        v = F.linear(h, w_v, b_v).view(u, m, heads, d).transpose(1, 2)                # (U, H, m, d)
        empty = ~ctx_mask.any(dim=1)
        # a group without context attends to nothing: unmask one (zero) entry, zero the output
        mask = ctx_mask.clone()
        mask[empty, 0] = True
        scores = (q * k.index_select(0, tgt_group)).sum(-1) / math.sqrt(d)            # (B, H, m)
        scores = scores.masked_fill(~mask.index_select(0, tgt_group).unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        att = (weights.unsqueeze(-1) * v.index_select(0, tgt_group)).sum(2).reshape(b, e)
        att = mha.out_proj(att) * (~empty).index_select(0, tgt_group).unsqueeze(-1).to(att.dtype)
        return torch.cat([rep.index_select(0, tgt_group), att, tgt_x], dim=-1)


class FactorisedClassifier(CNP):
    """Factorised per-event classifier: the design meets each event only through a low-rank interaction.

    The logit mean is ``μ = a(φ) + Σ_k u_k(θ)·v_k(φ)`` and ``log σ²`` is ``a``'s second
    head: ``a`` is an MLP of the event's φ (``decoder`` widths), ``v`` an MLP of φ
    (``decoder`` widths, ``rank`` outputs) and ``u`` maps the normalised θ to ``rank``
    coefficients (``design_widths`` hidden layers; the default ``()`` makes it linear).
    ``rank`` and ``design_widths`` bound how much design dependence the model can fit
    beyond what φ already carries.

    It is not a neural process: it keeps the :class:`CNP` interface (context in, per-event
    heads out) so that training and scoring are shared, but it reads no context at all. On
    the moderator acceptance data every route for a context representation into the
    decoder (into ``a``, into ``v``, or into the σ head, which moves the moderated logit)
    lowered the held-out r at seed 11 (0.64, 0.75, 0.72 against 0.87), because a
    per-run representation is one more way to fit run-to-run noise.
    """

    kind = "factorised"

    def __init__(self, dim_theta: int, dim_phi: int, encoder: Sequence[int] = RESUM_WIDTHS,
                 decoder: Sequence[int] = RESUM_WIDTHS, rep_dim: int | None = None, rank: int = 1,
                 design_widths: Sequence[int] = ()) -> None:
        super().__init__(dim_theta, dim_phi, encoder, decoder, rep_dim)
        # CNP.__init__ built an encoder; the factorised decoder reads no context, so drop it
        # (built and dropped, not skipped, so the random initialisation stays as measured)
        del self.encoder
        self.rank = int(rank)
        self.decoder = mlp(self.dim_phi, decoder, 2)                     # a(φ): (μ_a, log σ²)
        self.event_side = mlp(self.dim_phi, decoder, self.rank)          # v(φ)
        self.design_side = mlp(self.dim_theta, design_widths, self.rank)        # u(θ)

    def encode(self, ctx_x: torch.Tensor, ctx_y: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        """No encoder: the representation is zeros (U, m, rep_dim), since the decoder does not read it."""
        return ctx_x.new_zeros(*ctx_mask.shape, self.rep_dim)

    def decode(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rep, theta, phi = feats.split([self.rep_dim, self.dim_theta, self.dim_phi], dim=-1)
        out = self.decoder(phi)
        inter = (self.design_side(theta) * self.event_side(phi)).sum(-1)
        return out[:, 0] + inter, out[:, 1].clamp(LOG_VAR_MIN, LOG_VAR_MAX)


#: the earlier name of :class:`FactorisedClassifier`
FactorisedCNP = FactorisedClassifier


def build_model(kind: str, dim_theta: int, dim_phi: int, encoder: Sequence[int] = RESUM_WIDTHS,
                decoder: Sequence[int] = RESUM_WIDTHS, rep_dim: int | None = None, heads: int = 4,
                rank: int = 1, design_widths: Sequence[int] = ()) -> CNP:
    """A :class:`CNP` (``kind="cnp"``), :class:`AttentiveCNP` (``"attentive"``) or :class:`FactorisedClassifier` (``"factorised"``)."""
    if kind == "cnp":
        return CNP(dim_theta, dim_phi, encoder, decoder, rep_dim)
    if kind == "attentive":
        return AttentiveCNP(dim_theta, dim_phi, encoder, decoder, rep_dim, heads)
    if kind == "factorised":
        return FactorisedClassifier(dim_theta, dim_phi, encoder, decoder, rep_dim, rank, design_widths)
    raise ValueError(f"unknown model kind {kind!r}; use 'cnp', 'attentive' or 'factorised'")
