"""End-to-end CLI tests on the real LEGEND example: fit, validate, bad input, determinism."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from rarefy.cli import app

runner = CliRunner()


def small_config(legend_dir: Path, tmp_path: Path, name: str = "legend.yaml", **over) -> Path:
    """A copy of an example config with data copied next to it and a quick surrogate setting."""
    cfg = yaml.safe_load((legend_dir / name).read_text())
    data = tmp_path / "data"
    if not data.exists():
        shutil.copytree(legend_dir / "data", data)
    cfg["surrogate"]["restarts"] = 1
    cfg.update(over)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_fit_validate_on_legend(legend_dir, tmp_path):
    cfg = small_config(legend_dir, tmp_path)
    run = tmp_path / "run"
    res = runner.invoke(app, ["fit", str(cfg), "--out", str(run), "--cv", "3"])
    assert res.exit_code == 0, res.output
    for f in ("config.yaml", "surrogate/model.pt", "surrogate/model.json", "fit.json", "cv_calibration.png",
              "training_rates.parquet", "cv_predictions.csv"):
        assert (run / f).exists(), f
    fitjson = json.loads((run / "fit.json").read_text())
    assert fitjson["cv"]["n"] == 10 and 0 <= fitjson["cv"]["coverage_2sigma"] <= 1
    heldout = tmp_path / "data" / "Ge77_rates_new_samples_v1.6.csv"
    res = runner.invoke(app, ["validate", str(run), str(heldout), "--json", str(tmp_path / "v.json")])
    assert res.exit_code == 0, res.output
    v = json.loads((tmp_path / "v.json").read_text())
    assert set(v) == {"n", "coverage_1sigma", "coverage_2sigma", "coverage_3sigma", "mse", "mean_nll"}
    assert v["n"] == 6 and v["mse"] < 0.0016  # far better than predicting nothing: rates are ~0.17
    assert (run / "validate_calibration.png").stat().st_size > 10_000


def test_validate_without_filter_or_noise_columns(legend_dir, tmp_path):
    cfg = small_config(legend_dir, tmp_path)
    run = tmp_path / "run"
    assert runner.invoke(app, ["fit", str(cfg), "--out", str(run)]).exit_code == 0
    df = pd.read_csv(tmp_path / "data" / "Ge77_rates_new_samples_v1.6.csv", index_col=0)
    only_hf = df[df["Fidelity"] == 1].drop(columns=["Fidelity", "y_raw"])
    only_hf.to_csv(tmp_path / "hf.csv")
    res = runner.invoke(app, ["validate", str(run), str(tmp_path / "hf.csv"), "--json", str(tmp_path / "v.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "v.json").read_text())["n"] == 6


def test_same_seed_gives_identical_validate_json(legend_dir, tmp_path):
    cfg = small_config(legend_dir, tmp_path)
    heldout = tmp_path / "data" / "Ge77_rates_new_samples_v1.6.csv"
    outs = []
    for i in range(2):
        run = tmp_path / f"run{i}"
        assert runner.invoke(app, ["fit", str(cfg), "--out", str(run)]).exit_code == 0
        assert runner.invoke(app, ["validate", str(run), str(heldout), "--json", str(tmp_path / f"v{i}.json")]).exit_code == 0
        outs.append((tmp_path / f"v{i}.json").read_text())
    assert outs[0] == outs[1]


def _corrupt(tmp_path: Path, fn) -> None:
    path = tmp_path / "data" / "Ge77_rates_CNP_v1.6.csv"
    df = pd.read_csv(path, index_col=0)
    fn(df)
    df.to_csv(path)


@pytest.mark.parametrize("case, pattern", [
    ("missing_column", r"Ge77_rates_CNP_v1.6.csv, column 'captures': noise column not found \(mapped from 'y_raw'"),
    ("nan", r"Ge77_rates_CNP_v1.6.csv, column 'rate_ge77', row 17: value nan is not a finite number"),
    ("unknown_fidelity", r"legend.yaml: .*unknown fidelity 'hf2' in 'target'"),
    ("out_of_bounds", r"Ge77_rates_CNP_v1.6.csv, column 'theta', row 5: design value 120.0 is outside the bounds"),
    ("no_rows", r"fidelity 'hf' has no rows"),
])
def test_bad_input_one_line_exit_2_no_run_dir(legend_dir, tmp_path, case, pattern):
    over = {}
    cfg = small_config(legend_dir, tmp_path)
    if case == "missing_column":
        _corrupt(tmp_path, lambda df: df.pop("y_raw"))
    elif case == "nan":
        _corrupt(tmp_path, lambda df: df.__setitem__("y_rGe77[nuc/(kg*yr)]", df["y_rGe77[nuc/(kg*yr)]"].where(df.index != 17)))
    elif case == "unknown_fidelity":
        over = {"target": "hf2"}
    elif case == "out_of_bounds":
        _corrupt(tmp_path, lambda df: df.__setitem__("Theta[deg]", df["Theta[deg]"].where(df.index != 5, 120.0)))
    elif case == "no_rows":
        raw = yaml.safe_load(cfg.read_text())
        raw["fidelities"][-1]["filter"] = {"fidelity_flag": 2}
        over = {"fidelities": raw["fidelities"]}
    cfg = small_config(legend_dir, tmp_path, **over)
    run = tmp_path / "run"
    res = runner.invoke(app, ["fit", str(cfg), "--out", str(run)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    import re
    assert re.search(pattern, lines[0]), lines[0]
    assert not run.exists()
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_validate_rejects_unfitted_dir(tmp_path):
    res = runner.invoke(app, ["validate", str(tmp_path), str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "not a fitted run directory" in res.stderr
