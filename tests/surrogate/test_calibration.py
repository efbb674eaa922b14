"""The AR1 surrogate's leave-one-out calibration of its latent σ (``calibrate: loo``)."""

import numpy as np
import pandas as pd
import pytest
import torch

from rarefy import AR1Settings, AR1Surrogate, DesignSpace, InputError, Parameter, RateTable
from rarefy.config import config_from_dict
from rarefy.surrogate.ar1 import block_scale, design_clusters, loo_scale
from conftest import two_fidelity_table


def _table(space: DesignSpace, x: np.ndarray, y: np.ndarray, var: float, fidelity: str = "hf") -> RateTable:
    frame = pd.DataFrame(x, columns=space.names)
    frame["fidelity"], frame["rate"], frame["var"] = fidelity, y, var
    return RateTable(frame, space)


def _wiggly(x: np.ndarray) -> np.ndarray:
    return np.sin(14 * x[:, 0]) + 0.5 * np.cos(9 * x[:, 1])


def test_loo_scale_recovers_a_known_factor_and_never_narrows():
    rng = np.random.default_rng(0)
    s2, n = rng.uniform(0.5, 2.0, 4000), rng.uniform(0.1, 1.0, 4000)
    r = rng.normal(0, np.sqrt(4.0 * s2 + n))          # c = 2
    mle = loo_scale(r, s2, n, bound=0)
    assert mle == pytest.approx(2.0, rel=0.05)
    assert mle < loo_scale(r, s2, n) < 1.05 * mle     # the upper likelihood bound: sharp with many rows
    assert mle < loo_scale(r[:30], s2[:30], n[:30]) / 1.1   # ... and wide with few
    r = rng.normal(0, np.sqrt(0.25 * s2 + n))         # c = 0.5: clamped to 1
    assert loo_scale(r, s2, n, bound=0) == 1.0
    assert loo_scale(r, s2, n) < 1.05
    assert loo_scale(r[:2], s2[:2], n[:2]) == 1.0     # too few rows
    assert loo_scale(r, np.zeros_like(s2), n) == 1.0  # no latent variance to scale


