"""NRE backend: pair loss and ratio-to-probability by hand, a known likelihood ratio, toy AUC, save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from rarefy.errors import InputError
from rarefy.zoo.base import EventBatch
from rarefy.zoo.nre import NREBackend, NREObjective, RatioNet

from zoo_synth import FAST, relabel, separable

torch.set_num_threads(1)


class _Hand(RatioNet):
    """s(x, y) = x₀ (2y - 1) + 0.5."""

    def __init__(self) -> None:
        super().__init__(1, [2])

    def log_ratio(self, x, y, h=None):
        return x[:, 0] * (2 * y - 1) + 0.5


def _bce(z: float, t: float) -> float:
    p = 1 / (1 + math.exp(-z))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def test_pair_loss_hand_case():
    x = torch.tensor([[1.0], [2.0], [-1.0]])
    y = torch.tensor([1.0, 0.0, 0.0])
    perm = np.random.default_rng(4).permutation(3)
    xs, ys = [1.0, 2.0, -1.0], [1.0, 0.0, 0.0]
    joint = [_bce(xs[i] * (2 * ys[i] - 1) + 0.5, 1) for i in range(3)]
    loss = NREObjective(marginal="shuffle").loss(_Hand(), x, y, batch_prior=0.3, rng=np.random.default_rng(4))
    marg = [_bce(xs[i] * (2 * ys[perm[i]] - 1) + 0.5, 0) for i in range(3)]
    assert float(loss.detach()) == pytest.approx((sum(joint) + sum(marg)) / 6, rel=1e-6)
    # exact marginal: each x with y'=1 (weight 1/3, the batch's signal fraction) and y'=0 (weight 2/3)
    loss = NREObjective().loss(_Hand(), x, y, batch_prior=0.3, rng=np.random.default_rng(4))
    marg = [_bce(xs[i] + 0.5, 0) / 3 + 2 * _bce(-xs[i] + 0.5, 0) / 3 for i in range(3)]
    assert float(loss.detach()) == pytest.approx(0.5 * (sum(joint) / 3 + sum(marg) / 3), rel=1e-6)


def test_probability_is_ratio_of_ratios_plus_prior():
    net = _Hand()
    net.logit_offset.fill_(math.log(0.01 / 0.99))
    x = torch.tensor([[0.7]])
    # s(x,1) - s(x,0) = 2 x₀
    assert float(net(x)) == pytest.approx(1.4 + math.log(0.01 / 0.99), rel=1e-6)


def test_learns_a_known_likelihood_ratio_under_oversampling():
    """x|y=0 ~ N(0,1), x|y=1 ~ N(1.5,1): log LR = 1.5 x - 1.125; π = 2%, trained with 30% oversampling."""
    rng = np.random.default_rng(0)
    n = 40000
    y = (rng.random(n) < 0.02).astype(np.uint8)
    x = (rng.normal(size=n) + 1.5 * y).astype(np.float32)[:, None]
    ev = EventBatch(x, y, np.zeros(n, np.int64), ("a",), 0)
    be = NREBackend(seed=0, **{**FAST, "epochs": 6, "batch_size": 512, "batches_per_epoch": 60,
                               "imbalance": [{"epochs": 6, "positive_ratio": 0.3, "max_reuse": 50}]},
                    hidden=[16, 16]).fit(ev)
    grid = np.linspace(-1.0, 2.0, 7, dtype=np.float32)[:, None]   # where both classes have mass
    p = be.score(EventBatch(grid, np.zeros(7, np.uint8), np.zeros(7, np.int64), ("a",), 0))
    pi = (y.sum() + 0.5) / (n + 1)
    true = 1 / (1 + np.exp(-(1.5 * grid[:, 0] - 1.125 + math.log(pi / (1 - pi)))))
    assert np.max(np.abs(np.log(p / (1 - p)) - np.log(true / (1 - true)))) < 0.25


def test_separable_toy_save_load(tmp_path):
    tr, va, te = separable(seed=0), separable(seed=1, n_bkg=1000, n_sig=50), separable(seed=2, n_bkg=1000, n_sig=50)
    be = NREBackend(seed=2, **FAST).fit(tr, va)
    p = be.score(te)
    assert be.probabilistic and ((p >= 0) & (p <= 1)).all()
    assert roc_auc_score(te.y, p) > 0.95
    assert p.mean() == pytest.approx(te.y.mean(), abs=0.03)
    assert np.array_equal(p, be.score(relabel(te, 1 - te.y)))
    be.save(tmp_path)
    assert np.array_equal(NREBackend.load(tmp_path).score(te), p)
    with pytest.raises(InputError, match="mixup and pos_weight"):
        NREBackend(pos_weight=3.0)
