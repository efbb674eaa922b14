import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from rarefy import AR1Settings, AR1Surrogate, RateTable
from conftest import truth_hf, two_fidelity_table

FAST = AR1Settings(restarts=2, max_iter=100)


@pytest.fixture(scope="module")
def fitted():
    from rarefy import DesignSpace, Parameter

    space = DesignSpace([Parameter("a", 0.0, 1.0), Parameter("b", 0.0, 1.0)])
    table = two_fidelity_table(space)
    return AR1Surrogate(space, ["lf", "hf"], FAST, seed=0).fit(table), table


def test_multi_fidelity_beats_hf_only(fitted):
    sur, table = fitted
    x = sur.space.sample(200, method="random", seed=9).to_numpy()
    mean, std = sur.predict(x, "hf")
    err_mf = np.mean((mean.numpy() - truth_hf(x)) ** 2)
    hf_only = AR1Surrogate(sur.space, ["hf"], FAST).fit(table.subset("hf"))
    err_hf = np.mean((hf_only.predict(x, "hf")[0].numpy() - truth_hf(x)) ** 2)
    assert err_mf < 0.25 * err_hf
    # calibrated-ish: most truths within 3 sigma
    z = np.abs(mean.numpy() - truth_hf(x)) / std.numpy()
    assert np.mean(z < 3) > 0.9


def test_rho_is_recovered_in_output_units(fitted):
    sur, _ = fitted
    rho = sur.rho(np.array([[0.5, 0.5]]))
    assert rho.shape == (1, 1)
    assert 1.2 < float(rho) < 1.8  # true value 1.5


def test_predict_is_batched_and_differentiable(fitted):
    sur, _ = fitted
    x = torch.rand(3, 7, 2, dtype=torch.float64, requires_grad=True)
    mean, std = sur.predict(x, "hf")
    assert mean.shape == (3, 7) and std.shape == (3, 7)
    (mean.sum() + std.sum()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # batch entries equal separate calls
    m0, s0 = sur.predict(x[1].detach(), "hf")
    torch.testing.assert_close(m0, mean[1].detach())


def test_observed_std_adds_nugget_and_point_noise(fitted):
    sur, _ = fitted
    x = np.array([[0.3, 0.3], [0.7, 0.1]])
    _, latent = sur.predict(x, "hf")
    _, obs = sur.predict(x, "hf", observed=True)
    _, noisy = sur.predict(x, "hf", observed=True, noise_var=[0.04, 0.0])
    assert (obs >= latent).all()
    assert torch.isclose(noisy[0] ** 2, obs[0] ** 2 + 0.04) and torch.isclose(noisy[1], obs[1])


def test_save_load_round_trip(fitted, tmp_path):
    sur, _ = fitted
    sur.save(tmp_path / "m")
    again = AR1Surrogate.load(tmp_path / "m")
    x = np.random.default_rng(0).random((5, 2))
    for f in ("lf", "hf"):
        torch.testing.assert_close(again.predict(x, f), sur.predict(x, f))


def test_same_seed_same_fit(space2d):
    table = two_fidelity_table(space2d, n_lf=20, n_hf=5)
    a = AR1Surrogate(space2d, ["lf", "hf"], FAST, seed=3).fit(table)
    b = AR1Surrogate(space2d, ["lf", "hf"], FAST, seed=3).fit(table)
    x = np.random.default_rng(1).random((4, 2))
    assert torch.equal(a.predict(x)[0], b.predict(x)[0])


def test_per_point_noise_is_used(space2d):
    # two observations at the same design: a precise one and a very noisy outlier
    df = pd.DataFrame({"a": [0.5, 0.5, 0.1, 0.9], "b": [0.5, 0.5, 0.1, 0.9], "fidelity": "hf",
                       "rate": [1.0, 3.0, 1.0, 1.0], "var": [1e-4, 4.0, 1e-4, 1e-4]})
    sur = AR1Surrogate(space2d, ["hf"], AR1Settings(restarts=1, nugget=False)).fit(RateTable(df, space2d))
    mean, _ = sur.predict(np.array([[0.5, 0.5]]))
    assert abs(float(mean) - 1.0) < 0.05


@pytest.mark.parametrize("kernel, rho", [("rbf", "constant"), ("matern52", "linear")])
def test_kernel_and_rho_options(space2d, kernel, rho):
    table = two_fidelity_table(space2d, n_lf=25, n_hf=6)
    sur = AR1Surrogate(space2d, ["lf", "hf"], AR1Settings(kernel=kernel, rho=rho, restarts=1)).fit(table)
    mean, std = sur.predict(np.array([[0.2, 0.4]]))
    assert torch.isfinite(mean).all() and (std > 0).all()


def test_three_fidelities_non_nested(space2d):
    rng = np.random.default_rng(0)
    frames = []
    for i, (name, n) in enumerate((("f0", 30), ("f1", 12), ("f2", 5))):
        x = rng.random((n, 2))
        y = (np.sin(3 * x[:, 0]) + x[:, 1]) * (1 + 0.2 * i) + 0.1 * i
        frames.append(pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "fidelity": name, "rate": y, "var": 1e-4}))
    table = RateTable(pd.concat(frames, ignore_index=True), space2d)
    sur = AR1Surrogate(space2d, ["f0", "f1", "f2"], FAST).fit(table)
    x = rng.random((50, 2))
    truth = (np.sin(3 * x[:, 0]) + x[:, 1]) * 1.4 + 0.2
    assert np.sqrt(np.mean((sur.predict(x, "f2")[0].numpy() - truth) ** 2)) < 0.15