def test_closed_form_loo_matches_brute_force_refits(space2d):
    # the hyperparameters fixed, drop each target row, condition on the rest, predict it
    for mean_uncertainty in (False, True):
        table = two_fidelity_table(space2d, n_lf=15, n_hf=6)
        sur = AR1Surrogate(space2d, ["lf", "hf"], AR1Settings(restarts=1, max_iter=30,
                                                               mean_uncertainty=mean_uncertainty)).fit(table)
        resid, latent, noise = sur._loo()
        m, d = sur.module, sur._data
        for i in torch.nonzero(d.fid == 1).flatten().tolist():
            keep = torch.arange(len(d.z)) != i
            x, f, z = d.x[keep], d.fid[keep], d.z[keep]
            with torch.no_grad():
                K = m.covariance(x, f, x, f) + torch.diag(d.v[keep] + m.nugget[f])
                k = m.covariance(d.x[i:i + 1], d.fid[i:i + 1], x, f)
                Kinv = torch.linalg.inv(K)
                mu = m.prior_mean(d.x[i:i + 1], d.fid[i:i + 1]) + k @ Kinv @ (z - m.prior_mean(x, f))
                var = m.prior_variance(d.x[i:i + 1], d.fid[i:i + 1]) - (k @ Kinv @ k.T).squeeze()
                if mean_uncertainty:   # universal kriging: the target's mean and ρ refitted without row i
                    H = sur._basis(x, f)
                    h = sur._basis(d.x[i:i + 1], d.fid[i:i + 1])
                    G = H.T @ Kinv @ H
                    beta = torch.linalg.solve(G, H.T @ Kinv @ (z - m.prior_mean(x, f)))
                    u = h - k @ Kinv @ H
                    mu = mu + u @ beta
                    var = var + (u @ torch.linalg.solve(G, u.T)).squeeze()
            torch.testing.assert_close(resid[i], (d.z[i] - mu).squeeze(), rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(latent[i], var.squeeze(), rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(noise[i], d.v[i] + m.nugget[1])


def _two_scale(x: np.ndarray) -> np.ndarray:
    return np.sin(3 * x[:, 0]) + x[:, 1] + 0.2 * np.sin(40 * x[:, 0]) * np.sin(40 * x[:, 1])


def test_calibration_restores_coverage_of_a_misspecified_gp():
    # a fine ripple that 40 runs cannot resolve: the stationary GP's σ, fitted to the
    # smooth part (and its nugget), covers the truth at about half the designs; the LOO
    # residuals show the misfit
    space = DesignSpace([Parameter("a", 0.0, 1.0), Parameter("b", 0.0, 1.0)])
    x = space.sample(40, method="sobol", seed=1).to_numpy()
    rng = np.random.default_rng(1)
    table = _table(space, x, _two_scale(x) + rng.normal(0, 0.05, len(x)), 0.05**2)
    test = space.sample(300, method="random", seed=2).to_numpy()
    cover = {}
    for mode in ("none", "loo"):
        sur = AR1Surrogate(space, ["hf"], AR1Settings(restarts=1, max_iter=100, calibrate=mode)).fit(table)
        mean, std = sur.predict(test)
        cover[mode] = float(np.mean(np.abs(mean.numpy() - _two_scale(test)) <= 2 * std.numpy()))
    assert cover["none"] < 0.7
    assert cover["loo"] >= 0.9
    assert sur.hyperparameters()["hf"]["calibration"] > 1.5


def test_factor_scales_predict_and_joint_not_the_mean(space2d, tmp_path):
    table = two_fidelity_table(space2d, n_lf=30, n_hf=8)
    plain = AR1Surrogate(space2d, ["lf", "hf"], AR1Settings(restarts=1, max_iter=60, calibrate="none")).fit(table)
    cal = AR1Surrogate(space2d, ["lf", "hf"], AR1Settings(restarts=1, max_iter=60)).fit(table)
    c = torch.tensor([cal.hyperparameters()[f]["calibration"] for f in ("lf", "hf")], dtype=torch.float64)
    assert (c >= 1).all() and plain.hyperparameters()["hf"]["calibration"] == 1.0
    x = np.random.default_rng(0).random((6, 2))
    for g, f in enumerate(("lf", "hf")):
        m0, s0 = plain.predict(x, f)
        m1, s1 = cal.predict(x, f)
        torch.testing.assert_close(m1, m0)
        torch.testing.assert_close(s1, c[g] * s0)
    fid = torch.tensor([0, 1, 1, 0, 1, 0])
    (m0, c0), (m1, c1) = plain.joint(x, fid), cal.joint(x, fid)
    torch.testing.assert_close(m1, m0)
    torch.testing.assert_close(c1, c0 * c[fid][:, None] * c[fid][None, :])
    # saved and loaded with the model
    cal.save(tmp_path / "m")
    again = AR1Surrogate.load(tmp_path / "m")
    assert again.hyperparameters()["hf"]["calibration"] == cal.hyperparameters()["hf"]["calibration"]
    torch.testing.assert_close(again.predict(x, "hf"), cal.predict(x, "hf"))
    torch.testing.assert_close(again.joint(x, fid), cal.joint(x, fid))


def test_few_target_rows_and_log_output(space2d):
    x = space2d.sample(2, method="sobol", seed=0).to_numpy()
    sur = AR1Surrogate(space2d, ["hf"], AR1Settings(restarts=1, max_iter=20)).fit(_table(space2d, x, [1.0, 2.0], 0.01))
    assert sur.hyperparameters()["hf"]["calibration"] == 1.0
    x = space2d.sample(40, method="sobol", seed=0).to_numpy()
    y = np.exp(_wiggly(x))
    sur = AR1Surrogate(space2d, ["hf"], AR1Settings(restarts=1, max_iter=1, nugget=False, output="log"))
    sur.fit(_table(space2d, x, y, (0.02 * y) ** 2))
    c = sur.hyperparameters()["hf"]["calibration"]
    assert np.isfinite(c) and c >= 1.0


def test_calibrate_setting_is_validated():
    with pytest.raises(ValueError, match="calibrate"):
        AR1Settings(calibrate="bootstrap")
    raw = {"space": {"parameters": {"x": {"low": 0, "high": 1}}}, "data": {"paths": "r.parquet"},
           "fidelities": [{"name": "hf", "value": "y"}]}
    assert config_from_dict(raw).surrogate.calibrate == "loo"
    assert config_from_dict({**raw, "surrogate": {"calibrate": "none"}}).surrogate.calibrate == "none"
    with pytest.raises(InputError, match="surrogate.calibrate"):
        config_from_dict({**raw, "surrogate": {"calibrate": "cv"}})


# ------------------------------------------------------------- calibration under shift (calibrate: loco)

def _shift_truth(x: np.ndarray) -> np.ndarray:
    return np.sin(5 * x[:, 0]) + 0.5 * x[:, 1] + 0.3 * np.sin(9 * x[:, 0] * x[:, 1])


def test_block_scale_recovers_a_known_factor_from_correlated_blocks():
    rng = np.random.default_rng(0)
    blocks, iid = [], []
    for _ in range(600):
        a = rng.normal(size=(3, 3))
        S = a @ a.T + 0.1 * np.eye(3)
        n = rng.uniform(0.1, 1.0, 3)
        r = rng.multivariate_normal(np.zeros(3), 4.0 * S + np.diag(n))   # c = 2
        blocks.append((r, S, n))
        iid += [(r[j:j + 1], S[j:j + 1, j:j + 1], n[j:j + 1]) for j in range(3)]
    assert block_scale(blocks, bound=0) == pytest.approx(2.0, rel=0.06)
    assert block_scale(blocks, bound=0) < block_scale(blocks) < 1.1 * block_scale(blocks, bound=0)
    # one residual per block is loo_scale's likelihood exactly
    r, s2, n = (np.array([b[i].item() for b in iid]) for i in range(3))
    assert block_scale(iid, bound=0) == pytest.approx(loo_scale(r, s2, n, bound=0), rel=1e-6)
    assert block_scale([(np.zeros(3), np.eye(3), np.ones(3))] * 5, bound=0) == 1.0   # no excess: 1


def test_design_clusters_are_deterministic_and_start_at_the_edges():
    u = np.random.default_rng(0).random((30, 2))
    lab = design_clusters(u, 3)
    assert set(lab) == {0, 1, 2}
    np.testing.assert_array_equal(lab, design_clusters(u.copy(), 3))
    np.testing.assert_array_equal(design_clusters(u[:3], 5), [0, 1, 2])   # fewer designs than clusters: LOO
    far = int(np.argmax(((u - u.mean(0)) ** 2).sum(1)))
    assert np.sum(lab == lab[far]) < 20                                   # the extreme design's cluster is a corner


def test_loco_widens_sigma_where_designs_shift_and_keeps_the_mean():
    # 16 runs with a < 0.6, tested at 0.6 <= a <= 0.9 (extrapolation): leaving clusters out
    # shows errors that leaving single runs out does not
    space = DesignSpace([Parameter("a", 0.0, 1.0), Parameter("b", 0.0, 1.0)])
    rng = np.random.default_rng(0)
    x = rng.random((16, 2))
    x[:, 0] *= 0.6
    table = _table(space, x, _shift_truth(x) + rng.normal(0, 0.02, len(x)), 0.02**2)
    xt = rng.random((200, 2))
    xt[:, 0] = 0.6 + 0.3 * xt[:, 0]
    sur = AR1Surrogate(space, ["hf"], AR1Settings(restarts=1, max_iter=60, calibrate="none")).fit(table)
    m0, s0 = sur.predict_numpy(xt)
    out = {}
    for mode in ("none", "loo", "loco"):
        sur.recalibrate(mode, table, loco_clusters=4)
        m, s = sur.predict_numpy(xt)
        np.testing.assert_array_equal(m, m0)                                # the mean is untouched
        c = sur.hyperparameters()["hf"]["calibration"]
        np.testing.assert_allclose(s, c * s0, rtol=1e-10)
        out[mode] = (c, float(np.mean(np.abs(m - _shift_truth(xt)) < 2 * s)))
    assert out["loco"][0] > out["loo"][0] * 1.1 and out["loo"][0] >= 1.0
    assert out["loco"][1] > out["loo"][1] >= out["none"][1]
    # fit() with the setting gives the same factor as recalibrate
    again = AR1Surrogate(space, ["hf"], AR1Settings(restarts=1, max_iter=60, calibrate="loco", loco_clusters=4)).fit(table)
    assert again.hyperparameters()["hf"]["calibration"] == pytest.approx(out["loco"][0], rel=1e-9)
    with pytest.raises(ValueError, match="table"):
        sur.recalibrate("loco")


def test_loco_settings_are_validated():
    with pytest.raises(ValueError, match="loco_clusters"):
        AR1Settings(calibrate="loco", loco_clusters=1)
    with pytest.raises(ValueError, match="loco_bound"):
        AR1Settings(loco_bound=-1.0)
    raw = {"space": {"parameters": {"x": {"low": 0, "high": 1}}}, "data": {"paths": "r.parquet"},
           "fidelities": [{"name": "hf", "value": "y"}]}
    s = config_from_dict({**raw, "surrogate": {"calibrate": "loco", "loco_clusters": 4, "loco_bound": 1.0}}).surrogate
    assert (s.calibrate, s.loco_clusters, s.loco_bound) == ("loco", 4, 1.0)
    for bad in ({"loco_clusters": 1}, {"loco_bound": -0.5}, {"loco_bound": float("inf")}):
        with pytest.raises(InputError, match="surrogate.loco"):
            config_from_dict({**raw, "surrogate": {"calibrate": "loco", **bad}})
