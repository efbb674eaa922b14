"""Provenance of shared results: rarefy version, seed, config hash and UTC time in fit.json and summary.json
(result.json: tests/jobs/test_loop.py)."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import rarefy
from rarefy.config import config_from_dict, load_config
from rarefy.data.rundir import read_config, write_config
from rarefy.provenance import canonical_config, config_hash, provenance

SHA256 = re.compile(r"^[0-9a-f]{64}$")
UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def check_provenance(record: dict, cfg: rarefy.RunConfig, seed: int) -> None:
    """``record`` is the provenance of a result made now from ``cfg`` with ``seed``."""
    assert set(record) == {"rarefy_version", "seed", "config_sha256", "created_utc"}
    assert record["rarefy_version"] == rarefy.__version__
    assert record["seed"] == seed
    assert record["config_sha256"] == config_hash(cfg)
    assert UTC.match(record["created_utc"])
    made = datetime.strptime(record["created_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs(datetime.now(timezone.utc) - made) < timedelta(minutes=30)


def _raw(tmp_path: Path) -> dict:
    return {"name": "toy", "seed": 4,
            "space": {"parameters": {"x": {"low": 0, "high": 1, "unit": "cm"},
                                     "n": {"low": 1, "high": 9, "integer": True}}},
            "data": {"paths": ["rates.csv"]},
            "fidelities": [{"name": "hf", "value": "rate", "noise": {"std": "sd"}}]}


def test_config_hash_ignores_key_order_and_sees_every_value(tmp_path):
    raw = _raw(tmp_path)
    a = config_from_dict(raw, base=tmp_path)
    b = config_from_dict(dict(reversed(list(raw.items()))), base=tmp_path)
    assert config_hash(a) == config_hash(b) and SHA256.match(config_hash(a))
    assert config_hash(config_from_dict({**raw, "seed": 5}, base=tmp_path)) != config_hash(a)
    raw["space"]["parameters"]["x"]["unit"] = "mm"
    assert config_hash(config_from_dict(raw, base=tmp_path)) != config_hash(a)
    # the resolved config: a relative data path counts as the absolute file it names
    assert str(tmp_path / "rates.csv") in canonical_config(a)
    assert config_hash(config_from_dict(_raw(tmp_path), base=tmp_path / "elsewhere")) != config_hash(a)


def test_the_hash_survives_the_run_directory_config(tmp_path):
    cfg = config_from_dict(_raw(tmp_path), base=tmp_path)
    write_config(tmp_path / "run", cfg)
    assert config_hash(read_config(tmp_path / "run")) == config_hash(cfg)


def test_provenance_record():
    cfg = config_from_dict({"seed": 7, "space": {"parameters": {"x": {"low": 0, "high": 1}}},
                            "fidelities": [{"name": "hf", "value": "rate"}]})
    rec = provenance(cfg)
    check_provenance(rec, cfg, 7)
    assert provenance(cfg, seed=3)["seed"] == 3
    when = datetime(2026, 1, 2, 4, 5, 6, 789, tzinfo=timezone(timedelta(hours=2)))
    assert provenance(cfg, now=when)["created_utc"] == "2026-01-02T02:05:06Z"


def test_fit_json_records_provenance(legend_dir, tmp_path):
    raw = yaml.safe_load((legend_dir / "legend.yaml").read_text())
    shutil.copytree(legend_dir / "data", tmp_path / "data")
    raw["surrogate"].update(restarts=1, max_iter=30)
    (tmp_path / "legend.yaml").write_text(yaml.safe_dump(raw))
    rarefy.fit(tmp_path / "legend.yaml", tmp_path / "run")
    fit = json.loads((tmp_path / "run" / "fit.json").read_text())
    check_provenance(fit["provenance"], load_config(tmp_path / "legend.yaml"), 0)
    assert fit["provenance"]["config_sha256"] == config_hash(read_config(tmp_path / "run"))


def test_summary_json_records_provenance_with_the_sampler_seed(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(30, 2))
    pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "rate": 1e-3 * (0.2 + 1.6 * x[:, 0]), "sd": 2e-5}).to_csv(
        tmp_path / "rates.csv", index=False)
    cfg = config_from_dict({
        "seed": 3, "space": {"parameters": {"x1": {"low": 0, "high": 1}, "x2": {"low": 0, "high": 1}}},
        "data": {"paths": [str(tmp_path / "rates.csv")]},
        "fidelities": [{"name": "hf", "value": "rate", "noise": {"std": "sd"}}],
        "surrogate": {"kind": "pce", "degree": 1},
        "infer": {"msun_per_event": 1000.0, "walkers": 8, "steps": 30, "burn": 10, "seed": 12,
                  "observation": {"rate": 15.0, "plus": 1.0, "minus": 1.0}},
    })
    rarefy.infer(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    check_provenance(summary["provenance"], cfg, 12)
