"""FT-Transformer backend: tokenizer by hand, a separable toy, calibration, save/load, labels unread."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from rarefy.errors import InputError
from rarefy.zoo.ft_transformer import FeatureTokenizer, FTTransformer, FTTransformerBackend

from zoo_synth import FAST, relabel, separable

torch.set_num_threads(1)


def test_feature_tokenizer_hand_case():
    tok = FeatureTokenizer(2, 3)
    with torch.no_grad():
        tok.weight.copy_(torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.5, 0.0]]))
        tok.bias.copy_(torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 3.0]]))
    out = tok(torch.tensor([[2.0, -1.0]]))
    want = torch.tensor([[[2.0, 1.0, -2.0], [-3.0, -0.5, 3.0]]])
    assert torch.equal(out, want)


def test_cls_token_is_last_and_embedding_reads_it():
    torch.manual_seed(0)
    ft = FTTransformer(3, d_token=4, n_layers=1, n_heads=2, d_ffn=8).eval()
    x = torch.randn(5, 3)
    t = ft.tokens(x)
    assert t.shape == (5, 4, 4) and torch.equal(t[:, -1], ft.cls.expand(5, -1))
    assert torch.equal(t[:, :3], ft.tokenizer(x))
    # each event is scored on its own: batch composition does not change its logit
    assert torch.allclose(ft(x)[2:3], ft(x[2:3]), atol=1e-6)


def test_separable_toy_calibrated_save_load(tmp_path):
    tr, va, te = separable(seed=0), separable(seed=1, n_bkg=1000, n_sig=50), separable(seed=2, n_bkg=1000, n_sig=50)
    opts = {**FAST, "imbalance": [{"epochs": 3, "positive_ratio": 0.2}, {"epochs": 1}], "lr": 1e-2}
    be = FTTransformerBackend(seed=1, **opts, d_token=8, n_layers=1).fit(tr, va)
    assert be.probabilistic is True
    p = be.score(te)
    assert ((p >= 0) & (p <= 1)).all()
    assert roc_auc_score(te.y, p) > 0.95
    assert p[te.y == 1].mean() > 0.6 and p[te.y == 0].mean() < 0.1
    assert p.mean() == pytest.approx(te.y.mean(), abs=0.03)        # calibrated despite 20% oversampling
    assert np.array_equal(p, be.score(relabel(te, np.zeros_like(te.y))))
    be.save(tmp_path)
    assert np.array_equal(FTTransformerBackend.load(tmp_path).score(te), p)


def test_bad_options():
    with pytest.raises(InputError, match="multiple of n_heads"):
        FTTransformerBackend(d_token=6, n_heads=4)
    with pytest.raises(InputError, match="imbalance"):
        FTTransformerBackend(imbalance=[{"epochs": 0}])
