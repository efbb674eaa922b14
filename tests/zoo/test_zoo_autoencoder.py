"""Autoencoder and VAE backends: ELBO terms by hand, outlier ranking, toy AUC, save/load, labels unread."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from rarefy.errors import InputError
from rarefy.zoo.autoencoder import AutoencoderBackend
from rarefy.zoo.base import EventBatch
from rarefy.zoo.vae import VAE, VAEBackend, gaussian_kl, gaussian_nll

from zoo_synth import FAST, manifold, relabel, separable

torch.set_num_threads(1)


def test_kl_and_nll_hand_case():
    mu = torch.tensor([[1.0, 0.0]])
    lv = torch.tensor([[0.0, math.log(2.0)]])
    # ½(1 + 1 - 1 - 0) + ½(0 + 2 - 1 - ln 2)
    assert float(gaussian_kl(mu, lv)) == pytest.approx(0.5 + 0.5 * (1 - math.log(2)), rel=1e-6)
    x = torch.tensor([[1.0, 3.0]])
    m = torch.tensor([[0.0, 3.0]])
    v = torch.tensor([[0.0, math.log(4.0)]])
    want = 0.5 * (math.log(2 * math.pi) + 0 + 1) + 0.5 * (math.log(2 * math.pi) + math.log(4.0) + 0)
    assert float(gaussian_nll(x, m, v)) == pytest.approx(want, rel=1e-6)


def test_vae_neg_elbo_at_the_posterior_mean_hand_case():
    torch.manual_seed(0)
    vae = VAE(2, [4], 1)
    with torch.no_grad():
        for p in vae.parameters():
            p.zero_()
        vae.enc[-1].bias.copy_(torch.tensor([0.5, math.log(0.25)]))    # μ = 0.5, σ² = 0.25
        vae.dec[-1].bias.copy_(torch.tensor([1.0, -1.0]))               # m(z) = (1, -1)
    vae.eval()
    x = torch.tensor([[2.0, -1.0]])
    nll = 0.5 * (2 * math.log(2 * math.pi) + 1.0)                       # s² = 1, residuals (1, 0)
    kl = 0.5 * (0.25 + 0.25 - 1 - math.log(0.25))
    assert float(vae.event_loss(x).detach()) == pytest.approx(nll + kl, rel=1e-6)


def _outlier_set() -> tuple[EventBatch, EventBatch]:
    """Background on a line φ₁ = 2 φ₀ (+ small noise); test: background plus one event off the line."""
    rng = np.random.default_rng(1)

    def make(n: int) -> np.ndarray:
        a = rng.normal(size=n)
        return np.stack([np.full(n, 1.0), a, 2 * a + 0.05 * rng.normal(size=n), rng.normal(size=n)], 1)

    x = make(3000).astype(np.float32)
    tr = EventBatch(x, np.zeros(len(x), np.uint8), np.zeros(len(x), np.int64), ("t", "a", "b", "c"), 1)
    xt = make(200)
    xt[17] = [1.0, 1.0, -2.0, 0.0]         # in range per feature, far off the line
    te = EventBatch(xt.astype(np.float32), np.zeros(200, np.uint8), np.zeros(200, np.int64), tr.feature_names, 1)
    return tr, te


@pytest.mark.parametrize("cls, over", [(AutoencoderBackend, {}), (VAEBackend, {"epochs": 10, "lr": 1e-2})])
def test_reconstruction_ranks_the_outlier_highest(cls, over):
    tr, te = _outlier_set()
    be = cls(seed=0, **{**FAST, **over}, latent=2).fit(tr)
    s = be.score(te)
    assert s.shape == (200,) and s.dtype == np.float64
    assert int(np.argmax(s)) == 17


@pytest.mark.parametrize("cls, over", [(AutoencoderBackend, {}), (VAEBackend, {"epochs": 10, "lr": 1e-2})])
def test_off_manifold_signal_auc_save_load_and_labels_unread(cls, over, tmp_path):
    tr, va, te = manifold(seed=0), manifold(seed=1, n_bkg=1000, n_sig=50), manifold(seed=2, n_bkg=1000, n_sig=50)
    be = cls(seed=3, **{**FAST, **over, "tensorboard": True, "checkpoint": True}).fit(tr, va, workdir=tmp_path / "w")
    assert be.probabilistic is False
    s = be.score(te)
    assert roc_auc_score(te.y, s) > 0.95
    assert np.array_equal(s, be.score(relabel(te, 1 - te.y)))
    be.save(tmp_path / "m")
    again = cls.load(tmp_path / "m")
    assert np.array_equal(again.score(te), s)
    assert (tmp_path / "w" / "fit" / "checkpoint.pt").exists()
    assert list((tmp_path / "w" / "fit" / "tensorboard").glob("events.*"))
    # trained on background only: the signal events never entered a batch
    assert all(r["positives_seen"] == 0 for r in be.record.history)
    # same seed, same scores
    assert np.array_equal(cls(seed=3, **{**FAST, **over}).fit(tr, va).score(te), s)


def test_pretrain_then_fit_and_bad_options():
    tr, te = separable(seed=0), separable(seed=2, n_bkg=1000, n_sig=50)
    be = AutoencoderBackend(seed=0, **FAST, pretrain={"kind": "infonce", "epochs": 1, "batches_per_epoch": 5,
                                                      "batch_size": 64})
    be.fit(tr)
    assert be.pretrain_record is not None and be.pretrain_record.finished
    assert np.isfinite(be.score(te)).all()
    with pytest.raises(InputError, match="autoencoder options: latnt"):
        AutoencoderBackend(latnt=3)
    with pytest.raises(InputError, match="pretrain.kind"):
        VAEBackend(pretrain={"kind": "simclr"})
