"""`rarefy train CONFIG --run RUN_DIR` and `rarefy denoise RUN_DIR` on tiny run directories.

The run directories come from `rarefy simulate` with the toy simulator (one φ column
``u``, rate 1-6% per event), a sync executor, 8 LF runs of 1,500 events in block 0,
3 held-out LF runs in block 1 and 2 HF runs.
"""

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

runner = CliRunner()

SPACE = {"parameters": {"x": {"low": 0, "high": 1}, "y": {"low": 0, "high": 1}}}
FIDS = [{"name": "lf", "value": "rate", "filter": {"fidelity": "lf"}, "noise": {"counts": "k", "events": "n"}},
        {"name": "hf", "value": "rate", "filter": {"fidelity": "hf"}, "noise": {"counts": "k", "events": "n"}}]
DENOISE = {"fidelities": ["lf"], "test_blocks": [1], "split": [0.75, 0.25, 0.0],
           "model": {"encoder": [16, 16], "decoder": [16, 16]}, "epochs": 2, "batch_size": 500,
           "batches_per_epoch": 4, "context_size": 16, "min_context": 2, "tensorboard": False, "progress": False,
           "device": "cpu"}


def config(**denoise) -> dict:
    return {
        "name": "toy-denoise", "seed": 5, "space": SPACE, "fidelities": FIDS,
        "simulator": {"kind": "python", "target": "rarefy.simulators.testing:toy"},
        "campaign": {"runs": [{"fidelity": "lf", "runs": 8, "events": 1500},
                              {"fidelity": "lf", "runs": 3, "events": 1500},
                              {"fidelity": "hf", "runs": 2, "events": 800, "designs": "lf"}],
                     "executor": {"kind": "sync"}},
        "denoise": {**DENOISE, **denoise},
    }


