"""Campaign robustness: timeouts end the command's process group, empty runs fail, lost workers lose no run."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rarefy.config import config_from_dict
from rarefy.data.events import EventTable
from rarefy.data.store import EventStore
from rarefy.jobs.simulate import simulate

from campaign_sims import PID_SCRIPT

TOY_SPACE = {"parameters": {"x": {"low": 0, "high": 1}, "y": {"low": 0, "high": 1}}}
FIDS = [{"name": "lf", "value": "rate", "filter": {"fidelity": "lf"}, "cost_cpu_h_per_event": 1e-6, "events": 50}]
SIMS = Path(__file__).resolve().parent


def config(simulator: dict, *, runs: int = 2, executor=None, max_retries: int = 0, timeout_s=None) -> dict:
    return {"name": "robust", "seed": 5, "space": TOY_SPACE, "fidelities": FIDS, "simulator": simulator,
            "campaign": {"runs": [{"fidelity": "lf", "runs": runs}], "max_retries": max_retries,
                         "timeout_s": timeout_s, "executor": executor or {"kind": "sync"}}}


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def survivors(pids: list[int], grace_s: float = 3.0) -> list[int]:
    """The pids still alive after ``grace_s`` seconds (a SIGKILL takes a moment to land)."""
    deadline = time.monotonic() + grace_s
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.mark.parametrize("executor, sim_timeout, campaign_timeout", [
    ("sync", 60.0, 1.5),                                  # the engine's timer fires first
    ("sync", 1.5, 60.0),                                  # the command simulator's own timer fires first
    ("local", 60.0, 1.5),                                 # engine first, in a worker process
], ids=["sync-engine-timer", "sync-command-timer", "local-engine-timer"])
def test_timeout_kills_the_command_process_group(tmp_path, executor, sim_timeout, campaign_timeout):
    script = tmp_path / "sleeper.py"
    script.write_text(PID_SCRIPT)
    pids = tmp_path / "pids"
    pids.mkdir()
    sim = {"kind": "command", "command": [sys.executable, str(script), str(pids)], "output": "events.csv",
           "timeout_s": sim_timeout}
    ex = {"kind": "sync"} if executor == "sync" else {"kind": "local", "workers": 1, "processes": True}
    try:
        res = simulate(config_from_dict(config(sim, executor=ex, timeout_s=campaign_timeout)), tmp_path / "run",
                       progress=False)
        started = [int(p.name) for p in pids.iterdir() if p.name.isdigit()]
        assert len(started) == 4                          # 2 runs x (the command + its grandchild)
        assert survivors(started) == []
    finally:
        for p in pids.iterdir():                          # leave no sleeper behind, whatever happened
            if p.name.isdigit() and alive(int(p.name)):
                os.kill(int(p.name), 9)
    assert (res.n_done, res.n_failed) == (0, 2)
    with EventStore(tmp_path / "run") as store:
        errors = store.runs()["error"]
    assert errors.str.contains("timed out after 1.5 s").all(), errors.tolist()


EMPTY_CSV = """
import sys
with open(sys.argv[1], "w") as fh:
    fh.write("" if sys.argv[2] == "empty" else "u,outcome\\n")
