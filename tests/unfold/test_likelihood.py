"""Likelihood unfolding with a learned kernel on small Gaussian toys."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from rarefy.errors import InputError
from rarefy.nn.flows import FlowSettings, fit_flow
from rarefy.unfold import GaussianToy
from rarefy.unfold.likelihood import LikelihoodUnfolding, stratified_normal

FAST = {"members": 3, "starts": 1, "nodes": 8, "norm_nodes": 4096, "init_epochs": 2, "epochs": 8, "kernels": 2, "batch_size": 512,
            "kernel_epochs": 10}
STEEP = GaussianToy(eff_low=0.2, eff_high=0.95, eff_center=0.5, eff_scale=0.4)


def test_same_seed_same_result_other_seed_differs():
    prob, _ = GaussianToy().problem(6000, 3000, seed=3)
    m = LikelihoodUnfolding(members=2, starts=1, kernels=2, nodes=4, norm_nodes=1024, init_epochs=1, epochs=1,
                            kernel_epochs=1)
    a, b, c = m.unfold(prob, 5), m.unfold(prob, 5), m.unfold(prob, 6)
    for (xa, _), (xb, _) in zip(a.members, b.members):
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(a.members[0][0], c.members[0][0])
    assert a.method == "likelihood" and len(a.members) == 2 and len(a.members[0][0]) == 3000


def test_folded_likelihood_prefers_the_truth():
    toy = GaussianToy()
    prob, _ = toy.problem(30_000, 20_000, seed=4)
    nodes = LikelihoodUnfolding(**FAST).folding_nodes(prob, 0)
    ll = {k: nodes.log_likelihood(lambda x, m=m, s=s: norm.logpdf(x[:, 0], m, s))
          for k, (m, s) in {"truth": (1.0, 1.2), "prior": (0.5, 1.0), "wide": (1.0, 1.5), "shifted": (1.2, 1.2)}.items()}
    assert ll["truth"] > max(ll["prior"], ll["wide"], ll["shifted"])


@pytest.mark.slow
def test_recovers_a_shifted_truth():
    toy = GaussianToy(mu=1.5, sigma=1.2)
    prob, _ = toy.problem(40_000, 20_000, seed=11)
    res = LikelihoodUnfolding(**FAST).unfold(prob, 0)
    mom = res.moments("x")
    assert abs(mom["mean"] - 1.5) < 0.08
    assert abs(mom["width"] - 1.2) < 0.08


@pytest.mark.slow
def test_efficiency_in_the_folded_model_is_needed():
    """With ε set to 1 the fit explains the data's passing truth instead: biased towards high efficiency."""
    prob, _ = STEEP.problem(40_000, 20_000, seed=12)
    m = LikelihoodUnfolding(**FAST)
    on = m.unfold(prob, 0).moments("x")["mean"]
    off = LikelihoodUnfolding(**FAST, efficiency_correction=False).unfold(prob, 0).moments("x")["mean"]
    assert abs(on - STEEP.mu) < 0.06
    assert off - STEEP.mu > 0.15


def test_replicated_starts_share_a_replica_and_differ_by_start():
    prob, _ = GaussianToy().problem(6000, 3000, seed=3)
    res = LikelihoodUnfolding(members=4, starts=2, kernels=2, nodes=4, norm_nodes=1024, init_epochs=1, epochs=1,
                              kernel_epochs=1).unfold(prob, 5)
    np.testing.assert_array_equal(res.replicas, [0, 0, 1, 1])
    assert not np.array_equal(res.members[0][0], res.members[1][0])
    mean, err = res.histogram("x", np.linspace(-3, 5, 9))
    assert np.all(np.isfinite(err)) and np.all(err >= 0)


def test_bounded_fit_puts_nothing_outside_the_simulated_range():
    prob, _ = GaussianToy().problem(6000, 3000, seed=4)
    lo, hi = prob.sim_gen.min(), prob.sim_gen.max()
    kw = dict(members=2, starts=1, kernels=2, nodes=4, norm_nodes=1024, init_epochs=1, epochs=2, kernel_epochs=1)
    res = LikelihoodUnfolding(**kw, bounded=True).unfold(prob, 5)
    for x, _w in res.members:
        assert np.all(np.isfinite(x)) and x.min() >= lo and x.max() <= hi
    plain = LikelihoodUnfolding(**kw, samples=50_000).unfold(prob, 5)
    assert any(((x < lo) | (x > hi)).any() for x, _w in plain.members)     # a flow in x reaches past the range


@pytest.mark.parametrize("bad", [{"members": 0}, {"nodes": 0}, {"defensive": 1.0}, {"init_epochs": -1},
                                 {"starts": 0}, {"starts": 3}, {"members": 4, "starts": 4},
                                 {"kernel_min_steps": -1}])
def test_bad_settings_raise(bad):
    prob, _ = GaussianToy().problem(2000, 1000, seed=1)
    with pytest.raises(InputError):
        LikelihoodUnfolding(**bad).unfold(prob, 0)


