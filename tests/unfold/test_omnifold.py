"""OmniFold and its weighted classifier on small Gaussian toys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rarefy.errors import InputError
from rarefy.nn.classifier import WeightedClassifier
from rarefy.unfold.base import Unfolder
from rarefy.unfold.omnifold import OmniFold
from rarefy.unfold.toy import GaussianToy

FAST = {"iterations": 3, "ensemble": 2, "epochs_first": 3, "epochs_next": 2, "batch_size": 2048}


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_classifier_odds_are_the_density_ratio():
    # N(0.5, 1) against N(0, 1): log ratio = 0.5 x − 0.125.
    rng = np.random.default_rng(0)
    x1 = rng.normal(0.5, 1.0, 30_000)
    x0 = rng.normal(0.0, 1.0, 30_000)
    x = np.concatenate([x1, x0])
    w1 = np.r_[np.ones(30_000), np.zeros(30_000)]
    clf = WeightedClassifier(1, lr=1e-2, batch_size=1024, lr_schedule="cosine", seed=1)
    clf.fit(x, w1, 1 - w1, epochs=6)
    grid = np.linspace(-1.5, 2.0, 8)
    assert np.max(np.abs(clf.logit(grid) - (0.5 * grid - 0.125))) < 0.1


def test_classifier_two_weights_per_event_learn_a_weight_function():
    # The same x in both classes with weights g(x) and 1: the odds are g, up to normalisation.
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, 40_000)
    g = np.exp(0.4 * x)
    clf = WeightedClassifier(1, lr=1e-2, batch_size=1024, lr_schedule="cosine", seed=2)
    clf.fit(x, g, np.ones_like(x), epochs=5)
    r = clf.ratio(x)
    r *= np.mean(g) / np.mean(r)
    inner = np.abs(x) < 2
    assert np.max(np.abs(np.log(r[inner] / g[inner]))) < 0.1
    with pytest.raises(InputError):
        clf.fit(x, np.zeros_like(x), np.ones_like(x), epochs=1)


def test_omnifold_is_an_unfolder_and_deterministic_by_seed():
    prob, _ = GaussianToy().problem(8_000, 4_000, 5)
    of = OmniFold(**FAST)
    assert isinstance(of, Unfolder) and of.name == "omnifold"
    a, b, c = of.unfold(prob, 3), of.unfold(prob, 3), of.unfold(prob, 4)
    assert len(a.members) == 2
    for (xa, wa), (xb, wb) in zip(a.members, b.members):
        assert xa is prob.sim_gen and np.array_equal(wa, wb)
    assert not np.array_equal(a.members[0][1], c.members[0][1])
    assert not np.array_equal(a.members[0][1], a.members[1][1])  # own bootstrap and seed per member


def test_omnifold_recovers_a_shifted_truth():
    toy = GaussianToy(mu=1.5, sigma=1.0)  # prior N(0.5, 1): one prior width away
    prob, _ = toy.problem(40_000, 20_000, 11)
    res = OmniFold(iterations=5, ensemble=2, epochs_first=4, epochs_next=2, batch_size=2048).unfold(prob, 0)
    m = res.moments("x")
    assert abs(m["mean"] - 1.5) < 0.06, m
    assert abs(m["width"] - 1.0) < 0.06, m
    # Efficiency-corrected count: data / <ε>_truth.
    rng = np.random.default_rng(0)
    eff_truth = float(np.mean(toy.efficiency(rng.normal(1.5, 1.0, 200_000))))
    assert res.info["n_true"] == pytest.approx(20_000 / eff_truth, rel=0.03)


def test_weights_are_a_function_of_the_generation_level_only():
    """The push step makes every weight a function of x, also for events that did not pass; with the
    pull weights alone (no generation-level step) events at the same x would carry the spread of their
    smearing and the lost events weight 1."""
    toy = GaussianToy()
    prob, _ = toy.problem(20_000, 10_000, 7)
    res = OmniFold(iterations=2, ensemble=1, epochs_first=3, epochs_next=2, batch_size=2048,
                   bootstrap_data=False, bootstrap_sim=False).unfold(prob, 1)
    x, w = prob.sim_gen[:, 0], res.members[0][1]
    order = np.argsort(x)
    jumps = np.abs(np.diff(np.log(w[order])))
    assert np.quantile(jumps, 0.99) < 0.01  # neighbours in x have the same weight
    lost = ~prob.sim_pass
    assert np.std(np.log(w[lost])) > 0.1  # lost events are reweighted too
    # and the weights move towards the truth: heavier where the truth exceeds the prior (x > 1.8)
    assert np.mean(w[x > 2]) > 1.5 * np.mean(w[np.abs(x) < 0.5])


def test_settings_are_checked():
    with pytest.raises(InputError, match="iterations"):
        OmniFold(iterations=0)
    with pytest.raises(InputError, match="clip"):
        OmniFold(clip=1.0)
