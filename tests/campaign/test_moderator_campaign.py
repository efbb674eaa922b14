"""Acceptance: the example campaign on a LocalCluster agrees with the moderator's exact rates (χ² test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from rarefy import simulators
from rarefy.jobs.simulate import simulate

EXAMPLE = Path(__file__).parents[2] / "examples" / "moderator" / "simulate.yaml"


def chi2_pvalues(frame: pd.DataFrame, sim) -> tuple[float, float, float]:
    """Pearson χ² of run counts against binomial(n, expected_rate): (χ², asymptotic p, exact-by-simulation p)."""
    p = np.array([sim.expected_rate(row[sim.space.names].to_dict(), row["fidelity"]) for _, row in frame.iterrows()])
    n = frame["n"].to_numpy().astype(np.int64)
    k = frame["k"].to_numpy()
    mu, var = n * p, n * p * (1 - p)
    chi2 = float(np.sum((k - mu) ** 2 / var))
    draws = np.random.default_rng(0).binomial(n, p, size=(20_000, len(n)))     # counts are small: exact p by simulation
    sim_chi2 = np.sum((draws - mu) ** 2 / var, axis=1)
    return chi2, float(stats.chi2.sf(chi2, len(n))), float(np.mean(sim_chi2 >= chi2))


def test_example_campaign_matches_expected_rates(tmp_path):
    result = simulate(EXAMPLE, tmp_path / "run", progress=False)                  # LocalCluster, one worker per core
    assert (result.n_runs, result.n_done, result.n_failed) == (72, 72, 0)
    frame = pd.read_parquet(tmp_path / "run" / "rates.parquet")
    assert list(frame.columns) == ["radius", "thickness", "npanels", "theta", "length",
                                   "fidelity", "k", "n", "rate", "var", "cost_cpu_h", "run_id"]
    counts = frame.groupby("fidelity")["n"].agg(["count", "min", "max"])
    assert counts.loc["lf"].tolist() == [64, 50_000, 50_000] and counts.loc["hf"].tolist() == [8, 20_000, 20_000]
    np.testing.assert_allclose(frame["cost_cpu_h"], np.where(frame["fidelity"] == "lf", 0.15, 3.0))
    chi2, p_asym, p_exact = chi2_pvalues(frame, simulators.get("moderator"))
    assert p_exact > 0.01 and p_asym > 0.01, (chi2, p_asym, p_exact)