def test_small_data_fits_take_a_floor_of_steps(monkeypatch):
    """Epoch counts chosen at 10^5 events would leave the kernel, proposal and start fits of a small problem a
    handful of optimiser steps: every flow fit is given a least number of steps per epoch."""
    from rarefy.unfold import likelihood

    calls = []

    def spy(x, c, settings, seed, **kw):
        calls.append((kw["name"], settings.min_steps))
        return fit_flow(x, c, settings, seed, **kw)

    monkeypatch.setattr(likelihood, "fit_flow", spy)
    prob, _ = GaussianToy().problem(3000, 1000, seed=2)
    LikelihoodUnfolding(members=2, starts=1, kernels=1, nodes=4, norm_nodes=1024, init_epochs=1, epochs=1,
                        kernel_epochs=1, adapt_epochs=1, adapt_steps=20).unfold(prob, 0)
    names = {name.split(" ")[1] for name, _ in calls}
    assert {"kernel", "proposal", "central", "member"} <= names
    assert all(floor >= 40 for _, floor in calls)


def test_failed_start_fit_is_redrawn(monkeypatch, caplog):
    """A start fit far worse than the nodes' own Gaussian is redrawn from fresh initialisations; a good one is kept."""
    import logging

    from rarefy.unfold import likelihood

    prob, _ = GaussianToy().problem(12_000, 6000, seed=2)
    m = LikelihoodUnfolding(members=1, starts=1, kernels=1, nodes=4, norm_nodes=1024, init_epochs=4, epochs=1,
                            kernel_epochs=1, adapt=0)
    with caplog.at_level(logging.INFO, logger="rarefy.unfold.likelihood"):
        kept = m.unfold(prob, 0)
    assert "fresh initialisation" not in caplog.text
    caplog.clear()
    monkeypatch.setattr(likelihood, "_START_MARGIN", -1e9)      # no start is good enough: every one is redrawn
    with caplog.at_level(logging.INFO, logger="rarefy.unfold.likelihood"):
        redrawn = m.unfold(prob, 0)
    assert caplog.text.count("fresh initialisation") == likelihood._START_TRIES - 1
    assert not np.array_equal(kept.members[0][0], redrawn.members[0][0])
    assert all(np.isfinite(x).all() for x, _ in redrawn.members)


def test_adapted_proposal_fits_the_estimate_not_the_prior():
    """E log Î falls short of log I by about Var Î / (2 I²), least where the node terms K_im p_θ(x_im) are alike.
    Nodes drawn from the posterior under a density near the truth make the terms more alike at the truth than
    nodes drawn under the simulation's prior."""
    toy = GaussianToy()
    prob, _ = toy.problem(16_000, 8_000, seed=4)
    settings = FlowSettings(transforms=2, hidden=(), bins=8, epochs=20, batch_size=512)
    truth = fit_flow(toy.sample_truth(10_000, np.random.default_rng(1))[:, None], None, settings, 1)
    m = LikelihoodUnfolding(**FAST)
    m_q = FAST["nodes"] - round(m.defensive * FAST["nodes"])

    def spread(nodes, mu, s):
        terms = nodes.log_k[:, :m_q] + norm.logpdf(nodes.x[:, :m_q, 0], mu, s)
        return float(terms.var(axis=1).mean())

    plain, adapted = m.folding_nodes(prob, 0), m.folding_nodes(prob, 0, center=truth)
    assert spread(adapted, toy.mu, toy.sigma) < 0.85 * spread(plain, toy.mu, toy.sigma)


def test_stratified_normal_draws_are_unbiased_and_stratified():
    rng = np.random.default_rng(0)
    z = stratified_normal(20_000, 6, 1, rng)
    assert z.shape == (20_000, 6, 1)
    # every node is marginally N(0, 1)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    # one node per sixth of the probability in every row
    u = np.sort(norm.cdf(z[..., 0]), axis=1)
    np.testing.assert_allclose(np.diff(u, axis=1), 1 / 6, atol=1e-9)
    # an integral's error across rows is far smaller than with independent draws
    def f(x):
        return np.exp(-0.5 * (x - 0.7) ** 2)

    iid = f(rng.standard_normal((20_000, 6))).mean(1)
    strat = f(z[..., 0]).mean(1)
    assert abs(strat.mean() - iid.mean()) < 0.005
    assert strat.std() < 0.2 * iid.std()
    z2 = stratified_normal(5_000, 8, 2, rng)
    assert abs(z2.mean()) < 0.02 and abs(z2.std() - 1) < 0.02


@pytest.mark.parametrize("shared", [False, True])
def test_each_detector_model_draws_its_own_nodes_unless_shared(monkeypatch, shared):
    """Replicas that share a node table share its error, which their spread then misses: by default every
    detector model (and so every replica) has its own nodes; ``shared_nodes`` gives them one set."""
    prob, _ = GaussianToy().problem(4000, 1000, seed=3)
    m = LikelihoodUnfolding(members=4, starts=2, kernels=2, nodes=4, norm_nodes=512, init_epochs=1, epochs=1,
                            kernel_epochs=1, adapt=0, shared_nodes=shared)
    seen = []
    original = LikelihoodUnfolding._prepare

    def spy(self, ref, tables, support):
        seen.append(tables)
        return original(self, ref, tables, support)

    monkeypatch.setattr(LikelihoodUnfolding, "_prepare", spy)
    res = m.unfold(prob, 5)
    a, b = seen[-1]
    assert a.x.shape == b.x.shape == (1000, 4, 1)
    assert np.array_equal(a.x, b.x) is shared and np.array_equal(a.z, b.z) is shared
    assert all(np.isfinite(x).all() for x, _ in res.members)
