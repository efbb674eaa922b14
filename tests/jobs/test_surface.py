"""The surface loop (rarefy run with loop.goal: surface): stopping rule, compute per fidelity, calibration, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import rarefy
from rarefy.cli import app
from rarefy.config import load_config
from rarefy.diagnostics.validation import surface_accuracy
from rarefy.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def surface_config(tmp_path: Path, name: str = "surface.yaml", loop: dict | None = None, denoise: bool = False) -> Path:
    """examples/moderator/run-surface.yaml shrunk to seconds (without the denoiser unless asked)."""
    cfg = yaml.safe_load((ROOT / "examples" / "moderator" / "run-surface.yaml").read_text())
    cfg["fidelities"][0]["events"] = 20_000
    cfg["fidelities"][1]["events"] = 40_000
    cfg["surrogate"].update(restarts=1, max_iter=40)
    cfg["campaign"]["runs"] = [{"fidelity": "lf", "runs": 12, "events": 20_000, "designs": "sobol"},
                               {"fidelity": "hf", "runs": 2, "events": 40_000, "designs": "lf"}]
    cfg["acquisition"].update(candidates=64, reference=16, starts=1, steps=3)
    cfg["loop"] = {"goal": "surface", "stop": {"metric": "sigma_over_spread", "below": 1e-3, "designs": 16},
                   "iterations": 2, "batch": 2, "cv_folds": 2, **(loop or {})}
    if denoise:
        cfg["denoise"].update(ensemble=1, batches_per_epoch=5, batch_size=512,
                              imbalance=[{"epochs": 1, "positive_ratio": 0.01, "max_reuse": 40}])
    else:  # the raw LF counts in the chain
        cfg["fidelities"][0].update(name="lf", filter={"fidelity": "lf"}, noise={"counts": "k", "events": "n"})
        cfg["acquisition"]["fidelities"] = ["lf", "hf"]
        cfg["denoise"] = None
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def surface_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("surface")
    cfg = surface_config(tmp)
    fits: list[tuple[int, float]] = []
    res = rarefy.run(cfg, tmp / "run", progress=False, on_fit=lambda i, sur, cost: fits.append((i, cost["total"])))
    return cfg, tmp / "run", res, fits


def test_surface_loop_writes_its_result_and_report(surface_run):
    cfg, out, res, fits = surface_run
    r = json.loads((out / "result.json").read_text())
    assert r["goal"] == "surface" and r["target"] == "hf"
    assert r["stopped"] == "iterations"          # 1e-3 of the spread is out of reach in 2 rounds
    assert r["iterations"] == 2 and len(r["history"]) == 3   # rounds 1, 2 and the final check
    assert [i for i, _ in fits] == [0, 1, 2]
    # compute per fidelity: the moderator's per-event costs on the simulated runs
    runs = pd.read_parquet(out / "rates.parquet")
    lf, hf = (runs["fidelity"] == "lf").sum(), (runs["fidelity"] == "hf").sum()
    assert lf + hf == 12 + 2 + 2 * 2
    assert r["cost_cpu_h"]["lf"] == pytest.approx(lf * 20_000 * 3e-6)
    assert r["cost_cpu_h"]["hf"] == pytest.approx(hf * 40_000 * 1.5e-4)
    assert r["cost_cpu_h"]["denoiser"] == 0.0
    assert r["cost_cpu_h"]["total"] == pytest.approx(r["cost_cpu_h"]["lf"] + r["cost_cpu_h"]["hf"])
    # the history's compute grows; the last record's is the result's
    spent = [h["cost_cpu_h"]["total"] for h in r["history"]]
    assert spent == sorted(spent) and spent[-1] == pytest.approx(r["cost_cpu_h"]["total"])
    # calibration: CV over the HF runs, and the exact check of the moderator
    assert {"coverage_2sigma", "mse"} <= set(r["cv"])
    assert r["exact"]["designs"] == 16 and 0 <= r["exact"]["coverage_2sigma"] <= 1
    surface = pd.read_parquet(out / "surface.parquet")
    assert len(surface) == 16 and (surface["sigma"] > 0).all()
    acc = surface_accuracy(surface["mean"].to_numpy(), surface["sigma"].to_numpy())
    assert acc["sigma_over_spread"] == pytest.approx(r["accuracy"]["sigma_over_spread"])
    page = (out / "report" / "index.html").read_text()
    assert "Rate surface" in page and "stopped by" in page and (out / "report" / "accuracy.png").exists()
    assert res.summary()[0].startswith("hf rate surface: sigma_over_spread")


def test_finished_surface_run_simulates_nothing_and_a_looser_rule_stops_it(surface_run, tmp_path):
    cfg, out, res, _ = surface_run
    before = pd.read_parquet(out / "rates.parquet")
    again = rarefy.run(cfg, out, progress=False)
    assert again.executed == 0 and again.result["stopped"] == "iterations"
    # a looser rule: the first round's metric already meets it -> stopped by accuracy, nothing simulated
    first = json.loads((out / "loop" / "iter-001.json").read_text())["accuracy"]["sigma_over_spread"]
    looser = rarefy.run(cfg, out, progress=False, overrides=[f"loop.stop.below={first * 1.01}"])
    assert looser.executed == 0 and looser.result["stopped"] == "accuracy"
    assert len(pd.read_parquet(out / "rates.parquet")) == len(before)


def test_surface_loop_stops_when_the_rule_holds(tmp_path):
    cfg = surface_config(tmp_path, loop={"stop": {"metric": "rel_sigma", "below": 100.0, "designs": 16}})
    res = rarefy.run(cfg, tmp_path / "run", progress=False)
    assert res.result["stopped"] == "accuracy" and res.iterations == 0
    assert res.result["runs"] == {"lf": 12, "hf": 2}


def test_surface_loop_with_the_denoiser_charges_its_compute(tmp_path):
    cfg = surface_config(tmp_path, denoise=True, loop={"iterations": 1, "batch": 1, "cv_folds": 0})
    res = rarefy.run(cfg, tmp_path / "run", progress=False)
    r = res.result
    assert r["cost_cpu_h"]["denoiser"] > 0
    assert "lf-denoised" in r["history"][0]["rows_per_fidelity"] and "lf" not in r["history"][0]["rows_per_fidelity"]
    scored = pd.read_parquet(tmp_path / "run" / "denoise" / "rates_denoised.parquet")
    assert set(scored["run_id"]) == set(pd.read_parquet(tmp_path / "run" / "rates.parquet").query(
        "fidelity == 'lf'")["run_id"])


def test_goal_surface_needs_a_stop_rule(tmp_path):
    cfg = yaml.safe_load(surface_config(tmp_path).read_text())
    del cfg["loop"]["stop"]
    path = tmp_path / "nostop.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(InputError, match="needs a 'stop' rule"):
        load_config(path)
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and not (tmp_path / "r").exists()


def test_surface_accuracy_metrics():
    m = np.linspace(1.0, 3.0, 1001)
    s = np.full_like(m, 0.1)
    acc = surface_accuracy(m, s)
    assert acc["spread"] == pytest.approx(0.99 * 2.0) and acc["rms_sigma"] == pytest.approx(0.1)
    assert acc["sigma_over_spread"] == pytest.approx(0.1 / 1.98)
    assert acc["rel_sigma"] == pytest.approx(np.mean(0.1 / m))
    # a few extreme designs do not set the spread
    wild = np.concatenate([m, [100.0, 200.0]])
    assert surface_accuracy(wild, np.full_like(wild, 0.1))["spread"] < 2.1
    assert surface_accuracy(np.ones(3), s[:3])["sigma_over_spread"] == np.inf


def test_verification_is_sized_to_the_predicted_gain():
    from rarefy.jobs.loop import verification_size

    b, rate = 6e-5, 0.85 * 6e-5          # a predicted 15% reduction against a known baseline
    v = verification_size(rate, b, 0.0, paired=False, fraction=1 / 3, events=1_000_000, min_runs=2, max_runs=100)
    n = v["runs"] * 1_000_000
    sigma_red = np.sqrt(rate / n) / b     # the verified reduction's σ with that many events
    assert sigma_red <= 0.15 / 3 and v["limited_by"] is None
    fewer = (v["runs"] - 1) * 1_000_000   # one run fewer would not do
    assert np.sqrt(rate / fewer) / b > 0.15 / 3
    # a paired baseline design needs more; the cap limits and says so
    paired = verification_size(rate, b, None, paired=True, fraction=1 / 3, events=1_000_000, min_runs=2, max_runs=100)
    assert paired["runs"] > v["runs"]
    capped = verification_size(rate, b, 0.0, paired=False, fraction=0.05, events=1_000_000, min_runs=2, max_runs=10)
    assert capped["runs"] == 10 and capped["limited_by"] == "max_runs" and capped["needed"] > 10
    # no predicted gain, or a baseline too uncertain: the fewest runs / the cap
    assert verification_size(1.1 * b, b, 0.0, paired=False, fraction=0.3, events=10**6, min_runs=3,
                             max_runs=9)["runs"] == 3
    hopeless = verification_size(rate, b, 0.2 * b, paired=False, fraction=0.3, events=10**6, min_runs=3, max_runs=9)
    assert hopeless["needed"] is None and hopeless["runs"] == 9 and hopeless["limited_by"] == "max_runs"


def test_the_second_look_adds_the_runs_that_would_confirm_the_measured_gain():
    from rarefy.jobs.loop import follow_up_size

    b, ev = 5.1e-5, 1_000_000
    # six runs measured 7% (σ 5.5%: not confirmed): enough runs in all that a true 7% reads 2σ
    # with 80% probability, σ <= 7% / (2 + 0.84)
    f = follow_up_size(0.93 * b, b, 0.0, paired=False, events=ev, runs=6, max_runs=80)
    total = (6 + f["runs"]) * ev
    assert f["runs"] > 0 and f["reason"] == "sized to the measured gain"
    assert np.sqrt(0.93 * b / total) / b <= 0.07 / 2.8416
    assert np.sqrt(0.93 * b / (total - ev)) / b > 0.07 / 2.8416     # one run fewer would not do
    # the cap holds in all; a confirmed or absent gain adds nothing
    assert follow_up_size(0.93 * b, b, 0.0, paired=False, events=ev, runs=6, max_runs=10)["runs"] == 4
    assert follow_up_size(0.7 * b, b, 0.0, paired=False, events=ev, runs=6, max_runs=40)["runs"] == 0
    assert follow_up_size(1.02 * b, b, 0.0, paired=False, events=ev, runs=6, max_runs=40)["reason"] == "no measured gain"
    # a paired baseline needs more runs than a known one
    assert (follow_up_size(0.93 * b, b, None, paired=True, events=ev, runs=6, max_runs=400)["runs"]
            > f["runs"])


def test_the_optimum_loop_sizes_its_verification_and_says_whether_the_gain_is_confirmed(tmp_path):
    cfg = yaml.safe_load((ROOT / "examples" / "moderator" / "run.yaml").read_text())
    for f in cfg["fidelities"]:
        f["events"] = 20_000
    cfg["surrogate"].update(restarts=1, max_iter=40)
    cfg["campaign"]["runs"] = [{"fidelity": "lf", "runs": 8, "designs": "sobol"},
                               {"fidelity": "hf", "runs": 2, "designs": "lf"}]
    cfg["acquisition"].update(candidates=64, reference=16, starts=1, steps=3)
    cfg["optimize"] = {"objective": "mean", "candidates": 128, "starts": 2, "steps": 5}
    cfg["loop"] = {"iterations": 1, "batch": 1, "cv_folds": 0,
                   "verify": {"runs": 1, "reduction_sigma": 0.3, "max_runs": 3}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = rarefy.run(path, tmp_path / "run", progress=False).result
    ver = r["verification"]
    assert 1 <= ver["runs"] <= 3 and ver["events_per_run"] == 20_000
    follow = ver["follow_up"]
    assert 0 <= ver["runs"] + follow["runs"] <= 3
    assert r["verified_n"] == (ver["runs"] + follow["runs"]) * 20_000
    if r["predicted_reduction"] and r["predicted_reduction"] > 0:
        assert ver["reduction_sigma_target"] == pytest.approx(0.3 * r["predicted_reduction"])
    assert r["gain_confirmed"] == (r["reduction"] >= 2 * r["reduction_sigma"] > 0)
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "gain confirmed" in page and "verification runs" in page
