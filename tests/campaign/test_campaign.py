"""Campaign runner: plan, execute on dask / in-process, failures, retries, timeouts, resume after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rarefy.campaign import run_seed
from rarefy.jobs.simulate import campaign_requests, simulate
from rarefy.config import config_from_dict
from rarefy.data.store import EventStore
from rarefy.errors import InputError
from rarefy.simulators.testing import toy_rate

from conftest import done_count

TOY_SPACE = {"parameters": {"x": {"low": 0, "high": 1}, "y": {"low": 0, "high": 1}}}
FIDS = [{"name": "lf", "value": "rate", "filter": {"fidelity": "lf"}, "cost_cpu_h_per_event": 1e-6, "events": 400},
        {"name": "hf", "value": "rate", "filter": {"fidelity": "hf"}, "cost_cpu_h_per_event": 1e-4, "events": 200}]


def toy_config(target: str = "toy", *, runs: int = 8, hf_runs: int = 2, executor=None, options=None,
               max_retries: int = 1, timeout_s=None, seed: int = 3) -> dict:
    return {
        "name": "toy", "seed": seed, "space": TOY_SPACE, "fidelities": FIDS,
        "simulator": {"kind": "python", "target": f"rarefy.simulators.testing:{target}", "options": options or {}},
        "campaign": {"runs": [{"fidelity": "lf", "runs": runs}, {"fidelity": "hf", "runs": hf_runs, "designs": "lf"}],
                     "max_retries": max_retries, "timeout_s": timeout_s,
                     "executor": executor or {"kind": "sync"}},
    }


def run(raw: dict, out: Path, **kw):
    return simulate(config_from_dict(raw), out, progress=False, **kw)


def test_plan_is_deterministic_and_nested():
    cfg = config_from_dict(toy_config(runs=6, hf_runs=3))
    a, b = campaign_requests(cfg), campaign_requests(cfg)
    assert [r.run_id for r in a] == [f"run-{i:05d}" for i in range(9)]
    assert all(x.same_as(y) for x, y in zip(a, b))
    assert [r.theta for r in a[6:]] == [r.theta for r in a[:3]]            # HF repeats the first LF designs
    assert len({r.seed for r in a}) == 9 and a[4].seed == run_seed(3, 4)
    assert a[0].n == 400 and a[7].n == 200 and a[7].cost_cpu_h == pytest.approx(0.02)
    other = campaign_requests(config_from_dict(toy_config(runs=6, hf_runs=3, seed=4)))
    assert other[0].seed != a[0].seed


def test_sync_campaign_writes_rates(tmp_path):
    res = run(toy_config(), tmp_path / "run")
    assert (res.n_runs, res.n_done, res.n_failed) == (10, 10, 0)
    frame = pd.read_parquet(tmp_path / "run" / "rates.parquet")
    assert list(frame.columns) == ["x", "y", "fidelity", "k", "n", "rate", "var", "cost_cpu_h", "run_id"]
    assert frame["run_id"].is_unique and list(frame["run_id"]) == sorted(frame["run_id"])
    assert (frame["n"] == np.where(frame["fidelity"] == "lf", 400, 200)).all()
    np.testing.assert_allclose(frame["rate"], frame["k"] / frame["n"])
    expected = np.array([toy_rate(r) for r in frame[["x", "y"]].to_dict(orient="records")]) * frame["n"]
    assert abs(frame["k"].sum() - expected.sum()) < 5 * np.sqrt(expected.sum())
    assert len(list((tmp_path / "run" / "events").glob("*.parquet"))) == 10
    assert (tmp_path / "run" / "config.yaml").exists()
    # re-running is a no-op: nothing executes, nothing changes
    again = run(toy_config(), tmp_path / "run")
    assert again.n_executed == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "run" / "rates.parquet"), frame)


def test_resume_removes_the_partial_shards_a_killed_worker_left(tmp_path):
    run(toy_config(runs=2, hf_runs=0), tmp_path / "run")
    partial = tmp_path / "run" / "events" / ".run-00001.parquet.k3x9.tmp"   # a shard write cut short by kill -9
    partial.write_bytes(b"PAR1 half a file")
    again = run(toy_config(runs=2, hf_runs=0), tmp_path / "run")
    assert again.n_executed == 0 and not partial.exists()
    assert sorted(p.name for p in (tmp_path / "run" / "events").iterdir()) == ["run-00000.parquet", "run-00001.parquet"]


def test_a_constraint_no_design_meets_names_the_config_file(tmp_path):
    raw = toy_config(runs=2, hf_runs=0)
    raw["space"] = {**TOY_SPACE, "constraints": ["x + y <= -1"]}
    (tmp_path / "never.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match=r"never\.yaml: constraint 'x \+ y <= -1' is never met"):
        simulate(tmp_path / "never.yaml", tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_different_config_on_same_run_dir_is_refused(tmp_path):
    run(toy_config(runs=2, hf_runs=0), tmp_path / "run")
    with pytest.raises(InputError, match="different campaign"):
        run(toy_config(runs=2, hf_runs=0, seed=99), tmp_path / "run")


def test_local_cluster_matches_sync(tmp_path):
    sync = run(toy_config(runs=6, hf_runs=2), tmp_path / "sync")
    local = run(toy_config(runs=6, hf_runs=2, executor={"kind": "local", "workers": 2, "processes": False}),
                tmp_path / "local")
    assert local.workers == 2 and local.n_done == 8
    pd.testing.assert_frame_equal(pd.read_parquet(sync.rates_path), pd.read_parquet(local.rates_path))


@pytest.mark.parametrize("target, options, timeout_s, message", [
    ("failing", {}, None, "RuntimeError: simulated crash"),
    ("missing_columns", {}, None, "outcome column not found"),
    ("hanging", {"hang_s": 5.0}, 0.3, "timed out after 0.3 s"),
])
def test_failed_runs_are_recorded_and_campaign_completes(tmp_path, target, options, timeout_s, message):
    raw = toy_config(target, runs=6, hf_runs=0, options=options, timeout_s=timeout_s, max_retries=1,
                     executor={"kind": "local", "workers": 2, "processes": False})
    res = run(raw, tmp_path / "run")
    with EventStore(tmp_path / "run") as store:
        runs = store.runs()
    bad = runs["x"] > 0.5
    assert bad.any() and (~bad).any()
    assert (runs.loc[bad, "state"] == "failed").all() and (runs.loc[~bad, "state"] == "done").all()
    assert runs.loc[bad, "error"].str.contains(message).all()
    assert (runs.loc[bad, "attempts"] == 2).all()                          # 1 try + max_retries=1
    assert res.n_failed == bad.sum() and res.n_done == (~bad).sum()
    rates = pd.read_parquet(res.rates_path)
    assert set(rates["run_id"]) == set(runs.loc[~bad, "run_id"])


def test_retry_failed_on_rerun(tmp_path):
    raw = toy_config("failing", runs=4, hf_runs=0, max_retries=0)
    first = run(raw, tmp_path / "run")
    assert first.n_failed > 0
    # the simulator is fixed (now never fails): only the failed runs are redone
    # (the simulator's options are not part of the plan, so the run directory is accepted)
    raw["simulator"]["options"] = {"when_x_above": 2.0}
    assert run(raw, tmp_path / "run").n_executed == 0                      # failed runs stay failed ...
    second = run(raw, tmp_path / "run", retry_failed=True)                 # ... unless asked
    assert second.n_executed == first.n_failed and second.n_failed == 0 and second.n_done == 4


def test_process_workers_restart_after_hang(tmp_path):
    raw = toy_config("hanging", runs=4, hf_runs=0, options={"hang_s": 60.0}, timeout_s=1.0, max_retries=0,
                     executor={"kind": "local", "workers": 1, "processes": True})
    start = time.perf_counter()
    res = run(raw, tmp_path / "run")
    assert res.n_failed >= 1 and res.n_done + res.n_failed == 4
    assert time.perf_counter() - start < 55                                # the hung call did not block


KILL_DRIVER = textwrap.dedent("""
    import sys
    from rarefy.jobs.simulate import simulate
    simulate(sys.argv[1], sys.argv[2], progress=False)
