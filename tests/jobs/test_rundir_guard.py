"""Run directories are safe against a second process and never overwrite a user's files.

Every job that writes a run directory holds its lock (a second process fails at once with
one line naming the holder; a killed holder is taken over), and the jobs that create one
(``--out``) refuse folders that are not run directories of their kind, before any work.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import rarefy.jobs.fit as fit_job
from rarefy.cli import app
from rarefy.data.rundir import HOLDER, LOCK, MARKER, read_holder
from rarefy.data.store import EventStore
from rarefy.errors import InputError
from rarefy.jobs.fit import fit
from rarefy.jobs.simulate import simulate

from conftest import done_count

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
CLI = "from rarefy.cli import main; main()"
runner = CliRunner()

SPACE = {"parameters": {"x": {"low": 0, "high": 1}, "y": {"low": 0, "high": 1}}}
FIDS = [{"name": "lf", "value": "rate", "filter": {"fidelity": "lf"}, "events": 200},
        {"name": "hf", "value": "rate", "filter": {"fidelity": "hf"}, "events": 100}]
N_RUNS = 8


def campaign(tmp_path: Path, name: str = "sim.yaml", seed: int = 3, **options) -> Path:
    """A config of N_RUNS runs (6 LF, 2 HF) of the logging simulator, executed in the driver process."""
    raw = {"name": "guard", "seed": seed, "space": SPACE, "fidelities": FIDS,
           "simulator": {"kind": "python", "target": "rundir_sim:logged",
                         "options": {"log": str(tmp_path / "executions.log"), **options}},
           "campaign": {"runs": [{"fidelity": "lf", "runs": 6}, {"fidelity": "hf", "runs": 2, "designs": "lf"}],
                        "executor": {"kind": "sync"}}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def executions(tmp_path: Path) -> list[int]:
    """The seeds the simulator was called with, one per execution, in order."""
    path = tmp_path / "executions.log"
    return [int(s) for s in path.read_text().split()] if path.exists() else []


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the first process ended before {what}: {proc.stderr.read() if proc.stderr else ''}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def assert_complete(run_dir: Path, tmp_path: Path) -> None:
    """Catalog, shards and rates agree: N_RUNS runs done, one shard and one rates row each."""
    with EventStore(run_dir) as store:
        assert store.counts() == {"queued": 0, "running": 0, "done": N_RUNS, "failed": 0}
        seeds = sorted(int(r.seed) for r in store.requests())
    rates = pd.read_parquet(run_dir / "rates.parquet")
    assert len(rates) == N_RUNS and rates["run_id"].is_unique
    assert sorted(p.stem for p in (run_dir / "events").glob("*.parquet")) == sorted(rates["run_id"])
    assert sorted(set(executions(tmp_path))) == seeds


# ------------------------------------------------------------ a second process
def test_second_simulate_fails_at_once_naming_the_holder(tmp_path):
    gate = tmp_path / "go"
    cfg, out = campaign(tmp_path, gate=str(gate)), tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-c", CLI, "simulate", str(cfg), "--out", str(out)], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(executions(tmp_path)) == 1, first, "its first run started")  # now held at the gate
        holder = read_holder(out)
        assert holder is not None and holder["pid"] == first.pid and holder["job"] == "rarefy simulate"
        t0 = time.monotonic()
        res = runner.invoke(app, ["simulate", str(cfg), "--out", str(out)])
        assert time.monotonic() - t0 < 30  # at once: it does not wait for the first one
        assert res.exit_code == 2, res.output
        line = one_line(res.stderr)
        assert f"run directory {out} is in use by rarefy simulate, pid {first.pid} on host {socket.gethostname()} " \
               "since " in line, line
        assert len(executions(tmp_path)) == 1  # the second process executed nothing
    finally:
        gate.touch()
        assert first.wait(120) == 0, first.stderr.read()
    assert_complete(out, tmp_path)
    assert len(executions(tmp_path)) == N_RUNS  # every run executed exactly once
    assert not (out / HOLDER).exists()  # released


def test_killed_holder_is_taken_over_and_the_campaign_resumed(tmp_path):
    cfg, out = campaign(tmp_path, sleep_s=0.3), tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-c", CLI, "simulate", str(cfg), "--out", str(out)], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: done_count(out) >= 3, first, "three runs were done")
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(30)
    assert first.returncode == -signal.SIGKILL
    stale = read_holder(out)
    assert stale is not None and stale["pid"] == first.pid  # the killed process's holder file is left behind
    n_before, n_calls = done_count(out), len(executions(tmp_path))
    assert 3 <= n_before < N_RUNS
    resumed = simulate(cfg, out, progress=False)  # takes the lock over and resumes
    assert resumed.n_executed == N_RUNS - n_before
    assert_complete(out, tmp_path)
    calls = executions(tmp_path)
    # every run ran once, except the one the kill interrupted (it never finished, so it ran again)
    assert len(calls) == n_calls + resumed.n_executed and len(calls) - N_RUNS == n_calls - n_before <= 1
    assert read_holder(out) is None


HELPER = textwrap.dedent("""
    import contextlib, sys
    from rarefy.data.rundir import run_dir_lock
    with contextlib.ExitStack() as stack:
        for arg in sys.argv[1:]:
            path, kind = arg.split("=")
            stack.enter_context(run_dir_lock(path, "rarefy helper", kind=kind))
        print("held", flush=True)
        sys.stdin.read()
