"""Conditional-flow generative unfolding on small Gaussian toys."""

from __future__ import annotations

import numpy as np
import pytest

from rarefy.errors import InputError
from rarefy.unfold import GaussianToy
from rarefy.unfold.flow import FlowUnfolding
from rarefy.unfold.generative import fit_efficiency, fit_ratio

FAST = {"members": 2, "iterations": 2, "draws": 1, "epochs": 4, "finetune_epochs": 1, "final_epochs": 2, "batch_size": 1024,
        "ratio_steps": 400}
# a steep efficiency (0.2 → 0.95 around x = 0.5) makes the passing truth clearly unlike the truth
STEEP = GaussianToy(eff_low=0.2, eff_high=0.95, eff_center=0.5, eff_scale=0.4)


def _mean(res) -> float:
    return res.moments("x")["mean"]


def test_same_seed_same_result_other_seed_differs():
    prob, _ = GaussianToy().problem(6000, 3000, seed=3)
    m = FlowUnfolding(members=2, iterations=2, draws=1, epochs=2, finetune_epochs=1, final_epochs=1, batch_size=1024,
                      ratio_steps=50)
    a, b, c = m.unfold(prob, 5), m.unfold(prob, 5), m.unfold(prob, 6)
    for (xa, wa), (xb, wb) in zip(a.members, b.members):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.members[0][0], c.members[0][0])
    assert a.method == "flow" and len(a.members) == 2


@pytest.mark.slow
def test_recovers_a_shifted_truth_and_leaves_the_prior():
    toy = GaussianToy(mu=1.5, sigma=1.2)          # prior N(0.5, 1): a full unit away
    prob, _ = toy.problem(40_000, 20_000, seed=11)
    res = FlowUnfolding(**FAST).unfold(prob, 0)
    mom = res.moments("x")
    assert abs(mom["mean"] - 1.5) < 0.08
    assert abs(mom["width"] - 1.2) < 0.08


@pytest.mark.slow
def test_efficiency_correction_is_needed():
    prob, _ = STEEP.problem(40_000, 20_000, seed=12)
    on = FlowUnfolding(**FAST).unfold(prob, 0)
    off = FlowUnfolding(**FAST, efficiency_correction=False).unfold(prob, 0)
    assert abs(_mean(on) - STEEP.mu) < 0.06
    assert _mean(off) - STEEP.mu > 0.15          # the passing truth leans to high efficiency
    assert on.info["n_true"] > 1.2 * prob.n_data  # lost events are restored


def test_efficiency_and_ratio_networks():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1.5, 40_000)
    toy = STEEP
    passed = rng.random(len(x)) < toy.efficiency(x)
    eff = fit_efficiency(x, passed, np.ones(len(x)), seed=1)
    grid = np.linspace(-2, 2, 9)
    assert np.max(np.abs(eff.probability(grid) - toy.efficiency(grid))) < 0.05
    x1, x0 = rng.normal(0.5, 1, 30_000), rng.normal(0, 1, 30_000)
    ratio = fit_ratio(x1, np.ones(len(x1)), x0, np.ones(len(x0)), seed=2)
    exact = 0.5 * grid - 0.125                   # log N(x; 0.5, 1) / N(x; 0, 1)
    assert np.max(np.abs(ratio.logit(grid) - exact)) < 0.15


def test_bounded_draws_stay_in_the_simulated_range_and_members_fit_their_own_base():
    prob, _ = GaussianToy().problem(6000, 3000, seed=4)
    lo, hi = prob.sim_gen.min(), prob.sim_gen.max()
    m = FlowUnfolding(members=2, iterations=2, draws=4, epochs=1, finetune_epochs=1, final_epochs=1, batch_size=1024,
                      ratio_steps=50, bounded=True, shared_base=False)
    res = m.unfold(prob, 5)
    for x, _w in res.members:
        assert x.min() >= lo and x.max() <= hi
    plain = FlowUnfolding(members=2, iterations=2, draws=4, epochs=1, finetune_epochs=1, final_epochs=1,
                          batch_size=1024, ratio_steps=50, shared_base=False).unfold(prob, 5)
    outside = np.concatenate([(x < lo) | (x > hi) for x, _w in plain.members])
    assert outside.any()                  # an undertrained flow leaks past the range when unbounded
    again = m.unfold(prob, 5)
    np.testing.assert_array_equal(res.members[1][0], again.members[1][0])


@pytest.mark.parametrize("bad", [{"members": 0}, {"iterations": 0}, {"ratio_clip": 1.0}])
def test_bad_settings_raise(bad):
    prob, _ = GaussianToy().problem(2000, 1000, seed=1)
    with pytest.raises(InputError):
        FlowUnfolding(**bad).unfold(prob, 0)
