"""benchmarks/bbh_budget.py: its truth surface, and an end-to-end run in its ``--quick`` mode."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bbh_budget.py"


def _module():
    spec = importlib.util.spec_from_file_location("bbh_budget_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_truth_reproduces_the_cosmic_runs(tmp_path):
    mod = _module()
    sim = mod.TruthBBH(str(mod.fit_truth(tmp_path / "truth")))
    data = pd.concat([pd.read_parquet(ROOT / "examples/bbh/data/rates.parquet"),
                      pd.read_parquet(ROOT / "examples/bbh/data/rates_extra.parquet")], ignore_index=True)
    p = sim.rates(data[list(sim.space.names)].to_numpy(float))
    assert np.all((p > 0) & (p < 1))
    expected, observed = float((p * data["n"]).sum()), float(data["k"].sum())
    # the truth was fitted to these counts: the total number of mergers agrees within a few Poisson σ
    assert abs(expected - observed) < 4 * np.sqrt(observed), (expected, observed)
    # low metallicity makes far more BBH mergers than Z = 0.03 (the dominant trend of the COSMIC runs)
    lo = {"log10_z": -4.0, "alpha_ce": 1.0, "sigma_bh": 100.0, "sigma_ns": 265.0}
    assert sim.expected_rate(lo) > 10 * sim.expected_rate({**lo, "log10_z": np.log10(0.03)})
    # a run's count is Binomial(n, ε): deterministic for a seed, with the right mean
    ks = [int(sim.simulate(lo, 20_000, "lf", seed=s)["outcome"].sum()) for s in range(40)]
    assert ks[0] == int(sim.simulate(lo, 20_000, "lf", seed=0)["outcome"].sum())
    mean_p = sim.expected_rate(lo)
    assert abs(np.mean(ks) / 20_000 - mean_p) < 4 * np.sqrt(mean_p / 20_000 / 40)


def test_quick_run_reports_every_strategy(monkeypatch, capsys):
    # in-process (torch already imported); the loop's simulator is imported as bbh_budget:TruthBBH
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--quick", "--seed", "21"])
    mod = _module()
    threads = torch.get_num_threads()
    try:
        mod.main()
    finally:
        torch.set_num_threads(threads)
    out_text = capsys.readouterr().out
    lines = out_text.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["d_cpu_h"] == pytest.approx(out["d_runs"] * out["hf_run_cpu_h"], rel=1e-3)
    assert out["hf_run_cpu_h"] == pytest.approx(200_000 * 0.025 / 3600, rel=1e-3)
    for s in ("a_mf", "b_lf", "c_hf", "d_brute"):
        assert 0 <= out[f"{s}_coverage2"] <= 1 and out[f"{s}_rmse"] > 0
        for t in ("std", "tight"):
            v = out[f"{s}_{t}_cpu_h"]
            assert (v is None) == (out[f"{s}_{t}_fraction_of_d"] is None)
            if v is not None:
                assert out[f"{s}_{t}_fraction_of_d"] == pytest.approx(v / out["d_cpu_h"], rel=1e-2)
    assert out["b_lf_hf_runs"] == 0 and out["c_hf_lf_runs"] == 0
    assert out["a_mf_hf_runs"] >= 2 and out["a_mf_lf_runs"] >= 12
