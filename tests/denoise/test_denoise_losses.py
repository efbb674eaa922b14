"""Losses against hand-computed values, and the loss registry / config boundary."""

from __future__ import annotations

import math

import pytest
import torch

from rarefy.config import config_from_dict
from rarefy.denoise import get_loss, loss_names
from rarefy.errors import InputError

# log σ² = log(8/π) makes the moderated logit κ = μ / sqrt(1 + π σ²/8) = μ / √2; with
# μ = √2·ln 3 the predictive probability is p̄ = sigmoid(ln 3) = 3/4 exactly.
MU = math.sqrt(2.0) * math.log(3.0)
LV = math.log(8.0 / math.pi)
P = 0.75


def heads(y: list[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = len(y)
    return (torch.full((n,), MU, dtype=torch.float64), torch.full((n,), LV, dtype=torch.float64),
            torch.tensor(y, dtype=torch.float64))


def test_bce_by_hand() -> None:
    mu, lv, y = heads([1.0, 0.0])
    expected = (-math.log(P) - math.log(1 - P)) / 2
    assert float(get_loss("bce")(mu, lv, y)) == pytest.approx(expected, rel=1e-12)


def test_focal_by_hand() -> None:
    mu, lv, y = heads([1.0, 0.0])
    a1, a0, g = 0.3, 0.6, 2.0
    expected = (a1 * (1 - P) ** g * -math.log(P) + a0 * P**g * -math.log(1 - P)) / 2
    got = get_loss("focal", alpha_pos=a1, alpha_neg=a0, gamma=g)(mu, lv, y)
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_logit_adjusted_by_hand() -> None:
    mu, lv, y = heads([1.0, 0.0, 0.0])
    # prior 1/4: shift = log(0.25/0.75) = -ln 3, so κ + shift = 0 -> p = 1/2 -> ln 2 per event
    assert float(get_loss("logit_adjusted", prior=0.25)(mu, lv, y)) == pytest.approx(math.log(2), rel=1e-12)
    # tau = 2 with the batch prior 1/2... shift 0: back to BCE at p = 3/4
    got = get_loss("logit_adjusted", tau=2.0)(mu, lv, y, batch_prior=0.5)
    assert float(got) == pytest.approx((-math.log(P) - 2 * math.log(1 - P)) / 3, rel=1e-12)


def test_gaussian_nll_by_hand() -> None:
    mu, lv, y = heads([1.0, 0.0])
    s = 1 / (1 + math.exp(-MU))
    sigma_p = s * (1 - s) * math.sqrt(8 / math.pi)
    var = sigma_p**2
    expected = sum(0.5 * math.log(2 * math.pi * var) + (t - P) ** 2 / (2 * var) for t in (1.0, 0.0)) / 2
    assert float(get_loss("gaussian_nll")(mu, lv, y)) == pytest.approx(expected, rel=1e-12)


def test_brier_by_hand() -> None:
    mu, lv, y = heads([1.0, 0.0])
    assert float(get_loss("brier")(mu, lv, y)) == pytest.approx(((1 - P) ** 2 + P**2) / 2, rel=1e-12)


def test_unknown_loss_lists_known_ones() -> None:
    with pytest.raises(InputError) as err:
        get_loss("hinge")
    msg = str(err.value)
    assert "hinge" in msg and all(name in msg for name in loss_names())
    with pytest.raises(InputError, match="no parameter"):
        get_loss("focal", beta=1.0)


def test_config_rejects_unknown_loss_at_the_boundary() -> None:
    raw = {"space": {"parameters": {"a": {"low": 0, "high": 1}}}, "fidelities": [{"name": "lf", "value": "rate"}],
           "denoise": {"loss": {"name": "hinge"}}}
    with pytest.raises(InputError, match="unknown loss 'hinge'.*bce"):
        config_from_dict(raw)
    raw["denoise"] = {"loss": "focal", "imbalance": [{"epochs": 2, "positive_ratio": 0.1}]}
    cfg = config_from_dict(raw)
    assert cfg.denoise is not None and cfg.denoise.loss.name == "focal"
    raw["denoise"] = {"epochs": 3, "imbalance": [{"epochs": 2}]}
    with pytest.raises(InputError, match="either 'epochs' or an 'imbalance'"):
        config_from_dict(raw)
