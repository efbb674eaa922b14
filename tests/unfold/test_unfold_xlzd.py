"""The XLZD unfolding case: an exact truth, NEST events through the public simulator method, IBU on it."""

from __future__ import annotations

import numpy as np
import pytest

from rarefy.unfold.xlzd import XLZDCase

pytest.importorskip("nestpy")


def test_truth_is_exact():
    case = XLZDCase()
    edges = case.default_edges()
    p = case.bin_probabilities(edges)
    assert abs(p.sum() - 1) < 1e-12 and np.all(p > 0)
    x = case.sample_truth(400_000, np.random.default_rng(0))
    h = np.histogram(x, edges)[0] / len(x)
    assert np.abs(h - p).max() < 4 * np.sqrt(p.max() / len(x))
    m = case.moments()
    assert abs(x.mean() - m["mean"]) < 0.02 and abs(x.std() - m["width"]) < 0.02
    # the prior is flat, unlike the truth
    assert np.allclose(case.prior_bin_probabilities(edges), 1 / 11)
    assert np.abs(p - 1 / 11).max() > 0.03


def test_er_events_public_method():
    from rarefy.simulators.xlzd import XLZD

    e = np.array([0.3, 5.0, 5.0, 8.0, 30.0] * 40)
    ev = XLZD().er_events(XLZDCase().theta, e, seed=4)
    assert set(ev) >= {"s1c_phd", "s2c_phd", "energy_kev", "passed"}
    assert np.array_equal(ev["passed"], np.isfinite(ev["energy_kev"]))
    assert not ev["passed"][e == 0.3].any() and not ev["passed"][e == 30.0].any()   # below threshold / above window
    ok = ev["passed"] & (e == 5.0)
    assert ok.mean() > 0.3 and abs(np.median(ev["energy_kev"][ok]) - 5.0) < 0.5
    again = XLZD().er_events(XLZDCase().theta, e, seed=4)
    assert np.array_equal(again["s1c_phd"], ev["s1c_phd"], equal_nan=True)


def test_problem_and_ibu_on_it():
    from rarefy.unfold import metrics as M
    from rarefy.unfold.ibu import IterativeBayes

    case = XLZDCase()
    prob, hidden = case.problem(6000, 3000, 1)
    assert prob.n_sim == 6000 and prob.n_data == 3000 and hidden.shape == (3000,)
    assert prob.rec_names == ("s1c_phd", "s2c_phd", "e_rec_kev") and 0.85 < prob.efficiency() < 1
    assert np.all((hidden >= case.e_low) & (hidden <= case.e_high))
    edges = case.default_edges()
    res = IterativeBayes(edges=list(edges), members=5).unfold(prob, 1)
    assert res.info["rec_column"] == "e_rec_kev"
    mean, _ = res.histogram("energy_kev", edges)
    truth = case.bin_probabilities(edges)
    prior = case.prior_bin_probabilities(edges)
    assert np.abs(mean - truth).sum() < 0.5 * np.abs(prior - truth).sum()
    assert M.wasserstein(res, "energy_kev", hidden) < 0.5
