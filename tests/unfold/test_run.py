"""rarefy unfold: the job end to end on a tiny case and on files, bad inputs, atomic outputs, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from rarefy.cli import app
from rarefy.config import load_unfold_config
from rarefy.errors import InputError
from rarefy.unfold import GaussianToy
from rarefy.unfold.run import run_unfold


def write_files(folder: Path, n_sim: int = 3000, n_data: int = 1000, seed: int = 0) -> tuple[Path, Path]:
    """Gaussian-toy events as files: sim.csv (x, y, passed, w) and data.csv (y, w)."""
    prob, _ = GaussianToy().problem(n_sim, n_data, seed)
    sim = pd.DataFrame({"x": prob.sim_gen[:, 0], "y": prob.sim_rec[:, 0], "passed": prob.sim_pass.astype(int),
                        "w": 1.0})
    data = pd.DataFrame({"y": prob.data_rec[:, 0], "w": 1.0})
    sim.to_csv(folder / "sim.csv", index=False)
    data.to_csv(folder / "data.csv", index=False)
    return folder / "sim.csv", folder / "data.csv"


def file_config(folder: Path, **data: object) -> Path:
    cfg = {"seed": 1, "data": {"simulation": "sim.csv", "data": "data.csv", "gen": ["x"], "rec": ["y"],
                               "pass": "passed", "weight": "w", **data},
           "methods": {"ibu": {"members": 4}}, "bins": 8}
    path = folder / "unfold.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def case_config(folder: Path, seed: int = 2) -> Path:
    cfg = {"seed": seed, "case": {"kind": "gaussian", "n_sim": 4000, "n_data": 1500},
           "methods": {"ibu": {"iterations": 4, "members": 5}}}
    path = folder / f"case{seed}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def invoke(config: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, ["unfold", str(config), "--out", str(out), *extra])


def test_gaussian_case_end_to_end(tmp_path):
    res = invoke(case_config(tmp_path), tmp_path / "out")
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    assert {"histograms.csv", "metrics.json", "unfold_x.png"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    m = metrics["methods"]["ibu"]["columns"]["x"]
    assert 0 < m["wasserstein"] < 0.4 and 0 <= m["coverage"] <= 1 and abs(m["mean_rel_error"]) < 0.2
    hist = pd.read_csv(out / "histograms.csv")
    ibu = hist[hist.method == "ibu"]
    assert len(ibu) == 20 and set(hist.method) == {"prior", "ibu"}
    assert np.allclose(ibu.truth, GaussianToy().bin_probabilities(GaussianToy().default_edges(20)))
    assert abs(ibu["mean"].sum() - 1) < 0.02


def test_same_seed_same_result_other_seed_differs(tmp_path):
    a = run_unfold(case_config(tmp_path, 2), tmp_path / "a")
    b = run_unfold(case_config(tmp_path, 2), tmp_path / "b")
    c = run_unfold(case_config(tmp_path, 3), tmp_path / "c")
    read = (lambda r: pd.read_csv(r.out / "histograms.csv"))
    assert read(a).equals(read(b))
    assert not read(a)["mean"].equals(read(c)["mean"])


def test_files_end_to_end_and_override(tmp_path):
    write_files(tmp_path)
    res = invoke(file_config(tmp_path), tmp_path / "out", "--set", "methods.ibu.iterations=2")
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["methods"]["ibu"]["info"]["iterations"] == 2
    assert "wasserstein" not in metrics["methods"]["ibu"]["columns"]["x"]      # no truth for files
    assert pd.read_csv(tmp_path / "out" / "histograms.csv").truth.isna().all()


def _one_line_error(res, *words: str) -> None:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    err = lines[-1]
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("break_it, words", [
    ("mismatch", ("data.csv", "column 'y'", "not in the data")),
    ("empty", ("data.csv", "no events")),
    ("nan_weight", ("sim.csv", "column 'w'", "row 7")),
    ("missing_gen", ("sim.csv", "column 'x'")),
    ("nan_data", ("data.csv", "column 'y'", "row 3")),
])
def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path, break_it, words):
    sim_path, data_path = write_files(tmp_path)
    sim, data = pd.read_csv(sim_path), pd.read_csv(data_path)
    if break_it == "mismatch":
        data = data.rename(columns={"y": "y_reco"})
    elif break_it == "empty":
        data = data.iloc[:0]
    elif break_it == "nan_weight":
        sim.loc[7, "w"] = np.nan
    elif break_it == "missing_gen":
        sim = sim.drop(columns=["x"])
    elif break_it == "nan_data":
        data.loc[3, "y"] = np.nan
    sim.to_csv(sim_path, index=False)
    data.to_csv(data_path, index=False)
    out = tmp_path / "out"
    res = invoke(file_config(tmp_path), out)
    _one_line_error(res, *words)
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".rarefy")]


def test_config_errors_name_the_key(tmp_path):
    path = case_config(tmp_path)
    res = invoke(path, tmp_path / "out", "--set", "methods.ibu.itrations=3")
    _one_line_error(res, "itrations", "ibu")
    res = invoke(path, tmp_path / "out", "--set", "methods.bogus={}")
    _one_line_error(res, "bogus")
    with pytest.raises(InputError, match="exactly one of 'data' and 'case'"):
        load_unfold_config(path, overrides=["data={simulation: a.csv, data: b.csv, gen: [x], rec: [y]}"])


def test_a_failing_method_leaves_an_earlier_output_untouched(tmp_path):
    out = tmp_path / "out"
    assert invoke(case_config(tmp_path), out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".rarefy")}
    # a column the method does not have: fails inside the method, after the problem was built
    res = invoke(case_config(tmp_path), out, "--set", "methods.ibu.column=energy", "--set", "seed=9")
    _one_line_error(res, "energy")
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".rarefy")}
    assert after == before


def test_a_method_whose_module_is_missing_is_a_clear_input_error(monkeypatch):
    from rarefy.unfold import registry

    monkeypatch.setitem(registry.METHODS, "ghost", ("rarefy.unfold.ghost_method", "Ghost"))
    with pytest.raises(InputError, match="'ghost' is not available: module rarefy.unfold.ghost_method is missing"):
        registry.build_method("ghost", {})


def test_truth_draws_follow_the_truth_not_the_measured_events():
    """W1 is taken against ``sample_truth``: p_true itself, while the measured events' hidden x follow ε·p_true."""
    toy = GaussianToy()
    x = toy.sample_truth(200_000, np.random.default_rng(0))
    assert abs(x.mean() - toy.mu) < 0.01 and abs(x.std() - toy.sigma) < 0.01
    _, hidden = toy.problem(2_000, 50_000, 0)
    assert hidden.mean() > toy.mu + 0.05          # ε rises with x: passing events sit higher
