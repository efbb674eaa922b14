"""The LEGEND tutorial (examples/legend/tutorial.py) runs as written: fit -> validate -> suggest -> ingest."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def test_tutorial_runs_end_to_end(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "examples" / "legend", tmp_path / "examples" / "legend")
    monkeypatch.chdir(tmp_path)
    ns = runpy.run_path(str(tmp_path / "examples" / "legend" / "tutorial.py"), run_name="__main__")
    fit_dir = tmp_path / "runs" / "tutorial" / "fit"
    assert (fit_dir / "fit.json").exists() and (tmp_path / "runs" / "tutorial" / "validate.json").exists()
    assert len(ns["suggestions"]) == 2 and (ns["suggestions"]["fidelity"] == "hf").all()
    ingested = pd.read_parquet(fit_dir / "ingested.parquet")
    assert len(ingested) == 2 and (ingested["fidelity"] == "hf").all()
    assert len(pd.read_csv(fit_dir / "suggestions.csv")) == 1     # the suggestion after the ingest
    assert 0.0 <= ns["report"].metrics["coverage_2sigma"] <= 1.0
