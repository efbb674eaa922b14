"""Variational autoencoder backend: trained on background only, scores by the negative ELBO.

Encoder ``q(z|x) = N(μ(x), diag σ²(x))`` (an MLP giving μ and log σ²), prior
``p(z) = N(0, I)``, decoder ``p(x|z) = N(m(z), diag s²)`` with a learned per-feature
log-variance ``log s²`` (clamped to [-6, 4]). The per-event **negative ELBO** (nats) is

    -ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || p(z)),
    -log p(x|z) = ½ Σ_j [log 2π + log s_j² + (x_j - m_j(z))² / s_j²],
    KL = ½ Σ_k [μ_k² + σ_k² - 1 - log σ_k²].

Training (background events only) estimates the expectation with one reparameterised
sample. For validation and **scoring** the expectation is taken at the posterior mean
``z = μ(x)`` (``score_samples = 0``, deterministic) or averaged over ``score_samples``
draws from a generator seeded by the backend's seed (also deterministic). Higher score =
less background-like; not a probability (``probabilistic = False``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field

from .torch_backend import EmbedOf, ReconstructionBackend, TorchBackendOptions, mlp

__all__ = ["VAEBackend", "VAEOptions", "VAE", "gaussian_kl", "gaussian_nll"]


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag e^{log_var}) || N(0, I)) per row (nats): ½ Σ (μ² + σ² - 1 - log σ²)."""
    return 0.5 * (mu ** 2 + torch.exp(log_var) - 1.0 - log_var).sum(dim=-1)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """-log N(x; mean, diag e^{log_var}) per row (nats): ½ Σ (log 2π + log_var + (x - mean)² e^{-log_var})."""
    return 0.5 * (math.log(2 * math.pi) + log_var + (x - mean) ** 2 * torch.exp(-log_var)).sum(dim=-1)


class VAEOptions(TorchBackendOptions):
    """Encoder widths ``hidden`` (decoder mirrored), ``latent`` width, ``score_samples`` (0: posterior mean)."""

    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    latent: int = Field(default=3, ge=1)
    score_samples: int = Field(default=0, ge=0)
    lr: float = Field(default=5e-3, gt=0)


class VAE(torch.nn.Module):
    """Gaussian VAE; :meth:`event_loss` is the per-event negative ELBO (see the module docstring)."""

    def __init__(self, d: int, hidden: list[int], latent: int, score_samples: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.latent = latent
        self.enc = mlp(d, hidden, 2 * latent)
        self.dec = mlp(latent, list(reversed(hidden)), d)
        self.dec_log_var = torch.nn.Parameter(torch.zeros(d))
        self.score_samples = score_samples
        self.seed = seed

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(x)
        return h[:, : self.latent], h[:, self.latent:].clamp(-10.0, 10.0)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean μ(x) (the encoder used for contrastive pretraining)."""
        return self.encode(x)[0]

    def neg_elbo(self, x: torch.Tensor, z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        lv = self.dec_log_var.clamp(-6.0, 4.0).expand_as(x)
        return gaussian_nll(x, self.dec(z), lv) + gaussian_kl(mu, log_var)

    def event_loss(self, x: torch.Tensor) -> torch.Tensor:
        mu, log_var = self.encode(x)
        if self.training:
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
            return self.neg_elbo(x, z, mu, log_var)
        if self.score_samples == 0:
            return self.neg_elbo(x, mu, mu, log_var)
        g = torch.Generator().manual_seed(self.seed)
        tot = torch.zeros(len(x))
        for _ in range(self.score_samples):
            z = mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, generator=g)
            tot = tot + self.neg_elbo(x, z, mu, log_var)
        return tot / self.score_samples


class VAEBackend(ReconstructionBackend):
    """``vae``: negative-ELBO scorer trained on background (see the module docstring)."""

    name: ClassVar[str] = "vae"
    Options: ClassVar[type[VAEOptions]] = VAEOptions

    def build(self, d: int, n_theta: int) -> torch.nn.Module:
        return VAE(d, self.options.hidden, self.options.latent, self.options.score_samples, self.seed)

    def encoder(self) -> tuple[torch.nn.Module, int]:
        return EmbedOf(self.model), self.options.latent
