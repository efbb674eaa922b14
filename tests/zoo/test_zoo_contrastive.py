"""SupCon / InfoNCE losses against hand-computed values; views; pretraining lowers the loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rarefy.zoo.contrastive import PretrainOptions, infonce_loss, make_views, pretrain, supcon_loss

from zoo_synth import FAST, separable

torch.set_num_threads(1)


def test_supcon_hand_case():
    # z1=(1,0), z2=(0,1) class 0; z3=(-1,0) class 1 (no positive: not an anchor)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    lab = torch.tensor([0, 0, 1])
    # anchor 1: sims to 2, 3 = 0, -1 -> -log(e^0 / (e^0 + e^-1)); anchor 2: sims 0, 0 -> log 2
    want = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    assert float(supcon_loss(z, lab, 1.0)) == pytest.approx(want, rel=1e-6)
    assert want == pytest.approx(0.503204, abs=1e-6)
    want_half = (math.log(1 + math.exp(-2)) + math.log(2)) / 2      # τ = 0.5 doubles the similarities
    assert float(supcon_loss(z, lab, 0.5)) == pytest.approx(want_half, rel=1e-6)
    # normalisation: scaling an embedding changes nothing
    assert float(supcon_loss(z * torch.tensor([[3.0], [0.5], [2.0]]), lab, 1.0)) == pytest.approx(want, rel=1e-6)


def test_supcon_averages_over_several_positives():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    lab = torch.tensor([0, 0, 0])
    # anchor 1: positives 2 (sim 1) and 3 (sim 0), denominator e^1 + e^0
    a1 = -(math.log(math.e / (math.e + 1)) + math.log(1 / (math.e + 1))) / 2
    a3 = -(2 * math.log(1 / 2)) / 2          # anchor 3: sims 0, 0
    assert float(supcon_loss(z, lab, 1.0)) == pytest.approx((2 * a1 + a3) / 3, rel=1e-6)


def test_infonce_hand_case():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])      # views a, b
    z2 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])     # views a', b'
    e = math.exp
    l_a = -math.log(e(1) / (e(0) + e(1) + e(-1)))     # a vs b (0), a' (1, positive), b' (-1)
    l_b = -math.log(e(0) / (e(0) + e(0) + e(0)))      # b vs a, a', b': all 0
    l_a2 = l_a
    l_b2 = -math.log(e(0) / (e(-1) + e(0) + e(-1)))   # b' vs a (-1), b (0, positive), a' (-1)
    want = (l_a + l_b + l_a2 + l_b2) / 4
    assert float(infonce_loss(z1, z2, 1.0)) == pytest.approx(want, rel=1e-6)
    assert want == pytest.approx(0.616317, abs=1e-5)


def test_views():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(1000, 4)
    assert torch.equal(make_views(x, 1, 0.0, 0.0, g), x)
    v = make_views(x, 1, 0.0, 0.25, g)
    assert torch.equal(v[:, 0], x[:, 0])                     # θ untouched
    assert abs(float((v[:, 1:] == 0).float().mean()) - 0.25) < 0.03
    v = make_views(x, 1, 0.5, 0.0, g)
    assert abs(float((v[:, 1:] - 1).std()) - 0.5) < 0.03 and torch.equal(v[:, 0], x[:, 0])
    a = make_views(x, 1, 0.3, 0.1, torch.Generator().manual_seed(3))
    b = make_views(x, 1, 0.3, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["supcon", "infonce"])
def test_pretraining_lowers_the_contrastive_loss(kind, tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    y = (rng.random(n) < 0.05).astype(np.float32)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    x[:, 1] += 3 * y
    x = torch.from_numpy(x)
    opts = PretrainOptions(kind=kind, epochs=3, batch_size=128, batches_per_epoch=20, lr=3e-3)
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.SiLU(), torch.nn.Linear(16, 8))

    rec = pretrain(enc, 8, x, y, opts, seed=0, n_theta=1, workdir=tmp_path)
    assert rec.finished and len(rec.history) == 3
    assert rec.history[-1]["train_loss"] < rec.history[0]["train_loss"]
    assert rec.history[0]["positives_seen"] >= 20 * 32          # 25% of each batch oversampled
    assert (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize("path", ["rarefy.zoo.vae:VAEBackend", "rarefy.zoo.ft_transformer:FTTransformerBackend",
                                  "rarefy.zoo.nre:NREBackend"])
def test_every_encoder_backend_pretrains(path):
    import importlib

    mod, name = path.split(":")
    cls = getattr(importlib.import_module(mod), name)
    tr, te = separable(seed=0, n_bkg=1000, n_sig=50), separable(seed=2, n_bkg=300, n_sig=20)
    small = {"d_token": 8, "n_layers": 1} if "FT" in name else {}
    opts = {**FAST, "epochs": 1, "batches_per_epoch": 3, **small}
    if "FT" in name or "NRE" in name:
        opts["imbalance"] = [{"epochs": 1, "positive_ratio": 0.1}]
    plain = cls(seed=0, **opts).fit(tr).score(te)
    pre = cls(seed=0, **opts, pretrain={"kind": "supcon", "epochs": 1, "batches_per_epoch": 3, "batch_size": 64})
    s = pre.fit(tr).score(te)
    assert pre.pretrain_record.finished and np.isfinite(s).all()
    assert not np.allclose(s, plain)          # the backend started from the pretrained encoder
