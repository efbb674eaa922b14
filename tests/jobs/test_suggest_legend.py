"""The manual loop on a fitted run directory: fit -> suggest -> ingest -> suggest on a copy of examples/legend."""

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import rarefy
from rarefy.cli import app
from rarefy.errors import InputError
from rarefy.jobs.rundata import training_table

runner = CliRunner()
COLUMNS = {"radius": "Radius[cm]", "thickness": "Thickness[cm]", "npanels": "NPanels", "theta": "Theta[deg]",
           "length": "Length[cm]"}
FLAG = {"lf": 0.0, "hf": 1.0}


@pytest.fixture(scope="module")
def legend_run(tmp_path_factory):
    """A copy of examples/legend fitted by 'rarefy fit' (one restart, to be quick)."""
    tmp = tmp_path_factory.mktemp("legend")
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "legend", tmp / "legend")
    run = tmp / "run"
    res = runner.invoke(app, ["fit", str(tmp / "legend" / "legend.yaml"), "--out", str(run),
                              "--set", "surrogate.restarts=1"])
    assert res.exit_code == 0, res.output
    return tmp, run


def fresh_copy(legend_run, name: str) -> Path:
    tmp, run = legend_run
    shutil.copytree(run, tmp / name)
    return tmp / name


def simulated_elsewhere(legend_run, suggestions: pd.DataFrame, path: Path) -> Path:
    """Runs at the suggested designs in the format of the LEGEND data files (captures and the rate)."""
    tmp, _ = legend_run
    data = pd.read_csv(tmp / "legend" / "data" / "Ge77_rates_CNP_v1.6.csv", index_col=0)
    rate_per_capture = (data["y_rGe77[nuc/(kg*yr)]"] / data["y_raw"]).groupby(data["Fidelity"]).median()
    out = suggestions.rename(columns=COLUMNS)[list(COLUMNS.values())].copy()
    out["Fidelity"] = [FLAG[f] for f in suggestions["fidelity"]]
    out["y_raw"] = [40.0 + 3 * i for i in range(len(out))]
    out["y_rGe77[nuc/(kg*yr)]"] = out["y_raw"] * out["Fidelity"].map(rate_per_capture)
    out.to_csv(path)
    return path


def test_fit_suggest_ingest_suggest_on_legend(legend_run):
    tmp, _ = legend_run
    run = fresh_copy(legend_run, "manual")
    res = runner.invoke(app, ["suggest", str(run), "--n", "3"])
    assert res.exit_code == 0, res.output
    first = pd.read_csv(run / "suggestions.csv")
    space = rarefy.load_config(run / "config.yaml").space.build()
    assert len(first) == 3 and space.is_feasible(first).all()
    # lf has no nominal cost in legend.yaml: the cost-aware acquisition proposes the costed hf runs
    assert set(first["fidelity"]) == {"hf"} and (first["cost_cpu_h"] == 170).all()
    # events per run: the run size that gives the HF runs their count noise (captures / rate)
    fitted = pd.read_parquet(run / "training_rates.parquet")
    hf = fitted[fitted["fidelity"] == "hf"]
    assert (first["events"] == round(float(np.median(hf["k"] / hf["rate"])))).all()

    results = simulated_elsewhere(legend_run, first, tmp / "hf_results.csv")
    res = runner.invoke(app, ["ingest", str(run), str(results)])
    assert res.exit_code == 0, res.output
    ing = pd.read_parquet(run / "ingested.parquet")
    assert len(ing) == 3 and set(ing["fidelity"]) == {"hf"}
    assert set(ing["run_id"]) == {f"ingest:hf_results:{i}" for i in range(3)}
    written = pd.read_csv(results, index_col=0)
    assert np.allclose(ing.sort_values("run_id")["rate"], written["y_rGe77[nuc/(kg*yr)]"])  # the data's units
    assert np.allclose(ing.sort_values("run_id")["k"], [40, 43, 46])
    assert (ing["var"] > 0).all() and (ing["cost_cpu_h"] == 170).all()
    assert rarefy.ingest(run, [results]).n_new == 0  # the same file again adds nothing

    table = training_table(run, rarefy.load_config(run / "config.yaml"))
    assert len(table.frame) == len(fitted) + 3  # the fitted data and the ingested runs
    res = runner.invoke(app, ["suggest", str(run), "--n", "2", "--out", str(tmp / "again.csv")])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp / "again.csv")) == 2


def test_events_option_and_target_only(legend_run, tmp_path):
    run = fresh_copy(legend_run, "events")
    out = tmp_path / "s.csv"
    res = runner.invoke(app, ["suggest", str(run), "--n", "2", "--events", "hf=5000", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (pd.read_csv(out)["events"] == 5000).all()
    res = runner.invoke(app, ["suggest", str(run), "--n", "1", "--events", "700", "--target-only", "--out", str(out)])
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out)
    assert frame["fidelity"].tolist() == ["hf"] and frame["events"].tolist() == [700]
    for bad, message in (("hf=0", "--events hf=0: events per run must be an integer >= 1"),
                         ("mf=10", "--events mf=10: unknown fidelity 'mf'; defined fidelities: \\['lf', 'hf'\\]"),
                         ("many", "--events many: give N or FIDELITY=N")):
        res = runner.invoke(app, ["suggest", str(run), "--events", bad, "--out", str(out)])
        assert res.exit_code == 2, res.output
        assert re.search(message, res.stderr), res.stderr


def test_ingest_of_a_lf_file_and_bad_rows(legend_run, tmp_path):
    run = fresh_copy(legend_run, "lf")
    designs = pd.read_parquet(run / "training_rates.parquet").iloc[:2][list(COLUMNS)]
    designs["fidelity"] = "lf"
    path = simulated_elsewhere(legend_run, designs, tmp_path / "lf_runs.csv")
    assert rarefy.ingest(run, [path]).n_new == 2
    frame = pd.read_csv(path, index_col=0)
    frame.loc[1, "Theta[deg]"] = 120.0
    frame.to_csv(tmp_path / "bad.csv")
    with pytest.raises(InputError, match=r"bad.csv, column 'theta', row 1: design value 120.0 is outside"):
        rarefy.ingest(run, [tmp_path / "bad.csv"])
    frame.loc[1, "Theta[deg]"] = 10.0
    frame["Fidelity"] = 3.0
    frame.to_csv(tmp_path / "none.csv")
    with pytest.raises(InputError, match=r"none.csv: no row matches a fidelity's filter"):
        rarefy.ingest(run, [tmp_path / "none.csv"])
    assert len(pd.read_parquet(run / "ingested.parquet")) == 2  # failures wrote nothing


def test_unknown_events_per_run_is_a_clear_error(legend_run, tmp_path):
    tmp, _ = legend_run
    run = tmp_path / "exact"
    res = runner.invoke(app, ["fit", str(tmp / "legend" / "legend.yaml"), "--out", str(run),
                              "--set", "surrogate.restarts=1", "--set", "fidelities.0.noise={}",
                              "--set", "fidelities.1.noise={}"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["suggest", str(run), "--n", "1"])
    assert res.exit_code == 2, res.output
    line = res.stderr.strip()
    assert "\n" not in line and "events per run" in line and "--events" in line, line
