"""Merger-rate models: closed-form flat ΛCDM, Madau–Dickinson SFRD, the full R(θ) integral on hand-computable cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rarefy.config import config_from_dict
from rarefy.data.mapping import load_rate_table
from rarefy.jobs.fit import build_surrogate
from rarefy.errors import InputError
from rarefy.inference.cosmology import FlatLCDM, madau_dickinson_sfrd, madau_fragos_dlogz
from rarefy.inference.rates import FullRateModel, SimpleRateModel
from rarefy.inference.run import make_posterior

NAMES = ["log10_z", "alpha"]
ZB = (-4.0, -1.5)


def test_lookback_time_closed_form():
    c = FlatLCDM(70.0, 0.3)
    # Einstein–de Sitter limit check by hand is not available; instead integrate dz/((1+z)H) numerically
    from scipy.integrate import quad

    h_inv_myr = 977_792.2 / 70.0
    for z in (0.1, 1.0, 5.0):
        num = quad(lambda x: 1.0 / ((1 + x) * math.sqrt(0.3 * (1 + x) ** 3 + 0.7)), 0, z)[0] * h_inv_myr
        assert c.lookback_myr(z) == pytest.approx(num, rel=1e-7)
    t = np.array([0.0, 100.0, 5000.0, 13_000.0])
    assert np.allclose(c.lookback_myr(c.z_at_lookback(t)), t, atol=1e-6)
    assert np.isinf(c.z_at_lookback(c.age_myr(0.0) + 1.0))
    assert madau_dickinson_sfrd(np.inf) == 0.0


def test_lookback_time_matches_astropy():
    astropy_cosmo = pytest.importorskip("astropy.cosmology", reason="astropy is not installed")
    ref = astropy_cosmo.FlatLambdaCDM(H0=67.66, Om0=0.3097, Tcmb0=0)
    z = np.array([0.05, 0.5, 2.0, 8.0])
    assert np.allclose(FlatLCDM().lookback_myr(z), ref.lookback_time(z).to("Myr").value, rtol=1e-6)


def test_madau_dickinson_by_hand():
    assert madau_dickinson_sfrd(0.0) == pytest.approx(0.015 / (1 + (1 / 2.9) ** 5.6))
    assert madau_dickinson_sfrd(1.0) == pytest.approx(0.015 * 2**2.7 / (1 + (2 / 2.9) ** 5.6))
    assert madau_fragos_dlogz(1.0) == pytest.approx(-0.074)


def test_delta_delay_single_metallicity_by_hand():
    """All mergers after τ = 5 Gyr, one metallicity, no evolution: R = ε(θ) ψ(z(τ)) · 1e9."""
    tau, m_b = 5000.0, 500.0
    model = FullRateModel(m_b, [tau] * 4, NAMES, ZB, z_spread_dex=0.0, z_evolution=False)
    theta = np.array([[-3.0, 1.0], [-2.0, 5.0]])
    pts, w = model.points(theta)
    assert np.allclose(pts, theta[:, None, :])                     # every point is θ itself
    z_tau = FlatLCDM().z_at_lookback(tau)
    assert 0.4 < float(z_tau) < 0.6                                 # 5 Gyr ago: z ≈ 0.49
    psi = float(madau_dickinson_sfrd(z_tau))
    assert np.allclose(w.sum(1), psi * 1e9 / m_b)
    # a rate per binary r(θ) = 2e-3: R = 2e-3 / 500 Msun * ψ * 1e9
    assert float((w * 2e-3).sum(1)[0]) == pytest.approx(2e-3 / m_b * psi * 1e9)
    # evolution on: the metallicity is shifted by Δ(z(τ)) = −0.074 z^1.34
    evo = FullRateModel(m_b, [tau], NAMES, ZB, z_spread_dex=0.0, z_evolution=True)
    pts, _ = evo.points(theta)
    assert pts[0, 0, 0] == pytest.approx(-3.0 - 0.074 * float(z_tau) ** 1.34)
    # τ -> 0: the simplified model with sfrd0 = ψ(0)
    now = FullRateModel(m_b, [0.0], NAMES, ZB, z_spread_dex=0.0)
    assert now.points(theta)[1][0, 0] == pytest.approx(SimpleRateModel(m_b, float(madau_dickinson_sfrd(0.0))).scale)


def test_metallicity_spread_weights():
    model = FullRateModel(1.0, [10.0, 3000.0, 9000.0], NAMES, ZB, z_spread_dex=0.3, grid=40)
    pts, w = model.points(np.array([[-2.8, 1.0]]))
    centres = pts[0, :, 0]
    # the weights integrate the SFRD over the delay times (all metallicity mass, tails included)
    assert w.sum() == pytest.approx(model.sfrd_weight() * 1e9)
    # the weighted mean metallicity is the ψ-weighted median μ(z(t_d)) (normal well inside the range)
    z = FlatLCDM().z_at_lookback(np.array([10.0, 3000.0, 9000.0]))
    psi = madau_dickinson_sfrd(z)
    mu = np.sum(psi * (-2.8 + madau_fragos_dlogz(z))) / psi.sum()
    assert np.sum(w[0] * centres) / w.sum() == pytest.approx(mu, abs=0.01)
    # a metallicity far below the range puts all its mass into the lowest cell
    _, w_low = model.points(np.array([[-9.0, 1.0]]))
    assert w_low[0, 0] == pytest.approx(w_low.sum())


def _surrogate_config(tmp_path, rate_model):
    rng = np.random.default_rng(2)
    x = rng.uniform([ZB[0], 0.0], [ZB[1], 10.0], size=(40, 2))
    rate = 1e-3 * (4.5 + x[:, 0]) + 1e-5 * x[:, 1]                     # linear in log10 Z
    pd.DataFrame({"log10_z": x[:, 0], "alpha": x[:, 1], "rate": rate, "sd": 1e-6}).to_csv(tmp_path / "r.csv",
                                                                                        index=False)
    pd.DataFrame({"t_merge_myr": [2000.0] * 3}).to_parquet(tmp_path / "delays.parquet")
    return {
        "seed": 1,
        "space": {"parameters": {"log10_z": {"low": ZB[0], "high": ZB[1]}, "alpha": {"low": 0, "high": 10}}},
        "data": {"paths": [str(tmp_path / "r.csv")]},
        "fidelities": [{"name": "hf", "value": "rate", "noise": {"std": "sd"}}],
        "surrogate": {"kind": "pce", "degree": 1},
        "infer": {"msun_per_event": 500.0, "rate_model": rate_model, "walkers": 8, "steps": 40, "burn": 10,
                  "full": {"delays": "delays.parquet", "z_spread_dex": 0.0, "z_evolution": False}},
    }


def test_full_model_through_the_posterior(tmp_path):
    """With a surrogate of a linear ε: full = ε(θ) ψ(z(2 Gyr)) (σ_Z = 0); with a spread, the same ± cells."""
    raw = _surrogate_config(tmp_path, "full")
    cfg = config_from_dict(raw, base=tmp_path)
    sur = build_surrogate(cfg).fit(load_rate_table(cfg))
    post = make_posterior(cfg, sur)
    theta = np.array([[-3.0, 2.0], [-2.0, 8.0]])
    mean, std = post.predicted_rate(theta)
    psi = float(madau_dickinson_sfrd(FlatLCDM().z_at_lookback(2000.0)))
    m_sur, s_sur = sur.predict(theta, "hf")
    assert np.allclose(mean, m_sur.numpy() / 500.0 * psi * 1e9, rtol=1e-9)
    # three identical points are perfectly correlated: std is that of one point, not 1/sqrt(3) of it
    assert np.allclose(std, s_sur.numpy() / 500.0 * psi * 1e9, rtol=1e-6)
    # metallicity spread of 0.2 dex around -3 (inside the range): ε is linear, so R is unchanged up to the cells
    raw["infer"]["full"]["z_spread_dex"] = 0.2
    raw["infer"]["full"]["grid"] = 64
    spread = make_posterior(config_from_dict(raw, base=tmp_path), sur)
    m2, _ = spread.predicted_rate(theta[:1])
    assert m2[0] == pytest.approx(mean[0], rel=1e-3)
    # the simple model at the same θ
    simple = make_posterior(config_from_dict(_surrogate_config(tmp_path, "simple"), base=tmp_path), sur)
    ms, _ = simple.predicted_rate(theta)
    assert np.allclose(ms, m_sur.numpy() / 500.0 * 0.015 * 1e9)


def test_full_model_config_errors(tmp_path):
    raw = _surrogate_config(tmp_path, "full")
    del raw["infer"]["full"]
    with pytest.raises(InputError, match="full"):
        config_from_dict(raw, base=tmp_path)
    raw = _surrogate_config(tmp_path, "full")
    raw["infer"]["full"]["delay_column"] = "nope"
    cfg = config_from_dict(raw, base=tmp_path)
    sur = build_surrogate(cfg).fit(load_rate_table(cfg))
    with pytest.raises(InputError, match="nope"):
        make_posterior(cfg, sur)
