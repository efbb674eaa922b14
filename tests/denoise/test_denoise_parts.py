"""Pieces of the denoiser: sampling schedule, mixup, normalisation, calibration under oversampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from denoise_synth import config, synth

from rarefy.denoise import Mixup, Phase, Schedule, score, split_runs, train
from rarefy.denoise.metrics import expected_calibration_error, pr_auc
from rarefy.nn.sampling import PositiveStream, regular_batches
from rarefy.errors import InputError


def test_schedule_and_reuse_cap() -> None:
    sch = Schedule([Phase(2, 0.1, 3), Phase(1), Phase(3, 0.5, 1)])
    assert sch.total_epochs == 6
    assert [sch.at(e)[0] for e in range(6)] == [0, 0, 1, 2, 2, 2]
    assert Phase(1, 0.1).n_pool(1000) == 100 and Phase(1).n_pool(1000) == 0
    stream = PositiveStream(4, 3, np.random.default_rng(0))
    drawn = np.concatenate([stream.take(5) for _ in range(4)])
    assert len(drawn) == 12 and np.bincount(drawn).tolist() == [3, 3, 3, 3]  # each used max_reuse times, no more
    with pytest.raises(InputError):
        Phase(1, 1.5)


def test_regular_batches_full_pass_and_capped() -> None:
    eligible = np.zeros(1000, bool)
    eligible[::3] = True
    batches = regular_batches(eligible, 64, np.random.default_rng(0))
    allidx = np.concatenate(batches)
    assert np.array_equal(np.sort(allidx), np.flatnonzero(eligible))  # every eligible event once
    capped = regular_batches(eligible, 64, np.random.default_rng(0), n_batches=5)
    assert len(capped) == 5 and all(len(b) == 64 and eligible[b].all() for b in capped)


def test_mixup_pairs_signal_with_background() -> None:
    phi = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 2.0], [4.0, 0.0]])
    y = torch.tensor([1.0, 0.0, 0.0, 0.0])
    run = torch.tensor([7, 1, 2, 3])
    mix = Mixup(fraction=0.5, distribution="uniform", a=0.25, b=0.25)  # λ = 1/4 exactly
    p2, y2, r2, k = mix(phi, y, run, np.random.default_rng(0))
    assert k == 2
    changed = torch.nonzero(y2 != y).flatten()
    assert len(changed) == 2 and (y[changed] == 0).all() and torch.allclose(y2[changed], torch.tensor(0.25))
    for i in changed:
        torch.testing.assert_close(p2[i], 0.25 * phi[0] + 0.75 * phi[i])
        assert r2[i] == 7  # the mixture keeps the signal's run
    assert torch.equal(phi[0], p2[0]) and y2[0] == 1
    assert mix(phi, torch.zeros(4), run, np.random.default_rng(0))[3] == 0  # no signal, nothing mixed
    with pytest.raises(InputError):
        Mixup(distribution="gamma")


def test_metrics_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    # ranks: 0.8(+), 0.4(-), 0.35(+), 0.1(-): precision at the positives 1 and 2/3
    assert pr_auc(y, p) == pytest.approx((1 + 2 / 3) / 2)
    # 15 bins: 0.1 -> bin 1, 0.35 -> 5, 0.4 -> 6, 0.8 -> 12; each |y - p| / 4
    assert expected_calibration_error(y, p) == pytest.approx((0.1 + 0.65 + 0.4 + 0.2) / 4)
    assert np.isnan(pr_auc(np.zeros(3), np.ones(3)))


def test_phi_normalisation_uses_training_runs_only() -> None:
    data = synth(6, 100)
    train_ids = split_runs(data.run_ids, (0.5, 0.25, 0.25), seed=0)[0]
    data.phi[data.run_of(np.arange(data.n)) == data.run_ids.index(split_runs(data.run_ids, (0.5, 0.25, 0.25), 0)[1][0])] += 100.0
    res = train(data, config(epochs=1, split=[0.5, 0.25, 0.25]), seed=0)
    rows = np.concatenate([np.arange(data.run_starts[i], data.run_starts[i + 1])
                           for i, r in enumerate(data.run_ids) if r in train_ids])
    np.testing.assert_allclose(res.normalizer.phi_mean, data.phi[rows].astype(float).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.normalizer.phi_std, data.phi[rows].astype(float).std(0), rtol=1e-5)


def test_oversampling_keeps_scores_calibrated() -> None:
    # signal ~4 %; batches hold 30 % pool positives; the prior-shift offset must undo that
    data = synth(6, 1000, seed=1, base=-4.0)
    cfg = config(imbalance=[{"epochs": 3, "positive_ratio": 0.3, "max_reuse": 20}], batch_size=500,
                 early_stopping={"enabled": False})
    res = train(data, cfg, seed=0)
    h = res.history[-1]
    assert h["batch_prior"] > 0.2 and float(res.model.logit_offset) < -1.5
    sc = score(res, data)
    observed = data.y.mean()
    assert sc.p.mean() == pytest.approx(observed, rel=0.35)
    assert sc.p.mean() < 3 * observed  # without the offset the mean would be ~0.3


@pytest.mark.parametrize("loss", [{"name": "logit_adjusted"}, {"name": "focal", "params": {"gamma": 1.0}},
                                  "gaussian_nll", "brier"])
def test_attentive_model_and_other_losses_train(loss: object) -> None:
    data = synth(4, 200)
    res = train(data, config(epochs=1, loss=loss, model={"kind": "attentive", "encoder": [16], "decoder": [16],
                                                         "heads": 2}), seed=0)
    assert np.isfinite(res.history[0]["train_loss"]) and np.isfinite(res.history[0]["val_loss"])
    sc = score(res, data)
    assert np.isfinite(sc.p).all() and (sc.sigma >= 0).all()


def test_cuda_request_without_gpu_is_an_input_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match="cuda"):
        train(synth(3, 50), config(device="cuda"))
