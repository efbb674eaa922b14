"""Positive oversampling at 1e-7 imbalance: one signal event among 1e7 (80 MB of φ)."""

from __future__ import annotations

import numpy as np
import torch

from rarefy.denoise import EventData, split_runs, train


def test_one_positive_in_ten_million_events() -> None:
    n_runs, per_run = 10, 1_000_000
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((n_runs * per_run, 2), dtype=np.float32)
    y = np.zeros(n_runs * per_run, np.float32)
    ids = [f"run{i}" for i in range(n_runs)]
    train_ids, val_ids, _ = split_runs(ids, (0.8, 0.1, 0.1), seed=0)
    r = ids.index(train_ids[0])
    y[r * per_run + 12345] = 1.0  # the single positive, in a training run
    data = EventData(theta=np.linspace(0.0, 1.0, n_runs)[:, None], phi=phi, y=y,
                     run_starts=np.arange(n_runs + 1) * per_run, run_ids=ids)
    assert data.run_k().sum() == 1
    phases = [{"epochs": 1, "positive_ratio": 0.1, "max_reuse": 5},
              {"epochs": 1, "positive_ratio": 0.01, "max_reuse": 2},
              {"epochs": 1, "positive_ratio": 0.001, "max_reuse": 1}]
    cfg = {"model": {"encoder": [16, 16], "decoder": [16, 16]}, "imbalance": phases, "batch_size": 1000,
           "batches_per_epoch": 3, "val_events_per_run": 2000, "context_size": 16, "context_per_batch": 64,
           "progress": False, "tensorboard": False}
    res = train(data, cfg, seed=0)
    assert res.finished and [h["phase"] for h in res.history] == [0, 1, 2]
    assert res.split[0] == train_ids
    for h in res.history:
        assert np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"])
        assert h["pool_draws"] >= 1 and h["positives_seen"] >= 1  # the positive is seen in every phase
    # the reuse cap: at most max_reuse draws of the single pool event per epoch
    assert [h["pool_draws"] for h in res.history] == [5, 2, 1]
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    assert np.isfinite(float(res.model.logit_offset))