def test_duplicates_and_tiny_noise_never_crash(space2d, caplog):
    x = np.array([[0.2, 0.2], [0.2, 0.2], [0.2, 0.2 + 1e-12], [0.8, 0.5], [0.5, 0.9]])
    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "fidelity": "hf", "rate": [1.0, 1.1, 0.9, 2.0, 1.5], "var": 1e-9})
    table = RateTable(df, space2d)
    with caplog.at_level(logging.WARNING):
        for nugget in (True, False):
            sur = AR1Surrogate(space2d, ["hf"], AR1Settings(restarts=2, nugget=nugget)).fit(table)
            mean, std = sur.predict(x)
            assert torch.isfinite(mean).all() and torch.isfinite(std).all()
    # in two fidelities, identical designs across and within fidelities
    df2 = pd.concat([df.assign(fidelity="lf"), df], ignore_index=True)
    sur = AR1Surrogate(space2d, ["lf", "hf"], AR1Settings(restarts=1)).fit(RateTable(df2, space2d))
    assert torch.isfinite(sur.predict(x)[0]).all()


def test_unknown_fidelity_and_missing_rows(space2d):
    table = two_fidelity_table(space2d, n_lf=10, n_hf=3)
    sur = AR1Surrogate(space2d, ["lf", "hf"], AR1Settings(restarts=1)).fit(table)
    with pytest.raises(ValueError, match="unknown fidelity"):
        sur.predict(np.array([[0.1, 0.1]]), "mid")
    with pytest.raises(ValueError, match="no rows for fidelities"):
        AR1Surrogate(space2d, ["lf", "mid", "hf"]).fit(table)


