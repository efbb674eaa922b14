"""FT-Transformer backend (Gorishniy et al. 2021, "Revisiting Deep Learning Models for Tabular Data").

**Feature tokenizer.** Each normalised feature ``x_j`` (θ scaled to [-1, 1], φ
standardised) becomes a token ``t_j = x_j W_j + b_j`` with its own ``W_j, b_j ∈ R^{d_token}``.
A learned ``[CLS]`` token is appended. Extra tokens (e.g. the decision-path tokens of
:mod:`rarefy.zoo.bdt`) may be placed between the feature tokens and ``[CLS]``.

**Encoder.** ``n_layers`` pre-norm transformer blocks (multi-head self-attention with
``n_heads`` heads, GELU feed-forward of width ``d_ffn``, residual connections, dropout);
as in the paper the first block has no layer norm before its attention.

**Head.** ``LayerNorm → ReLU → Linear`` on the final ``[CLS]`` token gives one logit.
It is trained with the shared trainer (:mod:`rarefy.zoo.training`): a stage-1 loss
(default BCE), the positive-oversampling imbalance schedule, optional ``pos_weight`` and
mixup, early stopping on the validation BCE; the prior-shift offset makes the output
``sigmoid(logit + offset)`` a calibrated signal probability (``probabilistic = True``).
Its encoder (tokens → ``[CLS]`` embedding) can be pretrained contrastively.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field

from .torch_backend import DEFAULT_IMBALANCE, ClassifierOptions, EmbedOf, TorchBackend
from .training import Calibrated, ClassifierObjective, Objective

__all__ = ["FeatureTokenizer", "FTTransformer", "FTTransformerOptions", "FTTransformerBackend",
           "DEFAULT_IMBALANCE"]

class FeatureTokenizer(torch.nn.Module):
    """``(B, d)`` numbers → ``(B, d, d_token)`` tokens ``x_j W_j + b_j``."""

    def __init__(self, d_features: int, d_token: int) -> None:
        super().__init__()
        s = 1.0 / math.sqrt(d_token)
        self.weight = torch.nn.Parameter(torch.empty(d_features, d_token).uniform_(-s, s))
        self.bias = torch.nn.Parameter(torch.empty(d_features, d_token).uniform_(-s, s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, None] * self.weight[None] + self.bias[None]


class _Block(torch.nn.Module):
    def __init__(self, d: int, heads: int, d_ffn: int, dropout: float, first: bool) -> None:
        super().__init__()
        self.norm1 = torch.nn.Identity() if first else torch.nn.LayerNorm(d)
        self.attn = torch.nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm2 = torch.nn.LayerNorm(d)
        self.ffn = torch.nn.Sequential(torch.nn.Linear(d, d_ffn), torch.nn.GELU(), torch.nn.Dropout(dropout),
                                       torch.nn.Linear(d_ffn, d))
        self.drop = torch.nn.Dropout(dropout)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        h = self.norm1(t)
        t = t + self.drop(self.attn(h, h, h, need_weights=False)[0])
        return t + self.drop(self.ffn(self.norm2(t)))


class FTTransformer(torch.nn.Module):
    """Tokenizer + ``[CLS]`` + transformer blocks; :meth:`embed` gives the final ``[CLS]`` vector.

    ``extra`` (optional) is a module mapping the input columns after the first
    ``d_features`` to extra tokens ``(B, k, d_token)``.
    """

    def __init__(self, d_features: int, d_token: int = 16, n_layers: int = 2, n_heads: int = 2, d_ffn: int = 32,
                 dropout: float = 0.0, extra: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.d_features = d_features
        self.tokenizer = FeatureTokenizer(d_features, d_token)
        self.extra = extra
        s = 1.0 / math.sqrt(d_token)
        self.cls = torch.nn.Parameter(torch.empty(d_token).uniform_(-s, s))
        self.blocks = torch.nn.ModuleList(_Block(d_token, n_heads, d_ffn, dropout, i == 0) for i in range(n_layers))
        self.head_norm = torch.nn.LayerNorm(d_token)
        self.head = torch.nn.Linear(d_token, 1)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.tokenizer(x[:, : self.d_features])]
        if self.extra is not None:
            parts.append(self.extra(x[:, self.d_features:]))
        parts.append(self.cls.expand(len(x), 1, -1))
        return torch.cat(parts, dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tokens(x)
        for b in self.blocks:
            t = b(t)
        return self.head_norm(t[:, -1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.embed(x))).reshape(-1)


class FTTransformerOptions(ClassifierOptions):
    """Token width ``d_token``, ``n_layers`` blocks of ``n_heads`` heads, feed-forward width ``d_ffn``, ``dropout``."""

    d_token: int = Field(default=16, ge=2)
    n_layers: int = Field(default=2, ge=1)
    n_heads: int = Field(default=2, ge=1)
    d_ffn: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.0, ge=0, lt=1)


class FTTransformerBackend(TorchBackend):
    """``ft_transformer``: calibrated signal probability from an FT-Transformer (see the module docstring)."""

    name: ClassVar[str] = "ft_transformer"
    Options: ClassVar[type[FTTransformerOptions]] = FTTransformerOptions
    option_checks = ((lambda o: o.d_token % o.n_heads == 0,
                      "d_token ({o.d_token}) must be a multiple of n_heads ({o.n_heads})"),)

    def extra_tokens(self) -> torch.nn.Module | None:
        """Module making extra tokens from the columns after the features (None: none)."""
        return None

    def build(self, d: int, n_theta: int) -> torch.nn.Module:
        o = self.options
        d_features = len(self.feature_names)
        return Calibrated(FTTransformer(d_features, o.d_token, o.n_layers, o.n_heads, o.d_ffn, o.dropout,
                                        self.extra_tokens()))

    def objective(self) -> Objective:
        return ClassifierObjective(self.options.loss, self.options.pos_weight)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model.calibrated(x))

    def encoder(self) -> tuple[torch.nn.Module, int]:
        return EmbedOf(self.model.net), self.options.d_token
