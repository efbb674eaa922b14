"""The unfolded result's uncertainty: plain member spread and the replicated-starts error of the ensemble mean."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import t as student_t

from rarefy.unfold.base import Unfolded, replicated_error


def _members(rng: np.random.Generator, trials: int, g: int, r: int, data_sd: float, start_sd: float) -> np.ndarray:
    """(g·r, trials) estimates of a zero truth: each replica's data error (shared by its r fits, and the data
    set's own error shared by all) plus independent start noise per fit."""
    data = data_sd * rng.standard_normal(trials)                       # the measured data's own error
    boot = data_sd * rng.standard_normal((g, 1, trials))               # each bootstrap replica around it
    start = start_sd * rng.standard_normal((g, r, trials))
    return (data + boot + start).reshape(g * r, trials)


def test_replicated_error_covers_the_mean_where_the_member_spread_overcovers():
    rng = np.random.default_rng(0)
    g, r = 8, 2
    v = _members(rng, 4000, g, r, data_sd=1.0, start_sd=3.0)
    mean = v.mean(0)
    err = replicated_error(v, np.repeat(np.arange(g), r))
    cover = np.mean(np.abs(mean) <= err)
    spread = np.mean(np.abs(mean) <= v.std(0, ddof=1))
    # the Student-t half-width covers about 0.68; the start noise inflates the members' spread
    assert 0.63 <= cover <= 0.74
    assert spread > 0.9


def test_replicated_error_is_the_mean_error_where_the_data_dominate():
    rng = np.random.default_rng(2)
    g, r = 8, 2
    v = _members(rng, 4000, g, r, data_sd=1.5, start_sd=1.0)
    err = replicated_error(v, np.repeat(np.arange(g), r)) / student_t.ppf(0.8413447460685429, g - 1)
    # on average √(c (1 + 1/G) + S / (G r)); clipping c at zero only errs on the wide side
    assert np.sqrt(np.mean(err ** 2)) == pytest.approx(np.sqrt(1.5 ** 2 * (1 + 1 / g) + 1 / (g * r)), rel=0.05)


def test_replicated_error_without_start_noise_is_the_bootstrap_spread():
    rng = np.random.default_rng(1)
    v = np.repeat(rng.standard_normal((5, 3)), 2, axis=0)              # two identical fits per replica
    err = replicated_error(v, np.repeat(np.arange(5), 2))
    np.testing.assert_allclose(err, v[::2].std(0, ddof=1) * np.sqrt(1 + 1 / 5) * student_t.ppf(0.8413447460685429, 4))


def test_unfolded_uses_the_replicated_error_and_checks_replicas():
    x = [(np.full((10, 1), float(v)), np.ones(10)) for v in (0.1, 0.3, 0.6, 0.8)]
    edges = np.array([0.0, 0.5, 1.0])
    plain = Unfolded("m", ("x",), x)
    rep = Unfolded("m", ("x",), x, replicas=np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(plain.histogram("x", edges)[0], rep.histogram("x", edges)[0])
    np.testing.assert_allclose(rep.histogram("x", edges)[1],
                               replicated_error(plain.histograms("x", edges), np.array([0, 0, 1, 1])))
    for bad in ([0, 0, 0, 1], [0, 1, 2, 3], [0, 0, 1]):
        with pytest.raises(ValueError):
            Unfolded("m", ("x",), x, replicas=np.array(bad))