def test_joint_posterior_matches_marginals_and_mixes_fidelities(fitted):
    sur, _ = fitted
    x = torch.rand(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    mean, cov = sur.joint(x, "hf")
    m2, s2 = sur.predict(x, "hf")
    torch.testing.assert_close(mean, m2)
    torch.testing.assert_close(torch.diagonal(cov), s2**2, rtol=1e-6, atol=1e-9)
    assert torch.linalg.eigvalsh(cov).min() > -1e-8
    fid = torch.tensor([0, 1, 0, 1, 0, 1])
    mm, cc = sur.joint(x, fid)
    torch.testing.assert_close(mm[1::2], mean[1::2])
    torch.testing.assert_close(mm[0::2], sur.predict(x[0::2], "lf")[0])
    # LF and HF at the same design are positively correlated a posteriori (rho ~ 1.5), far
    # more than LF here and HF at the opposite corner
    xx = torch.stack([x[0], x[0], 1 - x[0]])
    _, c3 = sur.joint(xx, torch.tensor([0, 1, 1]))
    corr = c3 / torch.sqrt(torch.outer(torch.diagonal(c3), torch.diagonal(c3)))
    assert float(corr[0, 1]) > 0.3
    assert float(corr[0, 1]) > float(corr[0, 2]) + 0.2
    assert sur.noise_variance("hf") >= 0


def test_rho_prior_pulls_a_sign_flipped_link_towards_plus_one():
    """HF = -LF: flat ρ learns about -1 (standardised); a tight Normal(1, 0.05) prior holds it near +1."""
    from rarefy import DesignSpace, Parameter

    space = DesignSpace([Parameter("a", 0.0, 1.0)])
    x = np.linspace(0, 1, 12)
    frame = pd.DataFrame({
        "a": np.concatenate([x, x[::3]]),
        "fidelity": ["lf"] * 12 + ["hf"] * 4,
        "rate": np.concatenate([np.sin(4 * x), -np.sin(4 * x[::3])]),
        "var": 1e-4,
    })
    table = RateTable(frame, space)
    flat = AR1Surrogate(space, ["lf", "hf"], FAST, seed=0).fit(table)
    tight = AR1Surrogate(space, ["lf", "hf"], AR1Settings(restarts=2, max_iter=100, rho_prior=0.05), seed=0).fit(table)
    assert float(flat.module.rho0[1].detach()) < -0.5
    assert abs(float(tight.module.rho0[1].detach()) - 1.0) < 0.2
    with pytest.raises(ValueError, match="rho_prior"):
        AR1Settings(rho_prior=0.0)


def test_mean_uncertainty_is_the_vague_constant_mean_limit(space2d):
    """One fidelity: the added variance is that of a constant mean with a flat prior (universal kriging),
    i.e. the limit of adding c² to every kernel entry as c → ∞."""
    table = two_fidelity_table(space2d).subset("hf")
    # calibrate="none": the formula of the mean's variance alone, without the LOO factor
    sur = AR1Surrogate(space2d, ["hf"], AR1Settings(restarts=1, max_iter=100, mean_uncertainty=True, calibrate="none"),
                       seed=0).fit(table)
    plain = AR1Surrogate(space2d, ["hf"], AR1Settings(restarts=1, max_iter=100, calibrate="none"), seed=0).fit(table)
    x = space2d.sample(5, method="random", seed=4).to_numpy()
    m_mu, s_mu = sur.predict(x, "hf")
    m_pl, s_pl = plain.predict(x, "hf")
    torch.testing.assert_close(m_mu, m_pl)
    m, d = sur.module, sur._data
    with torch.no_grad():
        c2 = 1e6
        K = m.covariance(d.x, d.fid, d.x, d.fid) + torch.diag(d.v + m.nugget[d.fid]) + c2
        xs = sur._x(x)
        fid = torch.zeros(len(x), dtype=torch.long)
        ks = m.covariance(xs, fid, d.x, d.fid) + c2
        var = m.prior_variance(xs, fid) + c2 - (ks * torch.linalg.solve(K, ks.T).T).sum(-1)
    expected = var * sur._y_std[0] ** 2
    torch.testing.assert_close(s_mu**2, expected, rtol=1e-4, atol=0.0)
    assert bool((s_mu > s_pl).all())


def test_mean_uncertainty_widens_the_target_and_keeps_joint_consistent(space2d, tmp_path):
    table = two_fidelity_table(space2d, n_hf=5)
    plain = AR1Surrogate(space2d, ["lf", "hf"], replace(FAST, calibrate="none"), seed=0).fit(table)
    sur = AR1Surrogate(space2d, ["lf", "hf"], AR1Settings(restarts=2, max_iter=100, mean_uncertainty=True,
                                                          calibrate="none"), seed=0).fit(table)
    x = space2d.sample(20, method="random", seed=5).to_numpy()
    m_mu, s_mu = sur.predict(x, "hf")
    m_pl, s_pl = plain.predict(x, "hf")
    torch.testing.assert_close(m_mu, m_pl)
    assert bool((s_mu >= s_pl - 1e-12).all()) and float((s_mu / s_pl).max()) > 1.05
    mean, cov = sur.joint(torch.tensor(x[:6]), torch.tensor([0, 1, 0, 1, 0, 1]))
    torch.testing.assert_close(torch.diagonal(cov)[1::2], s_mu[:6][1::2] ** 2, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(torch.diagonal(cov)[0::2], sur.predict(x[:6][0::2], "lf")[1] ** 2, rtol=1e-6,
                               atol=1e-12)
    assert torch.linalg.eigvalsh(cov).min() > -1e-8
    loaded = AR1Surrogate.load(sur.save(tmp_path))
    torch.testing.assert_close(loaded.predict(x, "hf")[1], s_mu)


def _reference_loss(sur, m):
    """The fit's loss built from the general covariance and plain autograd through the Cholesky factor."""
    import math

    from rarefy.surrogate.linalg import safe_cholesky

    d = sur._data
    K = m.covariance(d.x, d.fid, d.x, d.fid) + torch.diag(d.v + m.nugget[d.fid])
    L = safe_cholesky(K, quiet=True)
    r = (d.z - m.prior_mean(d.x, d.fid)).unsqueeze(-1)
    alpha = torch.cholesky_solve(r, L)
    n = len(d.z)
    nll = 0.5 * (r * alpha).sum() + torch.log(torch.diagonal(L)).sum() + 0.5 * n * math.log(2 * math.pi)
    return (nll - m.log_prior()) / n


@pytest.mark.parametrize("kernel, rho, cached", [("matern52", "constant", True), ("matern52", "linear", False),
                                                 ("rbf", "linear", True), ("rbf", "constant", False)])
def test_fit_loss_and_gradient_match_the_general_covariance(space2d, kernel, rho, cached):
    """The fit's cached-geometry loss and its closed-form gradient equal autograd through covariance()."""
    from rarefy.surrogate.ar1 import _AR1Module, _Geometry

    rng = np.random.default_rng(5)
    frames = []
    for i, (name, n) in enumerate((("f0", 25), ("f1", 9), ("f2", 4))):
        x = rng.random((n, 2))
        frames.append(pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "fidelity": name,
                                    "rate": np.sin(3 * x[:, 0]) + x[:, 1] * (1 + i), "var": 1e-3}))
    frame = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=1)  # fidelities interleaved
    frame = pd.concat([frame, frame.iloc[:2].assign(fidelity="f2")], ignore_index=True)  # shared designs
    settings = AR1Settings(kernel=kernel, rho=rho, restarts=1, max_iter=3, rho_prior=0.5)
    sur = AR1Surrogate(space2d, ["f0", "f1", "f2"], settings).fit(RateTable(frame, space2d))
    d = sur._data
    sur._geometry = _Geometry(d.x, d.fid, 3, max_entries=10**9 if cached else 0)
    gen = torch.Generator().manual_seed(0)
    for restart in range(3):
        m = _AR1Module(3, 2, settings)
        sur._initialise(m, restart, gen)
        with torch.no_grad():
            m.rho_w.normal_(0.0, 0.3, generator=gen) if rho == "linear" else None
        params = [p for p in m.parameters() if p.requires_grad]
        ref = _reference_loss(sur, m)
        new = sur._neg_log_posterior(m)
        torch.testing.assert_close(new, ref, rtol=1e-12, atol=1e-12)
        for g_new, g_ref in zip(torch.autograd.grad(new, params), torch.autograd.grad(ref, params)):
            torch.testing.assert_close(g_new, g_ref, rtol=1e-9, atol=1e-11)


def test_log_prior_matches_gpytorch_priors():
    """The written-out prior densities equal GPyTorch's (whose parameters are float32: 1e-6 relative)."""
    from rarefy.surrogate.ar1 import _AR1Module

    m = _AR1Module(3, 4, AR1Settings(rho_prior=0.7))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.5 * torch.randn(p.shape, dtype=p.dtype, generator=gen))
    ref = sum(prior.log_prob(closure(module)).sum() for _, module, prior, closure, _ in m.named_priors())
    ref = ref + m.nugget_prior.log_prob(m.nugget).sum() - 0.5 * (((m.rho0[1:] - 1.0) / 0.7) ** 2).sum()
    torch.testing.assert_close(m.log_prior(), ref, rtol=1e-6, atol=0.0)
