"""Shared fixtures: paths to the shipped LEGEND example and small synthetic problems."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rarefy import DesignSpace, Parameter, RateTable

ROOT = Path(__file__).resolve().parents[1]
LEGEND = ROOT / "examples" / "legend"


@pytest.fixture
def legend_dir() -> Path:
    return LEGEND


@pytest.fixture
def space2d() -> DesignSpace:
    return DesignSpace([Parameter("a", 0.0, 1.0), Parameter("b", 0.0, 1.0)])


def two_fidelity_table(space: DesignSpace, n_lf: int = 40, n_hf: int = 8, seed: int = 0,
                       noise_lf: float = 0.02, noise_hf: float = 0.01) -> RateTable:
    """y_lf = sin(3a) + b, y_hf = 1.5 y_lf + 0.3 a - 0.2, with known per-point noise."""
    rng = np.random.default_rng(seed)

    def lf(x: np.ndarray) -> np.ndarray:
        return np.sin(3 * x[:, 0]) + x[:, 1]

    def hf(x: np.ndarray) -> np.ndarray:
        return 1.5 * lf(x) + 0.3 * x[:, 0] - 0.2

    rows = []
    for name, n, f, sd in (("lf", n_lf, lf, noise_lf), ("hf", n_hf, hf, noise_hf)):
        x = space.sample(n, method="sobol", seed=seed + len(rows)).to_numpy()
        y = f(x) + rng.normal(0, sd, n)
        df = pd.DataFrame(x, columns=space.names)
        df["fidelity"] = name
        df["rate"] = y
        df["var"] = sd**2
        rows.append(df)
    return RateTable(pd.concat(rows, ignore_index=True), space)


def truth_hf(x: np.ndarray) -> np.ndarray:
    return 1.5 * (np.sin(3 * x[:, 0]) + x[:, 1]) + 0.3 * x[:, 0] - 0.2


def done_count(run_dir: Path) -> int:
    """How many runs the catalog of ``run_dir`` records as done (0 while it does not exist or is locked)."""
    path = Path(run_dir) / "catalog.sqlite"
    if not path.exists():
        return 0
    try:
        con = sqlite3.connect(path, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM runs WHERE state = 'done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0