""")


def test_every_job_refuses_a_run_directory_another_process_holds(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(12, 2))
    pd.DataFrame({"x": x[:, 0], "y": x[:, 1], "rate": 0.01 + 0.02 * x[:, 0], "sd": 1e-3}).to_csv(
        tmp_path / "rates.csv", index=False)
    fit_cfg = {"seed": 3, "space": SPACE, "data": {"paths": [str(tmp_path / "rates.csv")]},
               "fidelities": [{"name": "hf", "value": "rate", "noise": {"std": "sd"}}],
               "infer": {"msun_per_event": 1000.0, "walkers": 8, "steps": 20, "burn": 5,
                         "observation": {"rate": 15.0, "plus": 1.0, "minus": 1.0}}}
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(fit_cfg))
    sim = yaml.safe_load(campaign(tmp_path).read_text())
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump({**sim, "loop": {"iterations": 1, "batch": 1}}))
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump({**sim, "bench": {"backends": [{"name": "isolation_forest"}]}}))
    dirs = {kind: tmp_path / kind for kind in ("simulate", "fit", "infer", "bench")}
    helper = subprocess.Popen([sys.executable, "-c", HELPER, *(f"{d}={k}" for k, d in dirs.items())], env=ENV,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert helper.stdout.readline().strip() == "held", helper.stderr.read()
        sim_dir = str(dirs["simulate"])
        commands = [
            ["simulate", str(tmp_path / "sim.yaml"), "--out", sim_dir],
            ["run", str(tmp_path / "loop.yaml"), "--out", sim_dir],
            ["fit", str(tmp_path / "fit.yaml"), "--out", str(dirs["fit"])],
            ["infer", str(tmp_path / "fit.yaml"), "--out", str(dirs["infer"])],
            ["bench", str(tmp_path / "bench.yaml"), "--out", str(dirs["bench"])],
            ["train", str(tmp_path / "sim.yaml"), "--run", sim_dir],
            ["denoise", sim_dir],
            ["suggest", sim_dir, "--n", "1"],
            ["ingest", sim_dir, str(tmp_path / "rates.csv")],
            ["optimize", sim_dir],
            ["report", sim_dir],
            ["validate", sim_dir, str(tmp_path / "rates.csv")],
        ]
        for command in commands:
            res = runner.invoke(app, command)
            assert res.exit_code == 2, (command, res.output)
            line = one_line(res.stderr)
            assert f"is in use by rarefy helper, pid {helper.pid} on host" in line, (command, line)
    finally:
        helper.stdin.close()
        helper.wait(30)
    assert executions(tmp_path) == []
    for folder in dirs.values():  # nothing written but the helper's marker (and the lock file)
        assert {p.name for p in folder.iterdir()} <= {MARKER, LOCK}, folder


# ---------------------------------------------------------- refuse to overwrite
def legend_config(legend_dir: Path, folder: Path) -> Path:
    """The LEGEND example config as a user keeps it: commented, next to its data."""
    import shutil

    shutil.copytree(legend_dir / "data", folder / "data")
    raw = yaml.safe_load((legend_dir / "legend.yaml").read_text())
    raw["surrogate"]["restarts"] = 1
    path = folder / "config.yaml"
    path.write_text("# my LEGEND surrogate: keep this comment\n" + yaml.safe_dump(raw, sort_keys=False))
    return path


def test_fit_refuses_to_overwrite_the_users_config(legend_dir, tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    cfg = legend_config(legend_dir, proj)
    before = cfg.read_bytes()
    res = runner.invoke(app, ["fit", str(cfg), "--out", str(proj)])
    assert res.exit_code == 2, res.output
    line = one_line(res.stderr)
    assert f"{proj}: not a rarefy run directory" in line and "config.yaml" in line, line
    assert cfg.read_bytes() == before
    assert sorted(p.name for p in proj.iterdir()) == ["config.yaml", "data"]  # not even a lock file


def test_fit_refuses_a_run_directory_of_another_kind(legend_dir, tmp_path):
    out = tmp_path / "run"
    simulate(campaign(tmp_path), out, progress=False)
    before = (out / "config.yaml").read_bytes()
    res = runner.invoke(app, ["fit", str(legend_config(legend_dir, tmp_path)), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "a run directory of 'rarefy simulate', not of 'rarefy fit'" in one_line(res.stderr)
    assert (out / "config.yaml").read_bytes() == before and not (out / "surrogate").exists()


def test_fit_checks_out_and_cv_before_fitting(legend_dir, tmp_path, monkeypatch):
    cfg = legend_config(legend_dir, tmp_path)

    def no_fitting(*args, **kwargs):
        raise AssertionError("fitted before the output was checked")

    monkeypatch.setattr(fit_job, "build_surrogate", no_fitting)
    with pytest.raises(InputError, match="--cv must be at least 2, got 1"):
        fit(cfg, tmp_path / "run", cv=1)
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(InputError, match="afile: exists and is not a folder"):
        fit(cfg, tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "mine"
    with pytest.raises(InputError, match="not a rarefy run directory"):
        fit(cfg, tmp_path)  # the folder with the config and its data
    assert not (tmp_path / "run").exists()


def test_simulate_with_another_seed_leaves_the_run_directory_untouched(tmp_path):
    out = tmp_path / "run"
    simulate(campaign(tmp_path), out, progress=False)
    config = (out / "config.yaml").read_bytes()
    rates = (out / "rates.parquet").read_bytes()
    n_calls = len(executions(tmp_path))
    res = runner.invoke(app, ["simulate", str(campaign(tmp_path, "other.yaml", seed=99)), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "run directory holds a different campaign" in one_line(res.stderr)
    assert (out / "config.yaml").read_bytes() == config and (out / "rates.parquet").read_bytes() == rates
    assert len(executions(tmp_path)) == n_calls


def test_simulate_refuses_a_project_folder(tmp_path):
    cfg = campaign(tmp_path)
    before = cfg.read_bytes()
    res = runner.invoke(app, ["simulate", str(cfg), "--out", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert "not a rarefy run directory" in one_line(res.stderr)
    assert cfg.read_bytes() == before and not (tmp_path / "catalog.sqlite").exists()
    assert executions(tmp_path) == []


def test_run_on_another_campaign_writes_nothing(tmp_path):
    out = tmp_path / "run"
    simulate(campaign(tmp_path), out, progress=False)
    before = sorted(p.relative_to(out) for p in out.rglob("*") if not p.name.startswith(".rarefy"))
    other = campaign(tmp_path, "loop.yaml", seed=99)
    raw = yaml.safe_load(other.read_text())
    other.write_text(yaml.safe_dump({**raw, "loop": {"iterations": 1}}))
    res = runner.invoke(app, ["run", str(other), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "run directory holds a different campaign" in one_line(res.stderr)
    assert sorted(p.relative_to(out) for p in out.rglob("*") if not p.name.startswith(".rarefy")) == before