"""


@pytest.mark.parametrize("kind", ["header", "empty", "python"])
def test_a_run_without_events_is_a_failed_run(tmp_path, kind):
    if kind == "python":
        sim = {"kind": "python", "target": "campaign_sims:no_events"}
        message = "simulator returned no events (asked for 50)"
    else:
        script = tmp_path / "writer.py"
        script.write_text(EMPTY_CSV)
        sim = {"kind": "command", "command": [sys.executable, str(script), "{output}", kind], "output": "out.csv"}
        message = "SimulatorError: command wrote no events to 'out.csv' (asked for 50)"
    res = simulate(config_from_dict(config(sim, max_retries=1)), tmp_path / "run", progress=False)
    assert (res.n_done, res.n_failed) == (0, 2)
    with EventStore(tmp_path / "run") as store:
        runs = store.runs()
    assert (runs["state"] == "failed").all() and (runs["attempts"] == 2).all()
    assert all(e.startswith(message) for e in runs["error"]), runs["error"].tolist()
    assert not list((tmp_path / "run" / "events").iterdir())
    assert pd.read_parquet(res.rates_path).empty


def check_catalog_matches_shards(run_dir: Path, n_runs: int) -> pd.DataFrame:
    """Every planned run is done, with exactly one shard of its events; nothing else lies in events/."""
    with EventStore(run_dir) as store:
        runs = store.runs()
    assert len(runs) == n_runs and (runs["state"] == "done").all(), runs[["run_id", "state", "error"]]
    shards = sorted(p.name for p in (run_dir / "events").iterdir())
    assert shards == sorted(f"{r}.parquet" for r in runs["run_id"])
    for row in runs.itertuples():
        events = EventTable.read_parquet(run_dir / "events" / f"{row.run_id}.parquet")
        assert (events.n, events.k) == (row.n_produced, row.k)
    rates = pd.read_parquet(run_dir / "rates.parquet")
    assert sorted(rates["run_id"]) == sorted(runs["run_id"])
    return runs


@pytest.mark.parametrize("allowed_failures", [3, 0], ids=["rescheduled-by-dask", "retried-by-the-engine"])
def test_a_killed_worker_loses_and_duplicates_no_run(tmp_path, allowed_failures):
    """Runs with x > 0.6 kill their worker process (SIGKILL) on their first attempt.

    Dask reschedules a lost task itself (up to ``allowed-failures`` lost workers); past that
    the task fails with KilledWorker and the engine retries the run.
    """
    import dask
    import distributed  # noqa: F401 - its config defaults load before the override below

    markers = tmp_path / "markers"
    markers.mkdir()
    sim = {"kind": "python", "target": "campaign_sims:killer", "options": {"marker_dir": str(markers)}}
    raw = config(sim, runs=8, max_retries=3, executor={"kind": "local", "workers": 2, "processes": True})
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        res = simulate(config_from_dict(raw), tmp_path / "run", progress=False)
    runs = check_catalog_matches_shards(tmp_path / "run", 8)
    killers = runs["x"] > 0.6
    assert len(list(markers.iterdir())) == killers.sum() >= 2          # each of them did kill a worker once
    assert (res.n_done, res.n_failed, res.n_executed) == (8, 0, 8)
    if allowed_failures == 0:
        assert (runs.loc[killers, "attempts"] >= 2).all()               # the engine saw the lost worker
    reference = simulate(config_from_dict(config({"kind": "python", "target": "rarefy.simulators.testing:toy"},
                                                 runs=8)), tmp_path / "ref", progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(res.rates_path), pd.read_parquet(reference.rates_path))

def pids_in(folder: Path) -> list[int]:
    return [int(p.name) for p in folder.iterdir() if p.name.isdigit()]


def wait_for_pids(folder: Path, n: int, timeout_s: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while len(pids_in(folder)) < n:
        assert time.monotonic() < deadline, "the command did not start"
        time.sleep(0.05)
    return pids_in(folder)


def kill_all(folder: Path) -> None:
    for pid in pids_in(folder):
        if alive(pid):
            os.kill(pid, 9)


def test_a_closing_worker_kills_its_commands(tmp_path):
    from rarefy.campaign import open_executor
    from rarefy.config import LocalExecutorConfig
    from rarefy.simulators import CommandSimulator

    script = tmp_path / "sleeper.py"
    script.write_text(PID_SCRIPT)
    pids = tmp_path / "pids"
    pids.mkdir()
    sim = CommandSimulator([sys.executable, str(script), str(pids)], output="events.csv")
    try:
        with open_executor(LocalExecutorConfig(workers=1, processes=True)) as (client, _):
            future = client.submit(sim.simulate, {"x": 0.5, "y": 0.5}, 10, "lf", 0, pure=False)
            first = wait_for_pids(pids, 2)
            client.restart_workers(list(client.nthreads()), timeout=60)
            assert survivors(first) == []                 # the restart ended the worker's command
            future.cancel()
        assert survivors(pids_in(pids)) == []             # and so did closing the cluster
    finally:
        kill_all(pids)


INTERRUPTED = """
import sys
from rarefy.jobs.simulate import simulate
simulate(sys.argv[1], sys.argv[2], progress=False)
"""


def sleeper_campaign(tmp_path: Path, executor: str, timeout_s) -> tuple[Path, Path]:
    """A campaign config whose command sleeps after writing its pid into the returned folder."""
    import yaml

    script = tmp_path / "sleeper.py"
    script.write_text(PID_SCRIPT)
    pids = tmp_path / "pids"
    pids.mkdir()
    sim = {"kind": "command", "command": [sys.executable, str(script), str(pids)], "output": "events.csv"}
    ex = {"kind": "sync"} if executor == "sync" else {"kind": "local", "workers": 1, "processes": True}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config(sim, executor=ex, timeout_s=timeout_s)))
    return cfg, pids


@pytest.mark.parametrize("executor, timeout_s", [("sync", None), ("sync", 60.0), ("local", 60.0)])
def test_ctrl_c_of_the_driver_kills_the_running_commands(tmp_path, executor, timeout_s):
    import signal
    import subprocess

    cfg, pids = sleeper_campaign(tmp_path, executor, timeout_s)
    # the driver gets Ctrl-C's default disposition even when the test runner itself was started as a
    # background job (which ignores SIGINT, and its children inherit that)
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(cfg), str(tmp_path / "run")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        started = wait_for_pids(pids, 2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert b"KeyboardInterrupt" in err and proc.returncode != 0
        assert survivors(started) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_all(pids)
    with EventStore(tmp_path / "run") as store:                 # the run is left for a resume to redo
        assert store.counts()["done"] == 0


TERMINATED = """
import sys
from rarefy.cli import main
sys.argv = ["rarefy", "simulate", sys.argv[1], "--out", sys.argv[2]]
main()
"""


@pytest.mark.parametrize("executor", ["sync", "local"])
def test_sigterm_of_the_cli_kills_the_running_commands(tmp_path, executor):
    import signal
    import subprocess

    cfg, pids = sleeper_campaign(tmp_path, executor, 60.0)
    proc = subprocess.Popen([sys.executable, "-c", TERMINATED, str(cfg), str(tmp_path / "run")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        started = wait_for_pids(pids, 2)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM
        assert survivors(started) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_all(pids)
    with EventStore(tmp_path / "run") as store:                 # the run is left for a resume to redo
        assert store.counts()["done"] == 0


SLURM = {"kind": "slurm", "queue": "debug", "account": "rare-events", "cores": 2, "memory": "3GB",
         "walltime": "00:20:00", "jobs": 2, "job_extra_directives": ["--constraint=cpu", "--qos=low"]}


def test_slurm_job_script_carries_the_executor_settings():
    pytest.importorskip("dask_jobqueue")
    from rarefy.campaign.executors import slurm_cluster
    from rarefy.config import SlurmExecutorConfig

    with slurm_cluster(SlurmExecutorConfig(**SLURM)) as cluster:
        script = cluster.job_script()
    lines = script.splitlines()
    for directive in ("-p debug", "-A rare-events", "-n 1", "--cpus-per-task=2", "--mem=3G", "-t 00:20:00",
                      "--constraint=cpu", "--qos=low"):
        assert f"#SBATCH {directive}" in lines, script
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line)
    assert "--nthreads 2" in worker and "--memory-limit 2.79GiB" in worker and "--nanny" in worker
    with slurm_cluster(SlurmExecutorConfig(kind="slurm")) as cluster:      # unset queue and account: no line
        script = cluster.job_script()
    assert "#SBATCH -p" not in script and "#SBATCH -A" not in script


def test_campaign_through_dask_jobqueue(tmp_path, monkeypatch):
    """The slurm executor end to end, with dask-jobqueue's LocalCluster (its jobs are local processes)."""
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    from dask_jobqueue.local import LocalCluster

    built = []

    class Recording(LocalCluster):
        def __init__(self, **kwargs):
            built.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(dask_jobqueue, "SLURMCluster", Recording)
    executor = {**SLURM, "account": None}                 # the local job class has no account
    sim = {"kind": "python", "target": "rarefy.simulators.testing:toy"}
    res = simulate(config_from_dict(config(sim, runs=6, executor=executor)), tmp_path / "run", progress=False)
    assert built == [{"queue": "debug", "cores": 2, "memory": "3GB", "walltime": "00:20:00", "processes": 1,
                      "job_extra_directives": ["--constraint=cpu", "--qos=low"]}]
    assert (res.n_done, res.n_failed) == (6, 0)
    runs = check_catalog_matches_shards(tmp_path / "run", 6)
    assert runs["worker"].str.startswith("tcp://").all()  # the runs ran on the jobs' workers
    reference = simulate(config_from_dict(config(sim, runs=6)), tmp_path / "ref", progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(res.rates_path), pd.read_parquet(reference.rates_path))
