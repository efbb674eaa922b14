"""Autoencoder backend: trained on background events only, scores by reconstruction error.

An MLP encoder maps the normalised features (θ to [-1, 1], φ standardised) to a
``latent``-dimensional code and a mirrored MLP decoder reconstructs them. It is fitted
to **background** events (y = 0) only, minimising the per-event mean squared error
``(1/d) Σ_j (x̂_j - x_j)²`` (in units of the features' standard deviations, squared);
the score of an event is that error: events unlike the background score high. It is
not a probability (``probabilistic = False``). Early stopping uses the reconstruction
error of the validation background.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from .torch_backend import ReconstructionBackend, TorchBackendOptions, mlp

__all__ = ["AutoencoderBackend", "AutoencoderOptions", "Autoencoder"]


class AutoencoderOptions(TorchBackendOptions):
    """Encoder widths ``hidden`` (decoder mirrored), code width ``latent``; plus the training options."""

    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    latent: int = Field(default=3, ge=1)


class Autoencoder(torch.nn.Module):
    """MLP autoencoder; :meth:`event_loss` is the per-event mean squared reconstruction error."""

    def __init__(self, d: int, hidden: list[int], latent: int) -> None:
        super().__init__()
        self.enc = mlp(d, hidden, latent)
        self.dec = mlp(latent, list(reversed(hidden)), d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x))

    def event_loss(self, x: torch.Tensor) -> torch.Tensor:
        return ((self(x) - x) ** 2).mean(dim=1)


class AutoencoderBackend(ReconstructionBackend):
    """``autoencoder``: reconstruction-error scorer trained on background (see the module docstring)."""

    name: ClassVar[str] = "autoencoder"
    Options: ClassVar[type[AutoencoderOptions]] = AutoencoderOptions

    def build(self, d: int, n_theta: int) -> torch.nn.Module:
        return Autoencoder(d, self.options.hidden, self.options.latent)

    def encoder(self) -> tuple[torch.nn.Module, int]:
        return self.model.enc, self.options.latent
