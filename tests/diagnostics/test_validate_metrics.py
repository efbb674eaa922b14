import numpy as np

from rarefy.diagnostics.validation import bootstrap_metrics, metrics


def test_metrics_against_hand_computed_values():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    mu = np.array([1.5, 2.0, 1.0, 4.0])
    sd = np.array([1.0, 0.5, 0.9, 2.0])
    # |z| = 0.5, 0, 2.22, 0
    m = metrics(y, mu, sd)
    assert m["n"] == 4
    assert m["coverage_1sigma"] == 0.75 and m["coverage_2sigma"] == 0.75 and m["coverage_3sigma"] == 1.0
    assert np.isclose(m["mse"], (0.25 + 0 + 4 + 0) / 4)
    nll = 0.5 * np.log(2 * np.pi * sd**2) + 0.5 * ((y - mu) / sd) ** 2
    assert np.isclose(m["mean_nll"], nll.mean())


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    y, mu = rng.normal(size=30), rng.normal(size=30)
    a = bootstrap_metrics(y, mu, np.ones(30), n_boot=200, seed=1)
    b = bootstrap_metrics(y, mu, np.ones(30), n_boot=200, seed=1)
    assert a == b and a["mse"]["se"] > 0