""")


def test_kill_9_then_resume_equals_uninterrupted(tmp_path):
    raw = toy_config(runs=14, hf_runs=4, options={"sleep_s": 0.25},
                     executor={"kind": "local", "workers": 2, "processes": False})
    cfg_path = tmp_path / "campaign.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILL_DRIVER, str(cfg_path), str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while done_count(killed) < 4:
            assert proc.poll() is None, "campaign ended before it could be killed"
            assert time.monotonic() < deadline, "campaign made no progress"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    n_before = done_count(killed)
    assert 4 <= n_before < 18
    resumed = simulate(cfg_path, killed, progress=False)
    assert resumed.n_executed == 18 - n_before                            # only unfinished runs were redone
    reference = simulate(cfg_path, tmp_path / "reference", progress=False)
    got, want = pd.read_parquet(resumed.rates_path), pd.read_parquet(reference.rates_path)
    assert got["run_id"].is_unique and len(got) == 18
    pd.testing.assert_frame_equal(got, want)
    with EventStore(killed) as store:
        assert store.counts() == {"queued": 0, "running": 0, "done": 18, "failed": 0}
        assert store.all_events().n == 14 * 400 + 4 * 200


def test_cli_simulate(tmp_path):
    cli = pytest.importorskip("rarefy.cli")
    if not hasattr(cli, "simulate"):
        pytest.skip("the CLI has no simulate command yet")
    from typer.testing import CliRunner

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(toy_config(runs=3, hf_runs=1)))
    result = CliRunner().invoke(cli.app, ["simulate", str(cfg_path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "rates.parquet").exists()
    bad = tmp_path / "bad.yaml"
    raw = toy_config()
    raw["campaign"]["runs"][0]["fidelity"] = "nope"
    bad.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(cli.app, ["simulate", str(bad), "--out", str(tmp_path / "run2")])
    assert result.exit_code == 2 and "unknown fidelity 'nope'" in result.output
