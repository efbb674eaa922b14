"""rarefy.anomaly: exact densities of the synthetic bump hunt, SIC, k-fold hygiene, determinism, CLI errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from rarefy.anomaly.cathode import (ClassifierSettings, FlowSettings, fit_conditional_flow, fit_flow_ensemble,
                                    kfold_classify, null_test, sample_sr_masses, sic_metrics)
from rarefy.anomaly.data import BumpHunt
from rarefy.anomaly.run import run_anomaly
from rarefy.cli import app
from rarefy.errors import InputError

TINY_FLOW = FlowSettings(transforms=1, hidden=(8,), epochs=2, batch_size=256, patience=2)
TINY_CLF = ClassifierSettings(hidden=(8,), epochs=1, batch_size=256, folds=2)


def test_densities_normalised_and_match_samples():
    h = BumpHunt()
    t, w = np.polynomial.legendre.leggauss(200)
    m = 2 + 2 * (t + 1)
    assert math.isclose((2 * w * np.exp(h.log_p_bkg_m(m))).sum(), 1.0, rel_tol=1e-6)
    assert math.isclose((2 * w * np.exp(h.log_p_sig_m(m))).sum(), 1.0, rel_tol=1e-6)
    rng = np.random.default_rng(0)
    b = h.sample_background(200_000, rng)
    # the mass sample follows p_b(m): its SR share matches P_b(SR)
    assert abs(h.in_sr(b.m).mean() - h.p_bkg_sr()) < 4 * math.sqrt(h.p_bkg_sr() / len(b))
    # x | m sample matches log p_b(x|m): E[-log p] = entropy of the Gaussian
    d = h.n_features
    ent = 0.5 * d * (1 + math.log(2 * math.pi)) + np.log(np.diag(h._chol)).sum() + d * np.log(h.scale(b.m)).mean()
    assert abs(-h.log_p_bkg_x(b.x, b.m).mean() - ent) < 0.01
    s = h.sample_signal(50_000, rng)
    assert abs(-h.log_p_sig_x(s.x).mean() - (0.5 * d * (1 + math.log(2 * math.pi)) + d * math.log(h.signal_sigma))) < 0.02


def test_sample_counts_and_labels():
    h = BumpHunt(n_features=2)
    e = h.sample(10_000, 0.01, np.random.default_rng(1))
    assert len(e) == 10_100 and e.y.sum() == 100 and e.x.shape == (10_100, 2)
    assert h.sample(1000, 0.0, np.random.default_rng(1)).y.sum() == 0


@pytest.mark.parametrize("kw", [{"n_features": 5}, {"sr": (1.0, 3.0)}, {"sr": (3.7, 3.3)}, {"scale_slope": -1.0}])
def test_bad_hunt_raises(kw):
    with pytest.raises(InputError):
        BumpHunt(**kw)


def test_sic_metrics_perfect_and_random():
    rng = np.random.default_rng(0)
    bkg = rng.uniform(size=100_000)
    perfect = sic_metrics(np.full(1000, 2.0), bkg, min_background=50)
    # every signal above all background: max SIC limited by the floor eps_B = 50/N
    assert math.isclose(perfect["max_sic"], 1 / math.sqrt(50 / 100_000), rel_tol=1e-6)
    rand = sic_metrics(rng.uniform(size=20_000), bkg, min_background=50)
    assert abs(rand["sic_at_0.2"] - 0.2 / math.sqrt(0.2)) < 0.05
    assert abs(rand["auc"] - 0.5) < 0.02


def test_optimal_lr_beats_single_feature():
    h = BumpHunt()
    rng = np.random.default_rng(3)
    b, s = h.sample_background(100_000, rng, h.sr), h.sample_signal(10_000, rng, h.sr)
    opt = sic_metrics(h.log_lr_sr(s.x), h.log_lr_sr(b.x))
    one = sic_metrics(s.x[:, 0], b.x[:, 0])
    assert opt["sic_at_0.2"] > one["sic_at_0.2"] + 1


def test_sr_masses_inside_window():
    m = sample_sr_masses(np.random.default_rng(0).uniform(3.3, 3.7, 500), 2000, (3.3, 3.7), np.random.default_rng(1))
    assert len(m) == 2000 and m.min() >= 3.3 and m.max() < 3.7


def test_kfold_scores_out_of_fold_and_deterministic():
    rng = np.random.default_rng(0)
    x1, x0 = rng.normal(0.5, 1, (400, 2)), rng.normal(0, 1, (800, 2))
    a = kfold_classify(x1, x0, TINY_CLF, seed=3, extra=(x1[:5],))
    b = kfold_classify(x1, x0, TINY_CLF, seed=3, extra=(x1[:5],))
    np.testing.assert_array_equal(a.scores1, b.scores1)
    np.testing.assert_array_equal(a.extra[0], b.extra[0])
    assert set(np.unique(a.fold1)) == {0, 1}
    # out-of-fold scores differ from the ensemble's (which includes the event's own fold)
    assert not np.allclose(a.scores1[:5], a.extra[0])
    c = kfold_classify(x1, x0, TINY_CLF, seed=4)
    assert not np.array_equal(a.scores1, c.scores1)


def test_flow_deterministic_and_learns():
    h = BumpHunt(n_features=2)
    e = h.sample_background(4000, np.random.default_rng(0))
    fs = FlowSettings(transforms=2, hidden=(16, 16), epochs=10, lr=5e-3, patience=10, schedule="constant")
    f1 = fit_conditional_flow(e.x, e.m, fs, seed=5)
    f2 = fit_conditional_flow(e.x, e.m, fs, seed=5)
    np.testing.assert_array_equal(f1.log_prob(e.x[:50], e.m[:50]), f2.log_prob(e.x[:50], e.m[:50]))
    np.testing.assert_array_equal(f1.sample(e.m[:20], 1), f2.sample(e.m[:20], 1))
    # log q is in the units of x: close to the true density (a KL estimate) after a little training
    t = h.sample_background(4000, np.random.default_rng(1))
    gap = np.mean(h.log_p_bkg_x(t.x, t.m) - f1.log_prob(t.x, t.m))
    assert -0.02 < gap < 0.1


def test_flow_ensemble_is_the_mixture_of_its_members():
    h = BumpHunt(n_features=2)
    e = h.sample_background(3000, np.random.default_rng(0))
    fs = FlowSettings(transforms=1, hidden=(8,), epochs=3, lr=5e-3, patience=3, schedule="constant", ensemble=3)
    ens = fit_flow_ensemble(e.x, e.m, fs, seed=5)
    assert len(ens.flows) == 3
    # member 0 is the single flow of the same seed; the others differ (own seeds and held-out splits)
    single = fit_conditional_flow(e.x, e.m, fs, seed=5)
    x, m = e.x[:200], e.m[:200]
    np.testing.assert_array_equal(ens.flows[0].log_prob(x, m), single.log_prob(x, m))
    lps = np.stack([f.log_prob(x, m) for f in ens.flows])
    assert not np.allclose(lps[0], lps[1])
    # the mixture density is the mean of the member densities, and lies between the smallest and largest
    np.testing.assert_allclose(np.exp(ens.log_prob(x, m)), np.exp(lps).mean(0), rtol=1e-10)
    assert np.all(ens.log_prob(x, m) <= lps.max(0) + 1e-12) and np.all(ens.log_prob(x, m) >= lps.min(0) - 1e-12)
    # sampling: member j draws for masses j, j + 3, ...; deterministic for a seed
    ms = e.m[:30]
    xs = ens.sample(ms, 11)
    np.testing.assert_array_equal(xs, ens.sample(ms, 11))
    np.testing.assert_array_equal(xs[1::3], ens.flows[1].sample(ms[1::3], 12))
    with pytest.raises(InputError):
        fit_flow_ensemble(e.x, e.m, FlowSettings(ensemble=0), seed=5)


def test_null_test_counts():
    rng = np.random.default_rng(0)
    ref, data = rng.uniform(size=20_000), rng.uniform(size=10_000)
    r = null_test(data, np.arange(10_000) % 2, ref, np.arange(20_000) % 2)
    assert r["events"] == 10_000 and r["p_value"] > 0.001
    r2 = null_test(data + 0.02, np.arange(10_000) % 2, ref, np.arange(20_000) % 2)
    assert r2["above"] > 2 * r["above"] and r2["p_value"] < 1e-6


def _config(tmp_path, **extra):
    cfg = {"seed": 1, "signal_region": [3.3, 3.7],
           "flow": {"transforms": 1, "hidden": [8], "epochs": 2, "patience": 2},
           "classifier": {"hidden": [8], "epochs": 1, "folds": 2}}
    cfg.update(extra)
    p = tmp_path / "anomaly.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _events_file(tmp_path, n=6000):
    h = BumpHunt(n_features=2)
    e = h.sample(n, 0.01, np.random.default_rng(0))
    p = tmp_path / "events.csv"
    pd.DataFrame({"mjj": e.m, "a": e.x[:, 0], "b": e.x[:, 1], "truth": e.y}).to_csv(p, index=False)
    return p


def test_run_on_file_writes_outputs_and_is_deterministic(tmp_path):
    _events_file(tmp_path)
    cfg = _config(tmp_path, data={"path": "events.csv", "mass": "mjj", "features": ["a", "b"], "label": "truth"})
    r1 = run_anomaly(cfg, tmp_path / "o1")
    r2 = run_anomaly(cfg, tmp_path / "o2")
    s1 = pd.read_parquet(tmp_path / "o1" / "scores.parquet")
    s2 = pd.read_parquet(tmp_path / "o2" / "scores.parquet")
    assert list(s1.columns) == ["m", "a", "b", "label", "score", "fold"]
    np.testing.assert_array_equal(s1["score"], s2["score"])
    assert s1["m"].between(3.3, 3.7).all()
    summary = json.loads((tmp_path / "o1" / "summary.json").read_text())
    assert summary["sr_events"] == len(s1) and "sr_data_sic" in summary and "excess" in summary
    assert r1.summary["excess"] == r2.summary["excess"]


@pytest.mark.parametrize("extra, needle", [
    ({"signal_region": [1.0, 3.7]}, "not inside the data's m range"),
    ({"data": {"path": "events.csv", "mass": "mjj", "features": ["a", "nope"]}}, "column 'nope': missing column"),
    ({"data": {"path": "events.csv", "mass": "mass", "features": ["a"]}}, "column 'mass': missing column"),
    ({"signal_region": [3.7, 3.3]}, "lo < hi"),
    ({"data": {"path": "missing.csv", "features": ["a"]}}, "file not found"),
    ({"synthetic": {"signal_fraction": 2}}, "synthetic.signal_fraction"),
])
def test_cli_bad_input_one_line_exit_2(tmp_path, extra, needle):
    _events_file(tmp_path, n=2000)
    base = {"data": {"path": "events.csv", "mass": "mjj", "features": ["a", "b"]}}
    base.update(extra)
    if "synthetic" in extra:
        base.pop("data")
    cfg = _config(tmp_path, **base)
    res = CliRunner().invoke(app, ["anomaly", str(cfg), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    err = res.output.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out" / "scores.parquet").exists()


def test_cli_neither_or_both_data_sources(tmp_path):
    _events_file(tmp_path, n=2000)
    cfg = _config(tmp_path)
    res = CliRunner().invoke(app, ["anomaly", str(cfg), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "exactly one of 'data' and 'synthetic'" in res.output


def test_cli_synthetic_with_comparison(tmp_path):
    cfg = _config(tmp_path, synthetic={"n_background": 20_000, "signal_fraction": 0.01, "n_features": 2})
    res = CliRunner().invoke(app, ["anomaly", str(cfg), "--out", str(tmp_path / "out"),
                                   "--set", "classifier.epochs=1"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["methods"]) == {"optimal", "cathode", "idealized", "supervised", "cwola", "anode"}
    assert (tmp_path / "out" / "sic.png").stat().st_size > 1000
    assert "max SIC" in res.output


def test_non_finite_value_names_row(tmp_path):
    p = _events_file(tmp_path, n=2000)
    frame = pd.read_csv(p)
    frame.loc[7, "b"] = np.nan
    frame.to_csv(p, index=False)
    cfg = _config(tmp_path, data={"path": "events.csv", "mass": "mjj", "features": ["a", "b"]})
    with pytest.raises(InputError, match=r"column 'b', row 7: value nan is not finite"):
        run_anomaly(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_output_folder_of_another_kind_refused(tmp_path):
    _events_file(tmp_path, n=2000)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    cfg = _config(tmp_path, data={"path": "events.csv", "mass": "mjj", "features": ["a", "b"]})
    with pytest.raises(InputError):
        run_anomaly(cfg, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.mark.slow
def test_cathode_reaches_idealized_and_beats_cwola_at_one_percent():
    from rarefy.anomaly.compare import CompareSettings, run_methods

    h = BumpHunt()
    data = h.sample(150_000, 0.01, np.random.default_rng([13, 0]))
    r = run_methods(h, data, 13, settings=CompareSettings(methods=("cathode", "idealized", "cwola")))
    assert r["cathode"]["max_sic"] >= 0.8 * r["idealized"]["max_sic"]
    assert r["cathode"]["max_sic"] > r["cwola"]["max_sic"] + 1
    assert r["optimal"]["max_sic"] >= r["idealized"]["max_sic"] - 0.3