def write(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> tuple[Path, Path]:
    """(config path, run directory) of a finished tiny campaign; copy before modifying."""
    base = tmp_path_factory.mktemp("sim")
    cfg = write(base / "denoise.yaml", config())
    res = runner.invoke(app, ["simulate", str(cfg), "--out", str(base / "run")])
    assert res.exit_code == 0, res.output
    return cfg, base / "run"


def fresh_copy(simulated, tmp_path: Path) -> Path:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(simulated[1], run)
    return run


def test_train_then_denoise_cli(simulated, tmp_path):
    cfg = simulated[0]
    run = fresh_copy(simulated, tmp_path)
    res = runner.invoke(app, ["train", str(cfg), "--run", str(run)])
    assert res.exit_code == 0, res.output
    for name in ("model.pt", "checkpoint.pt", "history.json", "config.yaml", "pipeline.json"):
        assert (run / "denoise" / name).exists(), name

    rates = pd.read_parquet(run / "rates.parquet")
    assert "split" in rates.columns and rates["split"].notna().all()
    split = rates.set_index("run_id")["split"]
    # block 1 (runs 8-10) is held out as test; HF runs (11, 12) were never trained on: test
    assert (split[[f"run-{i:05d}" for i in (8, 9, 10, 11, 12)]] == "test").all()
    block0 = split[[f"run-{i:05d}" for i in range(8)]]
    assert (block0 == "train").sum() == 6 and (block0 == "val").sum() == 2
    meta = json.loads((run / "denoise" / "pipeline.json").read_text())
    assert meta["held_out"] == ["run-00008", "run-00009", "run-00010"] and meta["phi"] == ["u"]

    res = runner.invoke(app, ["denoise", str(run)])
    assert res.exit_code == 0, res.output
    first = pd.read_parquet(run / "rates.parquet")
    assert sorted(first["fidelity"].unique()) == ["hf", "hf-denoised", "lf", "lf-denoised"]
    assert (first["fidelity"] == "lf-denoised").sum() == 11 and (first["fidelity"] == "hf-denoised").sum() == 2
    den = first[first["fidelity"].str.endswith("-denoised")].set_index("run_id")
    raw = first[~first["fidelity"].str.endswith("-denoised")].set_index("run_id")
    assert (den["split"] == raw.loc[den.index, "split"]).all()
    assert (den["n"] == raw.loc[den.index, "n"]).all() and (den["k"] == raw.loc[den.index, "k"]).all()
    assert np.all((den["rate"] > 0) & (den["rate"] < 1)) and np.all(den["var"] > 0)
    rarefy.RateTable(first, rarefy.load_config(cfg).space.build())          # a valid RateTable

    # re-running replaces the -denoised rows (same values: deterministic scoring), never duplicates
    res = runner.invoke(app, ["denoise", str(run)])
    assert res.exit_code == 0, res.output
    second = pd.read_parquet(run / "rates.parquet")
    assert len(second) == len(first)
    pd.testing.assert_frame_equal(second.sort_values(["fidelity", "run_id"]).reset_index(drop=True),
                                  first.sort_values(["fidelity", "run_id"]).reset_index(drop=True))
    assert not list(run.glob(".rates.parquet.*"))                            # no temporary files left


def test_python_api_deterministic_and_resumes(simulated, tmp_path):
    cfg = rarefy.load_config(simulated[0])
    runs = []
    for name in ("a", "b"):
        run = fresh_copy(simulated, tmp_path / name)
        res = rarefy.train_denoiser(cfg, run)
        assert isinstance(res, rarefy.DenoiseTrainResult) and res.train.finished
        out = rarefy.denoise_run(run, fidelities=["lf"])
        assert isinstance(out, rarefy.DenoiseRunResult) and out.fidelities == ["lf-denoised"]
        assert out.n_events == 11 * 1500 and set(out.table.frame["fidelity"]) == {"lf-denoised"}
        runs.append(run)
    a, b = (pd.read_parquet(r / "rates.parquet") for r in runs)
    pd.testing.assert_frame_equal(a, b)                                       # same seed, same rates
    again = rarefy.train_denoiser(cfg, runs[0])                               # finished: nothing re-trained
    assert again.train.epochs_run == 2 and len(again.train.history) == 2


def test_simulate_again_keeps_denoised_rows_and_split(simulated, tmp_path):
    """rates.parquet has one writer that merges: re-simulating rewrites only the simulated rows."""
    cfg = rarefy.load_config(simulated[0])
    run = fresh_copy(simulated, tmp_path)
    rarefy.train_denoiser(cfg, run)
    rarefy.denoise_run(run)
    before = pd.read_parquet(run / "rates.parquet")
    assert {"lf-denoised", "hf-denoised"} <= set(before["fidelity"]) and before["split"].notna().all()

    rarefy.simulate(cfg, run, progress=False)                                 # nothing left to run
    pd.testing.assert_frame_equal(pd.read_parquet(run / "rates.parquet"), before)

    raw = config()                                                            # one more HF run
    raw["campaign"]["runs"].append({"fidelity": "hf", "runs": 1, "events": 800})
    res = rarefy.simulate(write(tmp_path / "more.yaml", raw), run, progress=False)
    assert res.n_executed == 1
    after = pd.read_parquet(run / "rates.parquet")
    assert len(after) == len(before) + 1 and (after["run_id"] == "run-00013").sum() == 1
    old = after[after["run_id"] != "run-00013"].reset_index(drop=True)
    pd.testing.assert_frame_equal(old, before)                                # -denoised rows and split kept
    assert after.loc[after["run_id"] == "run-00013", "split"].isna().all()    # not seen by the trainer yet

    rarefy.denoise_run(run)                                                   # scores it; its split: test
    final = pd.read_parquet(run / "rates.parquet")
    assert (final.loc[final["run_id"] == "run-00013", "split"] == "test").all()
    assert set(final.loc[final["run_id"] == "run-00013", "fidelity"]) == {"hf", "hf-denoised"}


@pytest.mark.parametrize("case, pattern", [
    ("unknown_loss", "denoise.loss"),
    ("missing_phi", "lack the φ column(s) ['nope']"),
    ("no_events", "no events"),
    ("no_catalog", "no events"),
    ("no_runs_of_fidelity", "no events to train on"),
    ("bad_test_block", "denoise.test_blocks"),
])
def test_bad_input_one_line_exit_2_before_training(simulated, tmp_path, case, pattern):
    run = fresh_copy(simulated, tmp_path)
    raw = config()
    if case == "unknown_loss":
        raw["denoise"]["loss"] = "hinge"
    elif case == "missing_phi":
        raw["denoise"]["phi"] = ["u", "nope"]
    elif case == "no_events":
        run = tmp_path / "empty"
        res = runner.invoke(app, ["simulate", str(write(tmp_path / "e.yaml", {**config(), "campaign": {
            "runs": [{"fidelity": "lf", "runs": 0, "events": 10}], "executor": {"kind": "sync"}},
            "denoise": {**DENOISE, "test_blocks": []}})), "--out", str(run)])
        assert res.exit_code == 0, res.output
        raw["denoise"]["test_blocks"] = []
    elif case == "no_catalog":
        run = tmp_path / "nothing"
        run.mkdir()
    elif case == "no_runs_of_fidelity":
        raw["denoise"]["fidelities"] = ["hf"]
        raw["denoise"]["test_blocks"] = [2]
    elif case == "bad_test_block":
        raw["denoise"]["test_blocks"] = [3]
    cfg = write(tmp_path / "bad.yaml", raw)
    res = runner.invoke(app, ["train", str(cfg), "--run", str(run)])
    assert res.exit_code == 2, res.output
    err = res.stderr if hasattr(res, "stderr") else res.output
    line = err.strip()
    assert "\n" not in line and pattern in line, line
    assert not (run / "denoise" / "checkpoint.pt").exists() and not (run / "denoise" / "model.pt").exists()
    if case == "no_catalog":
        assert not (run / "catalog.sqlite").exists() and not (run / "events").exists()   # nothing created


def test_denoise_without_training_is_an_error(simulated, tmp_path):
    run = fresh_copy(simulated, tmp_path)
    res = runner.invoke(app, ["denoise", str(run)])
    assert res.exit_code == 2 and "rarefy train" in res.output
    assert "split" not in pd.read_parquet(run / "rates.parquet").columns     # rates untouched


def test_streaming_training_writes_model_and_split(simulated, tmp_path):
    raw = config(stream=True)
    cfg = write(tmp_path / "stream.yaml", raw)
    run = fresh_copy(simulated, tmp_path)
    res = rarefy.train_denoiser(cfg, run)
    assert res.train.finished and res.model_path.exists() and res.n_events == 8 * 1500
    split = pd.read_parquet(run / "rates.parquet").set_index("run_id")["split"]
    assert (split == "train").sum() == 6 and (split == "val").sum() == 2 and (split == "test").sum() == 5


def test_ensemble_members_train_on_their_own_splits_and_are_averaged(simulated, tmp_path):
    from rarefy.denoise import Scores, average_scores, load_model

    raw = config(ensemble=2, model={"kind": "factorised", "encoder": [8], "decoder": [16, 16]})
    cfg = write(tmp_path / "ens.yaml", raw)
    run = fresh_copy(simulated, tmp_path)
    res = rarefy.train_denoiser(cfg, run)
    members = [run / "denoise" / f"member-{i}" for i in (0, 1)]
    assert res.model_path == members[0] / "model.pt" and all((m / "model.pt").exists() for m in members)
    splits = [json.loads((m / "split.json").read_text()) for m in members]
    assert splits[0]["val"] != splits[1]["val"]                      # bagging over runs
    assert sorted(splits[0]["train"] + splits[0]["val"]) == sorted(splits[1]["train"] + splits[1]["val"])
    held = {"run-00008", "run-00009", "run-00010"}
    assert not held & set(splits[0]["train"] + splits[0]["val"] + splits[1]["train"] + splits[1]["val"])
    out = rarefy.denoise_run(run, fidelities=["lf"])
    assert out.n_events == 11 * 1500
    # the written rate of a run is the mean over events of the members' average probability
    frame = out.table.frame.set_index("run_id")
    models = [load_model(m) for m in members]
    assert models[0][2].model.kind == "factorised"
    p = np.array([1e-3, 2e-3]), np.array([3e-3, 2e-3])
    s = [Scores(p=x, sigma=np.full(2, 1e-3), mu=np.zeros(2), log_var=np.zeros(2), y=np.zeros(2),
                run_starts=np.array([0, 2]), run_ids=["r"], theta=np.zeros((1, 2)), theta_names=["x", "y"],
                fidelity=["lf"]) for x in p]
    avg = average_scores(s)
    np.testing.assert_allclose(avg.p, [2e-3, 2e-3])
    np.testing.assert_allclose(avg.sigma, np.sqrt([1e-6 + 1e-6, 1e-6]))
    assert np.all(frame["rate"] > 0) and np.all(frame["var"] > 0)


@pytest.mark.parametrize("ensemble", [1, 2])
def test_the_loop_trains_the_denoiser_once(simulated, tmp_path, monkeypatch, ensemble):
    """rundata.update_denoised (called by the loop every round) trains only while some member's model is missing."""
    import rarefy.jobs.denoise as denoising
    from rarefy.jobs.rundata import update_denoised

    raw = config(ensemble=ensemble)
    raw["fidelities"] = [FIDS[0], {"name": "lf-denoised", "value": "rate", "filter": {"fidelity": "lf-denoised"},
                                   "noise": {"variance": "var"}}, FIDS[1]]
    cfg = rarefy.load_config(write(tmp_path / "loop.yaml", raw))
    run = fresh_copy(simulated, tmp_path)
    calls = []
    real = denoising.train_denoiser
    monkeypatch.setattr(denoising, "train_denoiser", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert len(update_denoised(cfg, run)) == 11                # trained, then every LF run scored
    assert update_denoised(cfg, run) == [] and len(calls) == 1  # nothing new: neither trained nor scored


def test_old_names_of_denoised_fidelities_still_work(simulated, tmp_path, caplog):
    """A run directory and a config of the old names (``-cnp``, rates_cnp.parquet) read as ``-denoised``."""
    from rarefy.acquisition.fidelity import fidelity_plans
    from rarefy.data.rundir import denoised_base, simulated_rows
    from rarefy.jobs.rundata import training_table

    with caplog.at_level("WARNING", logger="rarefy.data.rundir"):
        assert [denoised_base(n) for n in ("lf-denoised", "hf", "-denoised")] == ["lf", None, None]
        assert denoised_base("alias-check-cnp") == denoised_base("alias-check-cnp") == "alias-check"
    said = [r.getMessage() for r in caplog.records if "alias-check" in r.getMessage()]
    assert len(said) == 1 and "'alias-check-denoised'" in said[0]             # one warning naming the new name

    run = fresh_copy(simulated, tmp_path)                 # as an earlier version left it: only old names
    rates = pd.read_parquet(run / "rates.parquet")
    old_rows = rates[rates["fidelity"] == "lf"].assign(fidelity="lf-cnp", rate=0.5)
    pd.concat([rates, old_rows], ignore_index=True).to_parquet(run / "rates.parquet")
    (run / "denoise").mkdir()
    old_rows.to_parquet(run / "denoise" / "rates_cnp.parquet")
    assert set(simulated_rows(run)["fidelity"]) == {"lf", "hf"}                # old denoised rows cost nothing

    denoised = {"name": "lf-denoised", "value": "rate", "noise": {"variance": "var"}}
    for name in ("lf-denoised", "lf-cnp"):                                     # a new and an old config
        raw = config()
        raw["fidelities"] = [FIDS[0], {**denoised, "name": name, "filter": {"fidelity": name}}, FIDS[1]]
        cfg = rarefy.load_config(write(tmp_path / f"{name}.yaml", raw))
        table = training_table(run, cfg)
        assert (table.frame["fidelity"] == name).sum() == 11 and (table.frame.loc[table.frame["fidelity"] == name,
                                                                                   "rate"] == 0.5).all()
        plans = fidelity_plans(cfg.fidelities, {"lf": 1500, "hf": 800})
        assert plans[name].simulated == "lf" and plans[name].events == 1500       # a run of lf observes it
