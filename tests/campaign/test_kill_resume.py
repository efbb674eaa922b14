"""``kill -9`` of ``rarefy run`` at random moments: the resumed loop equals an uninterrupted one, no run lost or redone.

The simulator is the built-in moderator (0.2 s slower per run), logging every finished
simulation (``seed fidelity n k time``) to a file, so executions are counted: a run ``done``
in the catalog when the loop was killed must never be simulated again, and every planned run
ends ``done`` with exactly one shard.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rarefy.data.events import EventTable
from rarefy.data.store import EventStore

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(HERE), os.environ.get("PYTHONPATH", "")])}


def loop_config(tmp_path: Path) -> Path:
    """examples/moderator/run.yaml shrunk to seconds (sync executor), with the logging moderator.

    The simulator logs to ``sim.log`` in the working directory of ``rarefy run``
    (:func:`rarefy_run` runs it in the config's folder), so every copy of the config is the same text.
    """
    cfg = yaml.safe_load((ROOT / "examples" / "moderator" / "run.yaml").read_text())
    cfg["fidelities"][0]["events"] = 20_000
    cfg["fidelities"][1]["events"] = 20_000
    cfg["surrogate"]["restarts"] = 1
    cfg["surrogate"]["max_iter"] = 40
    cfg["simulator"] = {"kind": "python", "target": "campaign_sims:LoggedModerator", "options": {"log": "sim.log", "sleep_s": 0.2}}
    cfg["campaign"]["runs"] = [{"fidelity": "lf", "runs": 8, "designs": "sobol"},
                               {"fidelity": "hf", "runs": 2, "designs": "lf"}]
    cfg["acquisition"].update(candidates=64, reference=16, starts=2, steps=4)
    cfg["optimize"] = {"objective": "mean", "candidates": 128, "starts": 2, "steps": 5}
    cfg["baseline"] = {"rate": 5.1e-5}
    cfg["loop"] = {"iterations": 2, "batch": 2, "verify": {"runs": 1}}
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def rarefy_run(cfg: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rarefy.cli", "run", str(cfg), "--out", str(out)], env=ENV,
                            cwd=cfg.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def comparable(result: dict) -> dict:
    """result.json without the moment it was written."""
    return {**result, "provenance": {k: v for k, v in result["provenance"].items() if k != "created_utc"}}


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-3000:]


def seeds_done(run_dir: Path) -> set[int]:
    """Seeds of the runs the catalog calls ``done`` (empty while there is no catalog)."""
    if not (run_dir / "catalog.sqlite").exists():
        return set()
    with EventStore(run_dir) as store:
        return {int(r.seed) for r in store.requests(states=("done",))}


def log_lines(log: Path) -> list[list[str]]:
    """The simulator log's complete lines, split (a line cut by the kill is dropped)."""
    if not log.exists():
        return []
    return [line.split() for line in log.read_text().splitlines() if len(line.split()) == 5]


def logged(log: Path) -> list[int]:
    """Seeds of the simulations that finished, in order."""
    return [int(fields[0]) for fields in log_lines(log)]


def check_run_dir(run_dir: Path) -> pd.DataFrame:
    """Every planned run is done with exactly one shard matching the catalog; rates.parquet has one row per run."""
    with EventStore(run_dir) as store:
        runs = store.runs()
    assert (runs["state"] == "done").all(), runs[["run_id", "state", "error"]]
    shards = sorted(p.name for p in (run_dir / "events").glob("*.parquet"))
    assert shards == sorted(f"{r}.parquet" for r in runs["run_id"])
    for row in runs.itertuples():
        events = EventTable.read_parquet(run_dir / "events" / f"{row.run_id}.parquet")
        assert (events.n, events.k) == (row.n_produced, row.k)
    rates = pd.read_parquet(run_dir / "rates.parquet")
    assert rates["run_id"].is_unique and sorted(rates["run_id"]) == sorted(runs["run_id"])
    return runs


@dataclass
class Reference:
    """An uninterrupted ``rarefy run``: its result.json and rates.parquet, the command's wall time and the
    window (seconds after its start) from the first simulation's start to result.json."""

    result: dict
    rates: pd.DataFrame
    wall_s: float
    window_s: tuple[float, float]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    tmp = tmp_path_factory.mktemp("reference")
    log = tmp / "sim.log"
    cfg = loop_config(tmp)
    t0, start = time.monotonic(), time.time()
    finish(rarefy_run(cfg, tmp / "run"))
    wall = time.monotonic() - t0
    runs = check_run_dir(tmp / "run")
    assert sorted(logged(log)) == sorted(runs["seed"])        # each run simulated exactly once
    first = float(log_lines(log)[0][4]) - start - 0.2
    last = (tmp / "run" / "result.json").stat().st_mtime - start
    return Reference(comparable(json.loads((tmp / "run" / "result.json").read_text())), pd.read_parquet(tmp / "run" / "rates.parquet"),
                     wall, (first, last))


def kill_and_resume(tmp_path: Path, reference: Reference, *, at_s: float = math.inf,
                    after_simulations: int | None = None) -> dict[str, int]:
    """Kill ``rarefy run`` (SIGKILL) ``at_s`` seconds after its start or once the simulator logged
    ``after_simulations`` runs, resume it, and compare with the reference.

    Returns counts: killed (0 when the loop ended first), runs done at the kill, simulations
    after the kill of runs done before it (duplicates), runs, simulations in total.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "sim.log"
    cfg = loop_config(tmp_path)
    out = tmp_path / "run"
    proc = rarefy_run(cfg, out)
    t0 = time.monotonic()
    killed = False
    try:
        while proc.poll() is None:
            if time.monotonic() - t0 >= at_s or (after_simulations is not None
                                                 and len(log_lines(log)) >= after_simulations):
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.02)
            assert time.monotonic() - t0 < 600
    finally:
        if proc.poll() is None and not killed:
            proc.kill()
        proc.wait()
    done_at_kill = seeds_done(out)
    n_logged_at_kill = len(logged(log))
    finish(rarefy_run(cfg, out))
    runs = check_run_dir(out)
    after = logged(log)[n_logged_at_kill:]
    duplicates = sum(1 for seed in after if seed in done_at_kill)
    assert duplicates == 0, f"runs done before the kill were simulated again: {sorted(set(after) & done_at_kill)}"
    assert set(logged(log)) == set(runs["seed"])               # every run simulated, none lost
    assert max(Counter(after).values(), default=1) == 1         # and at most once after the kill
    assert comparable(json.loads((out / "result.json").read_text())) == reference.result
    pd.testing.assert_frame_equal(pd.read_parquet(out / "rates.parquet"), reference.rates)
    return {"killed": int(killed), "done_at_kill": len(done_at_kill), "logged_at_kill": n_logged_at_kill,
            "duplicates": duplicates, "runs": len(runs), "simulations": len(logged(log)),
            "stale_tmp": len(list((out / "events").glob(".*.tmp")))}


def test_kill_9_once_then_resume(tmp_path, reference):
    # killed just after the 12th simulation: 10 initial runs and the first of iteration 1 recorded, the 12th not yet
    counts = kill_and_resume(tmp_path, reference, after_simulations=12)
    assert counts["killed"] == 1 and counts["duplicates"] == 0
    assert 10 <= counts["done_at_kill"] <= 12 and counts["simulations"] == counts["runs"] + 12 - counts["done_at_kill"]


@pytest.mark.slow  # 10 kills, each followed by a resume: several minutes
def test_kill_9_at_ten_random_moments(tmp_path, reference):
    """Moments uniform over the part of an uninterrupted run that simulates and records (from the first
    simulation to result.json; before it only imports run, after it the report is drawn)."""
    moments = np.random.default_rng(2024).uniform(*reference.window_s, size=10)
    rows = []
    for i, at_s in enumerate(moments):
        counts = kill_and_resume(tmp_path / f"kill-{i}", reference, at_s=float(at_s))
        rows.append({"at_s": round(float(at_s), 2), **counts})
    table = pd.DataFrame(rows)
    print(f"\nreference: {reference.wall_s:.1f} s, window {reference.window_s[0]:.1f}-{reference.window_s[1]:.1f} s")
    print(table.to_string(index=False))
    print(json.dumps({"moments": len(rows), "killed": int(table["killed"].sum()),
                      "runs": int(table["runs"].sum()), "duplicates": int(table["duplicates"].sum()),
                      "simulations": int(table["simulations"].sum())}))
    assert table["duplicates"].sum() == 0
