"""A user's own torch module for the model-zoo tests: registered by import path only."""

from __future__ import annotations

import torch
from torch import nn


class TinyMLP(nn.Module):
    """Standardised features (B, d) -> one signal logit per event (B, 1)."""

    def __init__(self, in_features: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FirstPhiBackend:
    """A user's own *backend* (not a module): scores each event by one φ column, times ``scale``."""

    name = "first_phi"
    probabilistic = False

    def __init__(self, seed: int = 0, scale: float = 1.0) -> None:
        self.seed, self.scale, self.n_theta = seed, float(scale), None

    def fit(self, train, val=None, *, workdir=None):
        self.n_theta = train.n_theta
        return self

    def score(self, events):
        return self.scale * events.x[:, events.n_theta].astype("float64")

    def save(self, path):
        pass

    @classmethod
    def load(cls, path):
        return cls()
