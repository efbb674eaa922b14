"""Surrogates do not depend on the unit of the rate: scaling every rate by c scales predictions by c."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import rarefy
from rarefy.data.rates import RateTable
from rarefy.surrogate import AR1Settings, AR1Surrogate
from rarefy.surrogate.base import standardise
from rarefy.surrogate.pce import PCESettings, PCESurrogate

from conftest import LEGEND, two_fidelity_table

SCALES = [1e-11, 1e-15, 1e6]


def scaled(table: RateTable, c: float) -> RateTable:
    """The table in other units: rates times c, noise variances times c²."""
    frame = table.to_pandas()
    frame["rate"] = frame["rate"] * c
    frame["var"] = frame["var"] * c**2
    return RateTable(frame, table.space)


@st.composite
def outputs(draw):
    levels = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 6)) for _ in range(levels)]
    fid = np.repeat(np.arange(levels), sizes)
    value = st.integers(-7000, 7000).map(lambda i: i / 7)
    y = np.array([draw(value) for _ in fid])
    for i in range(levels):          # some fidelities constant, some all zero
        kind = draw(st.sampled_from(["free", "constant", "zero"]))
        if kind != "free":
            y[fid == i] = 0.0 if kind == "zero" else y[fid == i][0]
    v = np.array([draw(st.sampled_from([0.0, 1e-4, 2.5])) for _ in fid])
    return y, fid, v, levels


@settings(max_examples=200, deadline=None)
@given(outputs(), st.sampled_from([1e-150, 1e-15, 1e-11, 1e-7, 3.0, 1e6, 1e12]))
def test_standardise_scales_with_the_unit(data, c):
    y, fid, v, levels = data
    assume(np.any(y != 0) or np.any(v > 0))     # all zero: nothing carries a unit
    means, stds = standardise(y, fid, levels, v)
    means_c, stds_c = standardise(y * c, fid, levels, v * c**2)
    assert np.all(stds > 0) and np.all(np.isfinite(stds))
    np.testing.assert_allclose(stds_c, stds * c, rtol=1e-9)
    np.testing.assert_allclose(means_c, means * c, rtol=1e-9, atol=0)


@settings(max_examples=100, deadline=None)
@given(outputs(), st.sampled_from([-50.0, -25.3, 0.0, 13.8]))
def test_log_standardise_ignores_the_unit(data, shift):
    y, fid, v, levels = data
    _, stds = standardise(y, fid, levels, v, log_scale=True)
    _, stds_c = standardise(y + shift, fid, levels, v, log_scale=True)
    # a spread below 1e-12 |mean| counts as none, so only fidelities that clearly spread or clearly don't
    np.testing.assert_allclose(stds_c, stds, rtol=1e-6)


def test_single_row_and_constant_fidelities_take_their_own_scale():
    y = np.array([3e-12, 5e-12, 7e-12, 2e-13, 4e-14, 4e-14, 0.0])
    fid = np.array([0, 0, 0, 1, 2, 2, 3])
    v = np.array([0, 0, 0, 0, 0, 0, 1e-30])
    means, stds = standardise(y, fid, 4, v)
    np.testing.assert_allclose(stds, [2e-12, 2e-13, 4e-14, 1e-15])
    # log outputs: a single row takes its noise, else one e-fold
    _, stds = standardise(np.log([2e-12, 1e-12]), np.array([0, 1]), 2, np.array([0.01, 0.0]), log_scale=True)
    np.testing.assert_allclose(stds, [0.1, 1.0])


@pytest.fixture(scope="module")
def legend_table() -> RateTable:
    return rarefy.load_rate_table(rarefy.load_config(LEGEND / "legend.yaml"))


@pytest.mark.parametrize("c", SCALES)
def test_ar1_on_legend_is_free_of_the_rate_unit(legend_table, c):
    settings = AR1Settings(kernel="rbf", restarts=1, max_iter=60)
    x = legend_table.space.sample(20, seed=4).to_numpy()
    mean, std = AR1Surrogate(legend_table.space, ["lf", "hf"], settings).fit(legend_table).predict(x)
    mean_c, std_c = AR1Surrogate(legend_table.space, ["lf", "hf"], settings).fit(scaled(legend_table, c)).predict(x)
    np.testing.assert_allclose(mean_c.numpy() / c, mean.numpy(), rtol=1e-3)
    np.testing.assert_allclose(std_c.numpy() / c, std.numpy(), rtol=1e-3)


@pytest.mark.parametrize("output", ["identity", "log"])
def test_ar1_log_and_identity_outputs_are_free_of_the_rate_unit(space2d, output):
    table = two_fidelity_table(space2d, n_lf=20, n_hf=5)
    frame = table.to_pandas()
    frame["rate"] = frame["rate"] + 3.0       # positive for output: log
    table = RateTable(frame, space2d)
    settings = AR1Settings(restarts=1, max_iter=60, output=output, mean_uncertainty=True)
    x = space2d.sample(10, seed=2).to_numpy()
    mean, std = AR1Surrogate(space2d, ["lf", "hf"], settings).fit(table).predict(x, observed=True)
    c = 1e-12
    mean_c, std_c = AR1Surrogate(space2d, ["lf", "hf"], settings).fit(scaled(table, c)).predict(x, observed=True)
    np.testing.assert_allclose(mean_c.numpy() / c, mean.numpy(), rtol=1e-4)
    np.testing.assert_allclose(std_c.numpy() / c, std.numpy(), rtol=1e-4)


def test_ar1_with_one_target_row_is_free_of_the_rate_unit(space2d):
    table = two_fidelity_table(space2d, n_lf=20, n_hf=1)
    settings = AR1Settings(restarts=1, max_iter=60)
    x = space2d.sample(10, seed=2).to_numpy()
    mean, std = AR1Surrogate(space2d, ["lf", "hf"], settings).fit(table).predict(x)
    c = 1e-9
    mean_c, std_c = AR1Surrogate(space2d, ["lf", "hf"], settings).fit(scaled(table, c)).predict(x)
    np.testing.assert_allclose(mean_c.numpy() / c, mean.numpy(), rtol=1e-4)
    np.testing.assert_allclose(std_c.numpy() / c, std.numpy(), rtol=1e-4)


@pytest.mark.parametrize("output", ["identity", "log"])
def test_pce_is_free_of_the_rate_unit(space2d, output):
    table = two_fidelity_table(space2d, n_lf=30, n_hf=6)
    frame = table.to_pandas()
    frame["rate"] = frame["rate"] + 3.0
    table = RateTable(frame, space2d)
    settings = PCESettings(degree=3, output=output)
    x = space2d.sample(10, seed=2).to_numpy()
    mean, std = PCESurrogate(space2d, ["lf", "hf"], settings).fit(table).predict(x, observed=True)
    c = 1e-13
    mean_c, std_c = PCESurrogate(space2d, ["lf", "hf"], settings).fit(scaled(table, c)).predict(x, observed=True)
    np.testing.assert_allclose(mean_c.numpy() / c, mean.numpy(), rtol=1e-4)
    np.testing.assert_allclose(std_c.numpy() / c, std.numpy(), rtol=1e-4)


@pytest.fixture(scope="module")
def legend_cv(tmp_path_factory) -> dict:
    return rarefy.fit(LEGEND / "legend.yaml", tmp_path_factory.mktemp("legend") / "run", cv=5).cv.metrics


@pytest.mark.slow
@pytest.mark.parametrize("c", SCALES)
def test_legend_cross_validation_is_free_of_the_rate_unit(tmp_path, c, legend_cv):
    """The 5-fold CV MSE of LEGEND, divided by c², is the same with the rate column in units c times smaller."""
    import yaml

    cfg = yaml.safe_load((LEGEND / "legend.yaml").read_text())
    column = next(k for k, v in cfg["data"]["columns"].items() if v == "rate_ge77")
    paths = []
    for p in cfg["data"]["paths"]:
        frame = pd.read_csv(LEGEND / p)
        frame[column] = frame[column] * c
        paths.append(str(tmp_path / f"{c:g}_{len(paths)}.csv"))
        frame.to_csv(paths[-1], index=False)
    scaled_cfg = tmp_path / "legend.yaml"
    scaled_cfg.write_text(yaml.safe_dump({**cfg, "data": {**cfg["data"], "paths": paths}}))
    base = legend_cv
    other = rarefy.fit(scaled_cfg, tmp_path / "scaled", cv=5).cv.metrics
    assert other["mse"] / c**2 == pytest.approx(base["mse"], rel=0.01)
    assert other["coverage_1sigma"] == base["coverage_1sigma"]
