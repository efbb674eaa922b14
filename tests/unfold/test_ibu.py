"""Iterative Bayesian unfolding: the response matrix, the EM iteration, recovery of the Gaussian toy."""

from __future__ import annotations

import numpy as np
import pytest

from rarefy.errors import InputError
from rarefy.unfold import GaussianToy, Problem
from rarefy.unfold import metrics as M
from rarefy.unfold.ibu import IterativeBayes, ibu_iterate, response_matrix
from rarefy.unfold.registry import build_method


def test_response_counts_failures_in_the_denominator():
    gen = np.array([0, 0, 0, 0, 1, 1])
    rec = np.array([0, 1, 0, 0, 1, 0])
    passed = np.array([True, True, False, False, True, False])
    r = response_matrix(gen, rec, passed, np.ones(6), 2, 2)
    assert np.allclose(r, [[0.25, 0.0], [0.25, 0.5]])
    assert np.allclose(r.sum(axis=0), [0.5, 0.5])      # efficiencies


def test_iteration_inverts_an_exact_folding():
    rng = np.random.default_rng(0)
    resp = rng.random((6, 4))
    resp *= 0.8 / resp.sum(axis=0)                       # efficiency 0.8 in every gen bin
    truth = np.array([100.0, 400.0, 300.0, 200.0])
    n = ibu_iterate(resp, resp @ truth, np.ones(4), 2000)
    assert np.allclose(n, truth, rtol=1e-3)


def test_recovers_the_gaussian_toy():
    toy = GaussianToy()
    edges = toy.default_edges(12)
    prob, _ = toy.problem(40_000, 20_000, 5)
    res = IterativeBayes(edges=list(edges), iterations=8, members=10).unfold(prob, 5)
    mean, sd = res.histogram("x", edges)
    truth = toy.bin_probabilities(edges)
    assert np.abs(mean - truth).max() < 0.012
    assert M.chi2_per_ndf(mean, sd, truth) < 4
    prior = np.histogram(prob.sim_gen[:, 0], edges)[0] / prob.n_sim
    assert np.abs(mean - truth).sum() < 0.25 * np.abs(prior - truth).sum()   # far closer than the prior
    m = res.moments("x")
    assert abs(m["mean"] - toy.mu) < 0.03 and abs(m["width"] - toy.sigma) < 0.05
    assert 0.8 < res.info["n_true"] / (20_000 / 0.7) < 1.25


def test_histogram_on_the_same_edges_reproduces_the_weights_and_seed_determines_all():
    toy = GaussianToy()
    prob, _ = toy.problem(5_000, 2_000, 1)
    ibu = IterativeBayes(bins=10, members=4)
    a, b, c = ibu.unfold(prob, 3), ibu.unfold(prob, 3), ibu.unfold(prob, 4)
    edges = np.asarray(a.info["edges"])
    h = a.histograms("x", edges)
    inner = [w[(x[:, 0] >= edges[0]) & (x[:, 0] < edges[-1])].sum() for x, w in a.members]
    assert np.allclose(h.sum(axis=1), inner)
    assert np.array_equal(a.histogram("x", edges)[0], b.histogram("x", edges)[0])
    assert not np.array_equal(a.histogram("x", edges)[0], c.histogram("x", edges)[0])


def test_picks_the_correlated_reco_column():
    rng = np.random.default_rng(2)
    x = rng.normal(size=3000)
    rec = np.column_stack([rng.normal(size=3000), x + 0.3 * rng.normal(size=3000)])
    data = np.column_stack([rng.normal(size=500), rng.normal(size=500)])
    prob = Problem.build(["x"], ["noise", "y"], x, rec, data)
    res = IterativeBayes(bins=5, members=2).unfold(prob, 0)
    assert res.info["rec_column"] == "y"


@pytest.mark.parametrize("settings, word", [({"edges": [1, 0]}, "edges"), ({"iterations": -1}, "iterations"),
                                            ({"prior": "jeffreys"}, "prior"), ({"nope": 1}, "nope"),
                                            ({"range": [2, 1]}, "range")])
def test_bad_settings_name_the_key(settings, word):
    with pytest.raises(InputError, match=word):
        build_method("ibu", settings)


def test_unknown_column_is_an_input_error():
    prob, _ = GaussianToy().problem(500, 200, 0)
    with pytest.raises(InputError, match="energy"):
        IterativeBayes(column="energy").unfold(prob, 0)
