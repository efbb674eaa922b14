"""Event-level training losses of the denoiser, and a registry to pick one by name.

Every loss takes the model's two heads per target event — ``mu`` (logit mean) and
``log_var`` (log-variance of the logit, see :mod:`rarefy.denoise.models`) — and the
label ``y`` (0/1, or a soft label in [0, 1] after mixup), and returns the **mean loss
over the batch** (nats per event).

Logit losses (``bce``, ``focal``, ``logit_adjusted``, ``brier``) act on the *moderated*
logit ``κ = μ / sqrt(1 + π σ² / 8)``, the logit of the predictive probability
``E[sigmoid(z)]`` for ``z ~ N(μ, σ²)`` (MacKay's probit approximation); the σ head
therefore gets a gradient from every loss. ``gaussian_nll`` scores the label under
``N(p̄, σ_p²)`` with ``p̄ = sigmoid(κ)`` and ``σ_p = sigmoid'(μ)·σ`` (delta method).

Use :func:`get_loss` (``name``, keyword parameters) to build one; an unknown name or
parameter raises :class:`rarefy.errors.InputError` listing what is known.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = ["LOSSES", "Loss", "get_loss", "loss_names", "moderated_logit", "predictive",
           "bce", "focal", "logit_adjusted", "gaussian_nll", "brier"]

#: smallest predictive standard deviation of the probability used by ``gaussian_nll``
SIGMA_P_MIN = 1e-4


class Loss(Protocol):
    def __call__(self, mu: torch.Tensor, log_var: torch.Tensor, y: torch.Tensor, *,
                 batch_prior: float | None = None) -> torch.Tensor: ...


def moderated_logit(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """κ = μ / sqrt(1 + π σ²/8): logit of E[sigmoid(z)], z ~ N(μ, σ²) (probit approximation)."""
    return mu * torch.rsqrt(1.0 + (math.pi / 8.0) * torch.exp(log_var))


def predictive(mu: torch.Tensor, log_var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictive signal probability ``p̄ = sigmoid(κ)`` and its 1σ ``σ_p = s(μ)(1-s(μ))σ``."""
    p = torch.sigmoid(moderated_logit(mu, log_var))
    s = torch.sigmoid(mu)
    sigma_p = s * (1.0 - s) * torch.exp(0.5 * log_var)
    return p, sigma_p


def bce(mu: torch.Tensor, log_var: torch.Tensor, y: torch.Tensor, *, batch_prior: float | None = None) -> torch.Tensor:
    """Binary cross-entropy with logits on κ: mean of ``-[y log p + (1-y) log(1-p)]``."""
    return F.binary_cross_entropy_with_logits(moderated_logit(mu, log_var), y)


def focal(alpha_pos: float = 0.25, alpha_neg: float = 0.75, gamma: float = 2.0) -> Loss:
    """Focal loss (Lin et al. 2017) with per-class weights.

    ``-[α₁ y (1-p)^γ log p + α₀ (1-y) p^γ log(1-p)]``, with ``p = sigmoid(κ)``;
    ``alpha_pos`` = α₁ weighs signal, ``alpha_neg`` = α₀ background; γ ≥ 0 down-weights
    easy events (γ = 0, α = 1 is BCE).
    """
    if gamma < 0 or alpha_pos < 0 or alpha_neg < 0:
        raise InputError(f"focal loss needs gamma, alpha_pos, alpha_neg >= 0, got {gamma}, {alpha_pos}, {alpha_neg}")

    def loss(mu: torch.Tensor, log_var: torch.Tensor, y: torch.Tensor, *,
             batch_prior: float | None = None) -> torch.Tensor:
        k = moderated_logit(mu, log_var)
        log_p, log_q = F.logsigmoid(k), F.logsigmoid(-k)
        p, q = torch.exp(log_p), torch.exp(log_q)
        per = -(alpha_pos * y * q.pow(gamma) * log_p + alpha_neg * (1.0 - y) * p.pow(gamma) * log_q)
        return per.mean()

    return loss


def logit_adjusted(prior: float | None = None, tau: float = 1.0) -> Loss:
    """Logit-adjusted BCE (Menon et al. 2021): add ``τ·log(π/(1-π))`` to the logit while training.

    ``π`` is the signal prior of the *training* distribution: ``prior`` if given, else the
    signal fraction of the batch (``batch_prior``, as the sampler composed it, clipped to
    [1e-12, 1-1e-12]). The raw output then estimates the balanced (prior-free) logit; the
    trainer stores the offset that restores calibrated probabilities at scoring time.
    """
    if prior is not None and not 0.0 < prior < 1.0:
        raise InputError(f"logit_adjusted loss needs 0 < prior < 1, got {prior}")

    def loss(mu: torch.Tensor, log_var: torch.Tensor, y: torch.Tensor, *,
             batch_prior: float | None = None) -> torch.Tensor:
        pi = prior if prior is not None else batch_prior
        if pi is None:
            raise InputError("logit_adjusted loss needs a prior (none configured and no batch prior given)")
        pi = min(max(float(pi), 1e-12), 1.0 - 1e-12)
        shift = tau * math.log(pi / (1.0 - pi))
        return F.binary_cross_entropy_with_logits(moderated_logit(mu, log_var) + shift, y)

    return loss


def gaussian_nll(mu: torch.Tensor, log_var: torch.Tensor, y: torch.Tensor, *,
                 batch_prior: float | None = None) -> torch.Tensor:
    """Gaussian NLL of the label under ``N(p̄, σ_p²)``: ``½ log(2π σ_p²) + (y - p̄)² / (2 σ_p²)``.

    ``σ_p`` is floored at ``SIGMA_P_MIN`` (1e-4) for stability.
    """
    p, sigma_p = predictive(mu, log_var)
    var = sigma_p.clamp_min(SIGMA_P_MIN) ** 2
    return (0.5 * torch.log(2.0 * math.pi * var) + (y - p) ** 2 / (2.0 * var)).mean()


def brier(mu: torch.Tensor, log_var: torch.Tensor, y: torch.Tensor, *, batch_prior: float | None = None) -> torch.Tensor:
    """Brier score: mean of ``(p̄ - y)²``."""
    return ((torch.sigmoid(moderated_logit(mu, log_var)) - y) ** 2).mean()


def _plain(fn: Loss) -> Callable[[], Loss]:
    def factory() -> Loss:
        return fn
    factory.__doc__ = fn.__doc__
    return factory


#: name -> factory(**params) returning a loss
LOSSES: dict[str, Callable[..., Loss]] = {
    "bce": _plain(bce),
    "focal": focal,
    "logit_adjusted": logit_adjusted,
    "gaussian_nll": _plain(gaussian_nll),
    "brier": _plain(brier),
}


def loss_names() -> list[str]:
    """Names accepted by :func:`get_loss`."""
    return sorted(LOSSES)


def check_loss(name: str, params: dict[str, Any] | None = None) -> None:
    """Raise :class:`InputError` for an unknown loss name or parameter (no torch work)."""
    if name not in LOSSES:
        raise InputError(f"unknown loss {name!r}; known losses: {', '.join(loss_names())}")
    allowed = list(inspect.signature(LOSSES[name]).parameters)
    unknown = sorted(set(params or {}) - set(allowed))
    if unknown:
        raise InputError(f"loss {name!r} has no parameter(s) {unknown}; it takes: {allowed or 'none'}")


def get_loss(name: str, **params: Any) -> Loss:
    """The loss registered as ``name``, built with ``params`` (see :data:`LOSSES`)."""
    check_loss(name, params)
    return LOSSES[name](**params)
