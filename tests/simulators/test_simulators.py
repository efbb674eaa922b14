"""Simulator adapters: Python callable by import path, external command (Parquet and ROOT output)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rarefy import simulators
from rarefy.config import SimulatorConfig
from rarefy.errors import InputError
from rarefy.simulators import CommandSimulator, PythonSimulator, SimulatorError, SimulatorTimeout
from rarefy.simulators.testing import toy_rate

THETA = {"x": 0.3, "y": 0.6}

PARQUET_SCRIPT = """
import argparse, sys
import numpy as np, pandas as pd
p = argparse.ArgumentParser()
p.add_argument("--n", type=int); p.add_argument("--seed", type=int); p.add_argument("--x", type=float)
p.add_argument("--out"); p.add_argument("--drop", default="")
a = p.parse_args()
rng = np.random.default_rng(a.seed)
u = rng.random(a.n)
frame = pd.DataFrame({"energy_mev": u * 10, "hit": (rng.random(a.n) < 0.05 + 0.1 * a.x).astype("int8")})
if a.drop:
    frame = frame.drop(columns=[a.drop])
print("simulated", a.n, "events", file=sys.stderr)
frame.to_parquet(a.out)
"""

ROOT_SCRIPT = """
import sys
import numpy as np, uproot
n, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(seed)
with uproot.recreate(out) as fh:
    tree = fh.mktree("events", {"r0": np.float64, "captured": np.int32})
    tree.extend({"r0": rng.random(n) * 300, "captured": (rng.random(n) < 0.1).astype(np.int32)})
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_get_builtin_and_unknown():
    mod = simulators.get("moderator")
    assert mod.fidelities.names == ["lf", "hf"]
    assert "moderator" in simulators.available()
    with pytest.raises(InputError, match="unknown built-in simulator"):
        simulators.get("geant5")


def test_python_callable_by_import_path():
    sim = PythonSimulator("rarefy.simulators.testing:toy", {"sleep_s": 0.0})
    ev = sim.simulate(THETA, 2000, "lf", 3)
    assert ev.n == 2000 and ev.phi_names == ["u"] and ev.theta_names == ["x", "y"]
    again = sim.simulate(THETA, 2000, "lf", 3)
    assert ev.to_pandas().equals(again.to_pandas())                       # deterministic for a seed
    assert abs(ev.k / ev.n - toy_rate(THETA)) < 5 * np.sqrt(toy_rate(THETA) / ev.n)


def test_python_class_target_gets_members():
    sim = PythonSimulator("rarefy.simulators.moderator:Moderator")
    assert sim.space.dim == 5 and hasattr(sim, "expected_rate")


def test_python_bad_import_path():
    with pytest.raises(InputError, match="cannot import module"):
        PythonSimulator("no_such_module_xyz:f")
    with pytest.raises(InputError, match="has no attribute"):
        PythonSimulator("rarefy.simulators.testing:nope")


def test_python_missing_columns_raise():
    sim = PythonSimulator("rarefy.simulators.testing:missing_columns")
    with pytest.raises(InputError, match="outcome"):
        sim.simulate({"x": 0.9, "y": 0.1}, 100, "lf", 0)


def test_command_adapter_parquet(tmp_path):
    script = write(tmp_path, "sim.py", PARQUET_SCRIPT)
    sim = CommandSimulator(
        [sys.executable, str(script), "--n", "{n}", "--seed", "{seed}", "--x", "{theta[x]}", "--out", "{output}"],
        output="events.parquet", timeout_s=60, events={"outcome": "hit"}, scratch_dir=tmp_path / "scratch")
    ev, info = sim.simulate_detailed(THETA, 3000, "lf", 11)
    assert ev.n == 3000 and ev.phi_names == ["energy_mev"] and set(ev.to_pandas()["x"]) == {0.3}
    assert "simulated 3000 events" in info["stderr"] and info["cpu_s"] > 0
    again = sim.simulate(THETA, 3000, "lf", 11)
    assert again.k == ev.k
    assert not any((tmp_path / "scratch").iterdir())                     # scratch folders are removed


def test_command_adapter_root(tmp_path):
    pytest.importorskip("uproot")
    script = write(tmp_path, "sim_root.py", ROOT_SCRIPT)
    sim = CommandSimulator([sys.executable, str(script), "{n}", "{seed}", "{output}"], output="out.root",
                           timeout_s=60, events={"outcome": "captured"})
    ev = sim.simulate(THETA, 500, "hf", 2)
    assert ev.n == 500 and ev.phi_names == ["r0"] and 20 < ev.k < 90


def test_command_missing_column_timeout_and_exit_status(tmp_path):
    script = write(tmp_path, "sim.py", PARQUET_SCRIPT)
    base = [sys.executable, str(script), "--n", "{n}", "--seed", "{seed}", "--x", "{theta[x]}", "--out", "{output}"]
    sim = CommandSimulator(base + ["--drop", "hit"], events={"outcome": "hit"}, timeout_s=60)
    with pytest.raises(SimulatorError, match="outcome column not found.*'hit'"):
        sim.simulate(THETA, 10, "lf", 0)
    slow = CommandSimulator([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5)
    with pytest.raises(SimulatorTimeout, match="timed out after 0.5 s"):
        slow.simulate(THETA, 10, "lf", 0)
    crash = CommandSimulator([sys.executable, "-c", "import sys; sys.stderr.write('segfault-ish'); sys.exit(3)"])
    with pytest.raises(SimulatorError, match="status 3.*segfault-ish"):
        crash.simulate(THETA, 10, "lf", 0)
    bad = CommandSimulator(["echo", "{theta[nope]}"])
    with pytest.raises(InputError, match="bad placeholder"):
        bad.simulate(THETA, 10, "lf", 0)


def test_from_config_builds_each_kind(tmp_path):
    assert isinstance(simulators.from_config(SimulatorConfig(kind="builtin", name="moderator")), simulators.Moderator)
    py = simulators.from_config(SimulatorConfig(kind="python", target="rarefy.simulators.testing:toy"))
    assert isinstance(py, PythonSimulator)
    cmd = simulators.from_config(SimulatorConfig(kind="command", command=["true"]), timeout_s=5)
    assert isinstance(cmd, CommandSimulator) and cmd.timeout_s == 5
    with pytest.raises(ValueError, match="needs 'target'"):
        SimulatorConfig(kind="python")
