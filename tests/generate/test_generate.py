"""The event generator p(φ | θ): feature map, determinism, save/load, conditioning, errors, CLI, flow simulator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from rarefy.cli import app
from rarefy.config import GenerateConfig, load_config
from rarefy.data.events import EventTable
from rarefy.errors import InputError
from rarefy.generate import FeatureMap, Generator, fit_generator
from rarefy.generate.evaluate import c2st, chi2_two_sample, roc_auc, wasserstein
from rarefy.generate.simulator import FlowSimulator
from rarefy.jobs.generate import sample_generator, train_generator
from rarefy.simulators.moderator import BIRTH_COLUMNS as BIRTH
from rarefy.space import DesignSpace, Parameter

EXAMPLES = Path(__file__).parents[2] / "examples" / "moderator"
SMALL = dict(epochs=2, batch_size=256, flow={"transforms": 1, "hidden": [16]})


def synthetic(n_runs: int = 6, n: int = 600, seed: int = 0) -> tuple[EventTable, DesignSpace]:
    """x ~ N(4a, 0.3²) bounded by its sample, k ~ Poisson(1 + 2a) (integer), at designs a in [0, 1]."""
    space = DesignSpace([Parameter("a", 0.0, 1.0), Parameter("b", -1.0, 1.0)])
    rng = np.random.default_rng(seed)
    tables = []
    for i in range(n_runs):
        a, b = rng.random(), rng.uniform(-1, 1)
        phi = {"x": rng.normal(4 * a, 0.3, n), "k": rng.poisson(1 + 2 * a, n).astype(float)}
        tables.append(EventTable.from_arrays({"a": a, "b": b}, phi, (rng.random(n) < 0.1).astype(np.int8),
                                             fidelity="lf", run_id=f"run-{i}"))
    return EventTable.concat(tables), space


def test_feature_map_round_trip_keeps_integers_and_bounds():
    rng = np.random.default_rng(0)
    phi = np.column_stack([rng.uniform(2, 5, 1000), rng.integers(0, 4, 1000).astype(float)])
    fm = FeatureMap.fit(phi, ["x", "k"], [False, True], 0.01, rng)
    back = fm.inverse(fm.forward(phi, rng))
    np.testing.assert_allclose(back[:, 0], phi[:, 0], rtol=1e-6)   # float32 flow space
    np.testing.assert_array_equal(back[:, 1], phi[:, 1])   # dequantised in [k, k+1), floored back to k
    wild = fm.inverse(rng.normal(0, 5, (500, 2)))           # any flow output maps into the training range
    assert wild[:, 0].min() >= 2 - 1e-9 and wild[:, 0].max() <= 5 + 1e-9
    assert set(np.unique(wild[:, 1])) <= {0.0, 1.0, 2.0, 3.0}
    again = FeatureMap.from_state(json.loads(json.dumps(fm.state())))
    np.testing.assert_array_equal(again.forward(phi, None), fm.forward(phi, None))


def test_same_seed_same_generator_other_seed_other():
    events, space = synthetic()
    cfg = GenerateConfig(**SMALL)
    theta = {"a": 0.3, "b": 0.1}
    s1 = fit_generator(events, space, cfg, seed=5).generator.sample_array(theta, 200, seed=1)
    s2 = fit_generator(events, space, cfg, seed=5).generator.sample_array(theta, 200, seed=1)
    s3 = fit_generator(events, space, cfg, seed=6).generator.sample_array(theta, 200, seed=1)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, s3)


def test_an_interrupted_training_resumes_to_the_same_generator(tmp_path):
    events, space = synthetic()
    cfg = GenerateConfig(**{**SMALL, "epochs": 3})
    theta = {"a": 0.4, "b": 0.2}
    whole = fit_generator(events, space, cfg, seed=2, workdir=tmp_path / "a")
    part = fit_generator(events, space, cfg, seed=2, workdir=tmp_path / "b", stop_after_epochs=1)
    assert len(part.history) == 1
    resumed = fit_generator(events, space, cfg, seed=2, workdir=tmp_path / "b")
    assert len(resumed.history) == 3
    assert resumed.history[0] == part.history[0]      # epoch 0 came from the checkpoint (its wall time too)
    np.testing.assert_array_equal(resumed.generator.sample_array(theta, 200, seed=1),
                                  whole.generator.sample_array(theta, 200, seed=1))
    assert list((tmp_path / "a" / "tensorboard").iterdir())


def test_save_load_gives_the_same_samples_without_pickle(tmp_path):
    events, space = synthetic()
    fit = fit_generator(events, space, GenerateConfig(**SMALL), seed=0)
    fit.generator.save(tmp_path / "g")
    meta = json.loads((tmp_path / "g" / "generator.json").read_text())
    assert meta["features"]["names"] == ["x"] and meta["discrete"]["columns"] == ["k"]   # k: a categorical head
    back = Generator.load(tmp_path / "g")
    theta = {"a": 0.7, "b": -0.5}
    np.testing.assert_array_equal(back.sample_array(theta, 300, seed=3), fit.generator.sample_array(theta, 300, seed=3))
    assert back.phi_names == ["x", "k"]
    (tmp_path / "g" / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="cannot read the generator's weights"):
        Generator.load(tmp_path / "g")


def test_the_flow_learns_the_theta_dependence():
    events, space = synthetic(n_runs=12, n=2000, seed=1)
    cfg = GenerateConfig(epochs=8, batch_size=256, flow={"transforms": 2, "hidden": [32, 32]}, patience=None)
    gen = fit_generator(events, space, cfg, seed=0).generator
    lo = gen.sample_array({"a": 0.2, "b": 0.0}, 4000, seed=1)
    hi = gen.sample_array({"a": 0.8, "b": 0.0}, 4000, seed=2)
    # x ~ N(4a, 0.3²): means 0.8 and 3.2; k ~ Poisson(1 + 2a): means 1.4 and 2.6
    assert abs(lo[:, 0].mean() - 0.8) < 0.4 and abs(hi[:, 0].mean() - 3.2) < 0.4
    assert hi[:, 1].mean() - lo[:, 1].mean() > 0.6
    assert np.all(lo[:, 1] == np.round(lo[:, 1]))


def test_outcome_conditioning_and_its_errors():
    events, space = synthetic()
    gen = fit_generator(events, space, GenerateConfig(condition_on_outcome=True, **SMALL), seed=0).generator
    assert gen.sample_array({"a": 0.5, "b": 0}, 10, outcome=1).shape == (10, 2)
    with pytest.raises(InputError, match="conditioned on the outcome"):
        gen.sample_array({"a": 0.5, "b": 0}, 10)
    plain = fit_generator(events, space, GenerateConfig(**SMALL), seed=0).generator
    with pytest.raises(InputError, match="give no outcome"):
        plain.sample_array({"a": 0.5, "b": 0}, 10, outcome=1)


def test_theta_outside_the_space_and_missing_columns_are_one_line_errors():
    events, space = synthetic()
    gen = fit_generator(events, space, GenerateConfig(**SMALL), seed=0).generator
    with pytest.raises(InputError, match="outside the trained space") as e:
        gen.sample({"a": 1.5, "b": 0}, 5)
    assert e.value.column == "a" and "\n" not in str(e.value)
    with pytest.raises(InputError, match="lacks the parameters"):
        gen.sample({"a": 0.5}, 5)
    with pytest.raises(InputError, match="lack the φ column") as e:
        fit_generator(events, space, GenerateConfig(phi=["x", "nope"], **SMALL), seed=0)
    assert e.value.column == "nope"


@pytest.fixture
def moderator_run(tmp_path):
    """A moderator run directory (3 LF runs of 800 events) and its config with a small generate section."""
    cfg = yaml.safe_load((EXAMPLES / "simulate.yaml").read_text())
    cfg["fidelities"] = cfg["fidelities"][:1]
    cfg["target"] = "lf"
    cfg["campaign"] = {"runs": [{"fidelity": "lf", "runs": 3, "events": 800, "designs": "sobol"}],
                       "executor": {"kind": "sync"}}
    cfg["generate"] = {"phi": list(BIRTH), **SMALL}
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    from rarefy.jobs.simulate import simulate

    simulate(path, tmp_path / "run")
    return path, tmp_path / "run"


def test_cli_train_sample_and_errors(moderator_run, tmp_path):
    cfg, run = moderator_run
    runner = CliRunner()
    res = runner.invoke(app, ["generate", "train", str(cfg), "--run", str(run)])
    assert res.exit_code == 0, res.output
    assert (run / "generate" / "model.pt").exists() and (run / "generate" / "checkpoint.pt").exists()
    theta = ["--theta", "radius=150", "--theta", "thickness=5", "--theta", "npanels=40", "--theta", "theta=30",
             "--theta", "length=10"]
    out = tmp_path / "s.parquet"
    res = runner.invoke(app, ["generate", "sample", str(run), *theta, "--n", "500", "--out", str(out)])
    assert res.exit_code == 0, res.output
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["radius", "thickness", "npanels", "theta", "length", *BIRTH]
    assert len(frame) == 500 and (frame["radius"] == 150).all()
    pd.testing.assert_frame_equal(frame, sample_generator(run, dict(radius=150, thickness=5, npanels=40, theta=30,
                                                                     length=10), 500))
    bad = [t if "radius" not in t else "radius=400" for t in theta]
    res = runner.invoke(app, ["generate", "sample", str(run), *bad, "--n", "5", "--out", str(out)])
    assert res.exit_code == 2 and "outside the trained space" in res.output
    wide = [t if "length" not in t else "length=150" for t in theta]     # r_out - radius > 20 cm
    res = runner.invoke(app, ["generate", "sample", str(run), *wide, "--n", "5", "--out", str(out)])
    assert res.exit_code == 2 and "violates a constraint" in res.output
    res = runner.invoke(app, ["generate", "train", str(cfg), "--run", str(run), "--set", "generate.phi=[r0_cm,foo]",
                              "--restart"])
    assert res.exit_code == 2 and "'foo'" in res.output
    # a changed config is refused on the old checkpoint, then trains afresh with --restart
    res = runner.invoke(app, ["generate", "train", str(cfg), "--run", str(run), "--set", "generate.epochs=3"])
    assert res.exit_code == 2 and "--restart" in res.output
    res = runner.invoke(app, ["generate", "train", str(cfg), "--run", str(run), "--set", "generate.epochs=3",
                              "--restart"])
    assert res.exit_code == 0, res.output
    assert len(json.loads((run / "generate" / "history.json").read_text())) == 3


def test_flow_simulator_kind_runs_a_campaign(moderator_run, tmp_path):
    cfg, run = moderator_run
    train_generator(cfg, run)
    raw = yaml.safe_load(cfg.read_text())
    raw.pop("generate")
    raw["simulator"] = {"kind": "flow", "run": str(run), "outcome": "rarefy.simulators.moderator:Moderator"}
    raw["campaign"]["runs"][0].update(runs=2, events=300)
    (tmp_path / "flow.yaml").write_text(yaml.safe_dump(raw))
    config = load_config(tmp_path / "flow.yaml")
    sim = FlowSimulator(config.simulator.run, config.simulator.outcome)
    theta = dict(radius=150, thickness=5, npanels=40, theta=30, length=10)
    a, b = sim.simulate(theta, 300, "lf", 4), sim.simulate(theta, 300, "lf", 4)
    assert a.phi_names == list(BIRTH) and a.n == 300
    assert a.table.equals(b.table)
    with pytest.raises(InputError, match="learnt fidelity 'lf'"):
        sim.simulate(theta, 10, "hf", 0)
    from rarefy.jobs.simulate import simulate

    simulate(tmp_path / "flow.yaml", tmp_path / "flowrun")
    rates = pd.read_parquet(tmp_path / "flowrun" / "rates.parquet")
    assert len(rates) == 2 and (rates["n"] == 300).all()
    raw["simulator"].pop("outcome")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match="needs 'outcome'"):
        load_config(tmp_path / "bad.yaml")


def test_evaluation_metrics_tell_same_from_different():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3000, 2)), rng.normal(size=(3000, 2))
    same = c2st(a, b, seed=0, epochs=5, bootstrap=50)
    c = b.copy()
    c[:, 1] = c[:, 1] * 0.3 + c[:, 0] * 0.95              # same marginal of column 0, a new correlation
    diff = c2st(a, c, seed=0, epochs=5, bootstrap=50)
    assert abs(same["auc"] - 0.5) < 4 * same["auc_err"] + 0.02
    assert diff["auc"] > 0.7 and diff["auc_err"] < 0.05
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert wasserstein(a[:, 0], a[:, 0] + 1.0)[0] == pytest.approx(1.0)
    assert chi2_two_sample(a[:, 0], b[:, 0])["p"] > 1e-3
    assert chi2_two_sample(a[:, 0], b[:, 0] + 0.5)["p"] < 1e-6
    k = chi2_two_sample(rng.integers(0, 3, 2000).astype(float), rng.integers(0, 3, 2000).astype(float))
    assert k["ndf"] == 2


def test_the_shipped_examples_run_with_small_sizes(tmp_path):
    from rarefy.jobs.simulate import simulate

    examples = EXAMPLES
    run = tmp_path / "gen"
    simulate(examples / "generate.yaml", run, overrides=["campaign.runs.0.runs=3", "campaign.runs.0.events=400"])
    result = train_generator(examples / "generate.yaml", run, overrides=["generate.epochs=1"])
    assert result.phi == list(BIRTH) and len(result.history) == 1
    out = simulate(examples / "flow-campaign.yaml", tmp_path / "flow",
                   overrides=[f"simulator.run={run}", "campaign.runs.0.runs=2", "campaign.runs.0.events=200"])
    rates = pd.read_parquet(tmp_path / "flow" / "rates.parquet")
    assert len(rates) == 2 and (rates["n"] == 200).all(), out


def test_the_xlzd_example_learns_nest_window_events(tmp_path):
    pytest.importorskip("nestpy")
    from rarefy.jobs.simulate import simulate

    config = EXAMPLES.parent / "xlzd" / "generate.yaml"
    run = tmp_path / "xlzd"
    simulate(config, run, overrides=["campaign.runs.0.runs=3", "campaign.runs.0.events=300"])
    result = train_generator(config, run, overrides=["generate.epochs=1"])
    assert result.phi == ["s1c_phd", "log10_s2c_s1c", "z_mm"] and len(result.history) == 1
    out = tmp_path / "window.parquet"
    sample_generator(run, {"drift_field": 300, "gas_field": 8, "g1": 0.12, "e_lifetime": 8000}, 500, out=out)
    frame = pd.read_parquet(out)
    assert len(frame) == 500 and frame["s1c_phd"].between(3 * 0.99, 80 * 1.01).all()
