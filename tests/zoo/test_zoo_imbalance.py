"""Extreme imbalance: the zoo's torch backends train on a handful of positives without NaNs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rarefy.zoo.autoencoder import AutoencoderBackend
from rarefy.zoo.bdt import BDTFTTransformerBackend
from rarefy.zoo.ft_transformer import FTTransformerBackend
from rarefy.zoo.nre import NREBackend
from rarefy.zoo.vae import VAEBackend

from zoo_synth import FAST, separable

torch.set_num_threads(1)

SMALL = {FTTransformerBackend: {"d_token": 8, "n_layers": 1}, BDTFTTransformerBackend: {"d_token": 8, "n_layers": 1,
         "n_trees": 3, "num_leaves": 4}, NREBackend: {"hidden": [16, 16]}, AutoencoderBackend: {}, VAEBackend: {}}


@pytest.mark.parametrize("cls", list(SMALL), ids=lambda c: c.name)
def test_two_positives_in_twenty_thousand(cls):
    tr = separable(n_bkg=20000, n_sig=2, seed=0)          # 1e-4
    va = separable(n_bkg=2000, n_sig=0, seed=1)           # validation without any signal
    te = separable(n_bkg=2000, n_sig=20, seed=2)
    opts = {**FAST, "epochs": 2, "batches_per_epoch": 10, **SMALL[cls]}
    if cls in (FTTransformerBackend, BDTFTTransformerBackend, NREBackend):
        opts["imbalance"] = [{"epochs": 2, "positive_ratio": 0.05, "max_reuse": 100}, {"epochs": 1}]
    be = cls(seed=0, **opts).fit(tr, va)
    s = be.score(te)
    assert np.isfinite(s).all()
    assert all(np.isfinite(r["train_loss"]) for r in be.record.history)
    if be.probabilistic:
        assert ((s >= 0) & (s <= 1)).all()
        # the prior-shift correction keeps the background at the ~1e-4 base rate, not the 5% batch rate
        assert np.median(s[te.y == 0]) < 0.01
