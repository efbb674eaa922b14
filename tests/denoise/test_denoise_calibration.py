"""Prior-shift calibration of the CNP: the logit offset moves the *moderated* logit exactly."""

from __future__ import annotations

import math

import pytest
import torch

from rarefy.denoise import build_model
from rarefy.nn.losses import moderated_logit, predictive


@pytest.mark.parametrize("kind", ["cnp", "attentive", "factorised"])
def test_offset_shifts_the_moderated_logit_for_any_sigma(kind: str) -> None:
    torch.manual_seed(3)
    model = build_model(kind, 2, 3, [16], [16]).eval()
    with torch.no_grad():
        model.decoder[-1].bias[1] = 3.0          # log σ² ≈ 3: a wide logit, where the moderation matters
    model.logit_offset.fill_(-6.0)
    ctx_x, ctx_y = torch.randn(2, 5, 5), torch.zeros(2, 5)
    mask = torch.ones(2, 5, dtype=torch.bool)
    tgt, grp = torch.randn(6, 5), torch.tensor([0, 1, 0, 1, 0, 1])
    with torch.no_grad():
        mu, lv = model(ctx_x, ctx_y, mask, tgt, grp)
    mu_cal, lv_cal = model.predict(ctx_x, ctx_y, mask, tgt, grp)
    torch.testing.assert_close(lv_cal, lv)
    # the losses train sigmoid(κ); the prior-shift correction is κ -> κ + offset
    want = torch.sigmoid(moderated_logit(mu, lv) - 6.0)
    torch.testing.assert_close(predictive(mu_cal, lv_cal)[0], want, rtol=1e-5, atol=1e-9)
    # by hand for one event: κ = μ / sqrt(1 + π e^{lv} / 8)
    k0 = float(mu[0]) / math.sqrt(1 + math.pi * math.exp(float(lv[0])) / 8)
    assert float(predictive(mu_cal, lv_cal)[0][0]) == pytest.approx(1 / (1 + math.exp(-(k0 - 6.0))), rel=1e-5)
