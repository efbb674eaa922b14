"""φ feature transform of the denoiser: the generic log rule, fitted on training runs only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from denoise_synth import config

from rarefy import DesignSpace
from rarefy.denoise import EventData, Normalizer, load_model, score, train
from rarefy.denoise.normalize import PhiMoments
from rarefy.errors import InputError


def _columns(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.gamma(2.0, 1.0, n),                    # energy-like: skew 1.41 -> logged
                            rng.uniform(0.0, 2 * np.pi, n),             # azimuth: positive but not skewed
                            np.sqrt(rng.uniform(100.0**2, 300.0**2, n)),  # radius: left-skewed
                            rng.normal(0.0, 1.0, n)])                   # has negatives


def test_log_rule_picks_positive_right_skewed_columns_and_streams() -> None:
    x = _columns(60_000)
    whole, parts = PhiMoments(4), PhiMoments(4)
    whole.update(x)
    for i in range(0, len(x), 7_000):
        parts.update(x[i:i + 7_000])
    np.testing.assert_array_equal(whole.log_mask(), [True, False, False, False])
    np.testing.assert_array_equal(parts.log_mask(), whole.log_mask())
    mean, std = parts.mean_std(parts.log_mask())
    np.testing.assert_allclose(mean[0], np.log(x[:, 0]).mean(), rtol=1e-9)
    np.testing.assert_allclose(std[0], np.log(x[:, 0]).std(), rtol=1e-9)
    np.testing.assert_allclose(mean[1:], x[:, 1:].mean(axis=0), rtol=1e-9, atol=1e-12)
    with pytest.raises(InputError):
        parts.mean_std(np.array([False, False, False, True]))     # normal column has values <= 0


def test_normalizer_logs_marked_columns_and_round_trips() -> None:
    x = _columns(1_000, seed=1)
    norm = Normalizer(np.zeros(1), np.ones(1), np.array([0.5, 3.0, 200.0, 0.0]), np.array([0.8, 1.8, 50.0, 1.0]),
                      phi_log=np.array([True, False, False, False]))
    z = norm.phi(x).numpy()
    np.testing.assert_allclose(z[:, 0], (np.log(x[:, 0]) - 0.5) / 0.8, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z[:, 2], (x[:, 2] - 200.0) / 50.0, rtol=1e-5, atol=1e-5)
    again = Normalizer.from_state_dict(norm.state_dict())
    np.testing.assert_array_equal(again.phi(x).numpy(), z)
    old = {k: v for k, v in norm.state_dict().items() if k != "phi_log"}   # a model saved before the option
    assert not Normalizer.from_state_dict(old).phi_log.any()


def _events(seed: int = 0) -> EventData:
    rng = np.random.default_rng(seed)
    n_runs, per = 6, 300
    theta = np.repeat(rng.random((n_runs, 1)), per, axis=0)
    energy = rng.gamma(2.0, 1.0, n_runs * per)
    z = rng.normal(size=n_runs * per)
    logit = -2.0 - 1.5 * np.log(energy) + 2.0 * theta[:, 0]
    y = (rng.random(len(z)) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return EventData.from_arrays(theta, np.column_stack([energy, z]), y, np.repeat([f"r{i}" for i in range(n_runs)], per),
                                 theta_names=["t"], phi_names=["e", "z"])


def test_training_with_auto_log_saves_and_scores(tmp_path) -> None:
    data = _events()
    cfg = config(epochs=2, split=[0.7, 0.3, 0.0], phi_log="auto")
    res = train(data, cfg, out=tmp_path, space=DesignSpace.from_bounds({"t": (0.0, 1.0)}), seed=0)
    np.testing.assert_array_equal(res.normalizer.phi_log, [True, False])
    model, norm, _ = load_model(tmp_path)
    np.testing.assert_array_equal(norm.phi_log, [True, False])
    s = score(model, data, norm, seed=1)
    assert np.isfinite(s.p).all() and ((s.p > 0) & (s.p < 1)).all()
    torch.testing.assert_close(norm.phi(data.phi), res.normalizer.phi(data.phi))


def test_bad_phi_log_names_fail_before_training() -> None:
    data = _events()
    with pytest.raises(InputError, match="not φ columns"):
        train(data, config(epochs=1, split=[0.7, 0.3, 0.0], phi_log=["energy"]), seed=0)
    with pytest.raises(InputError, match="cannot be log-transformed"):
        train(data, config(epochs=1, split=[0.7, 0.3, 0.0], phi_log=["z"]), seed=0)
