"""The zoo's shared trainer: objectives against hand-computed values, calibration, resume, logs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rarefy.errors import InputError
from rarefy.zoo.training import (Calibrated, ClassifierObjective, ReconstructionObjective, TrainOptions, logit,
                                 train_model, val_subset)

torch.set_num_threads(1)


class _Fixed(torch.nn.Module):
    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.z = torch.nn.Parameter(torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.z


def _bce(z: float, y: float) -> float:
    return -(y * math.log(1 / (1 + math.exp(-z))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-z))))


def test_classifier_objective_bce_and_pos_weight_hand_case():
    model = Calibrated(_Fixed([0.0, 1.0, -1.0]))
    y = torch.tensor([1.0, 0.0, 0.0])
    x = torch.zeros(3, 1)
    rng = np.random.default_rng(0)
    plain = ClassifierObjective().loss(model, x, y, batch_prior=0.3, rng=rng)
    assert float(plain.detach()) == pytest.approx((math.log(2) + math.log(1 + math.e) + math.log(1 + math.exp(-1))) / 3, rel=1e-6)
    weighted = ClassifierObjective(pos_weight=3.0).loss(model, x, y, batch_prior=0.3, rng=rng)
    want = (3 * _bce(0, 1) + _bce(1, 0) + _bce(-1, 0)) / 5
    assert float(weighted.detach()) == pytest.approx(want, rel=1e-6)
    assert want == pytest.approx(0.741196, abs=1e-5)


def test_classifier_evaluate_is_weighted_bce_of_calibrated_logits():
    model = Calibrated(_Fixed([0.0, 1.0]))
    model.logit_offset.fill_(-1.0)       # calibrated logits: -1, 0
    y = torch.tensor([1.0, 0.0])
    w = torch.tensor([1.0, 3.0])
    out = ClassifierObjective().evaluate(model, torch.zeros(2, 1), y, w)
    assert out["val_loss"] == pytest.approx((_bce(-1, 1) + 3 * _bce(0, 0)) / 4, rel=1e-6)


class _Sq(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor([1.0, 2.0]))

    def event_loss(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.c) ** 2).sum(1)


def test_reconstruction_objective_hand_case():
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [1.0, 0.0]])
    y = torch.tensor([0.0, 0.0, 1.0])
    obj = ReconstructionObjective()
    assert float(obj.loss(_Sq(), x, y, batch_prior=0.0, rng=np.random.default_rng(0)).detach()) == pytest.approx(8 / 3)
    out = obj.evaluate(_Sq(), x, y, torch.tensor([1.0, 3.0, 1.0]))
    assert out["val_loss"] == pytest.approx((0 + 3 * 4) / 4)      # background only, weighted
    assert out["val_roc_auc"] == pytest.approx((1 + 0.5 * 3) / 4)  # signal 4 > 0 (w 1), ties 4 (w 3)


def test_val_subset_keeps_signal_and_reweights_background():
    y = np.array([0] * 10 + [1, 1])
    idx, w = val_subset(y, 4, np.random.default_rng(0))
    assert set([10, 11]) <= set(idx.tolist()) and len(idx) == 6
    assert np.allclose(w[y[idx] == 1], 1.0) and np.allclose(w[y[idx] == 0], 10 / 4)
    idx, w = val_subset(y, 100, np.random.default_rng(0))
    assert len(idx) == 12 and np.all(w == 1)


def _logistic(n: int, a: float, b: float, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1)).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a + b * x[:, 0])))).astype(np.float32)
    return torch.from_numpy(x), y


def test_oversampled_training_recovers_calibrated_logistic_model():
    """True model logit = -5 + 1.5 x (≈1.5% signal); trained with 30% pool positives per batch
    the prior-shift offset must give back the intercept, and the offset equals the formula."""
    x, y = _logistic(40000, -5.0, 1.5, 0)
    torch.manual_seed(0)
    model = Calibrated(torch.nn.Linear(1, 1))
    opts = TrainOptions(imbalance=[{"epochs": 6, "positive_ratio": 0.3, "max_reuse": 50}], batch_size=512,
                        batches_per_epoch=60, lr=0.05, tensorboard=False, checkpoint=False)
    rec = train_model(model, ClassifierObjective(), x, y, options=opts, seed=1)
    row = rec.history[-1]
    pi = (y.sum() + 0.5) / (len(y) + 1)
    assert row["batch_prior"] > 0.25
    assert row["logit_offset"] == pytest.approx(logit(pi) - logit(row["batch_prior"]), rel=1e-6)
    lin = model.net
    assert float(lin.weight.detach()) == pytest.approx(1.5, abs=0.2)
    assert float((lin.bias + model.logit_offset).detach()) == pytest.approx(-5.0, abs=0.3)


def test_pos_weight_enters_the_offset():
    x, y = _logistic(20000, -3.0, 1.0, 1)
    torch.manual_seed(0)
    model = Calibrated(torch.nn.Linear(1, 1))
    opts = TrainOptions(epochs=2, batch_size=512, batches_per_epoch=20, pos_weight=4.0, tensorboard=False,
                        checkpoint=False)
    rec = train_model(model, ClassifierObjective(pos_weight=4.0), x, y, options=opts, seed=0)
    pb = rec.history[-1]["batch_prior"]
    pi = (y.sum() + 0.5) / (len(y) + 1)
    assert rec.history[-1]["logit_offset"] == pytest.approx(logit(pi) - logit(4 * pb / (4 * pb + 1 - pb)))


def test_resume_equals_uninterrupted_and_logs(tmp_path):
    x, y = _logistic(5000, -2.0, 1.0, 2)
    xv, yv = _logistic(2000, -2.0, 1.0, 3)
    opts = TrainOptions(imbalance=[{"epochs": 2, "positive_ratio": 0.2}, {"epochs": 2}], batch_size=128,
                        batches_per_epoch=10, mixup={"enabled": True, "fraction": 0.2},
                        early_stopping={"enabled": True, "patience": 10})

    def net() -> Calibrated:
        torch.manual_seed(0)
        return Calibrated(torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)))

    full = net()
    rec_full = train_model(full, ClassifierObjective(), x, y, options=opts, seed=5, x_val=xv, y_val=yv,
                           workdir=tmp_path / "a")
    part = net()
    r1 = train_model(part, ClassifierObjective(), x, y, options=opts, seed=5, x_val=xv, y_val=yv,
                     workdir=tmp_path / "b", stop_after_epochs=3)
    assert not r1.finished and r1.epochs_run == 3
    part = net()
    torch.manual_seed(123)                     # the checkpoint restores the RNG state
    r2 = train_model(part, ClassifierObjective(), x, y, options=opts, seed=5, x_val=xv, y_val=yv,
                     workdir=tmp_path / "b")
    assert r2.finished and r2.epochs_run == 4
    for k, v in full.state_dict().items():
        assert torch.equal(v, part.state_dict()[k]), k
    assert rec_full.best_epoch == r2.best_epoch
    assert any(r["mixed"] > 0 for r in rec_full.history)
    assert (tmp_path / "a" / "history.json").exists()
    assert list((tmp_path / "a" / "tensorboard").glob("events.out.tfevents.*"))
    with pytest.raises(InputError, match="other data"):
        train_model(net(), ClassifierObjective(), x[:4000], y[:4000], options=opts, seed=5, workdir=tmp_path / "b")


def test_bad_input():
    model = Calibrated(torch.nn.Linear(1, 1))
    x = torch.tensor([[0.0], [float("nan")]])
    with pytest.raises(InputError, match="NaN"):
        train_model(model, ClassifierObjective(), x, np.array([0, 1]), options=TrainOptions())
    with pytest.raises(InputError, match="labels"):
        train_model(model, ClassifierObjective(), torch.zeros(3, 1), np.array([0, 1]), options=TrainOptions())
