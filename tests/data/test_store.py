"""EventStore: SQLite catalog (WAL), Parquet shards, aggregation to rates.parquet."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from rarefy.data.events import EventTable
from rarefy.data.store import EventStore, RunRequest
from rarefy.errors import InputError
from rarefy.space import DesignSpace


def space() -> DesignSpace:
    return DesignSpace.from_bounds({"x": (0, 1), "y": (0, 1)})


def requests() -> list[RunRequest]:
    return [RunRequest(f"run-{i:05d}", i, "lf" if i < 3 else "hf", {"x": 0.1 * i, "y": 0.5}, 100, 1000 + i, 0.01)
            for i in range(4)]


def finish(store: EventStore, req: RunRequest, k: int) -> None:
    outcome = np.zeros(req.n, dtype=np.int8)
    outcome[:k] = 1
    ev = EventTable.from_arrays(req.theta, {"u": np.linspace(0, 1, req.n)}, outcome, fidelity=req.fidelity,
                                run_id=req.run_id)
    EventStore.write_shard(store.run_dir, req.run_id, ev)
    store.mark_done(req.run_id, n=req.n, k=k, wall_s=0.5, cpu_s=0.4, attempts=1)


def test_catalog_is_wal_and_records_states(tmp_path):
    with EventStore(tmp_path) as store:
        assert store.add_requests(requests()) == 4
        assert store.add_requests(requests()) == 0           # idempotent
        store.mark_running(["run-00000", "run-00001"])
        finish(store, requests()[0], 3)
        store.mark_failed("run-00001", error="RuntimeError: boom", attempts=3)
        assert store.counts() == {"queued": 2, "running": 0, "done": 1, "failed": 1}
        runs = store.runs()
        assert list(runs["run_id"]) == [r.run_id for r in requests()]
        assert runs.loc[1, "error"] == "RuntimeError: boom" and runs.loc[0, "k"] == 3
        assert {"x", "y", "seed", "n_requested", "n_produced", "wall_s", "cpu_s", "cost_cpu_h", "stderr"} <= set(runs)
    mode = sqlite3.connect(tmp_path / "catalog.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_done_requires_shard(tmp_path):
    with EventStore(tmp_path) as store:
        store.add_requests(requests())
        with pytest.raises(RuntimeError, match="no event shard"):
            store.mark_done("run-00002", n=100, k=1, wall_s=1, cpu_s=1, attempts=1)


def test_different_campaign_is_refused(tmp_path):
    with EventStore(tmp_path) as store:
        store.add_requests(requests())
        changed = requests()
        changed[2] = RunRequest("run-00002", 2, "lf", {"x": 0.9, "y": 0.5}, 100, 1002, 0.01)
        with pytest.raises(InputError, match="different campaign.*run-00002"):
            store.add_requests(changed)


def test_requeue_running(tmp_path):
    with EventStore(tmp_path) as store:
        store.add_requests(requests())
        store.mark_running(["run-00001", "run-00003"])
        assert store.requeue() == 2
        assert store.counts()["queued"] == 4


def test_aggregate_rates_columns_and_values(tmp_path):
    with EventStore(tmp_path) as store:
        reqs = requests()
        store.add_requests(reqs)
        for req, k in zip(reqs, (3, 0, 7)):
            finish(store, req, k)
        path = store.write_rates(space())
        frame = pd.read_parquet(path)
        assert list(frame.columns) == ["x", "y", "fidelity", "k", "n", "rate", "var", "cost_cpu_h", "run_id"]
        assert list(frame["run_id"]) == ["run-00000", "run-00001", "run-00002"]   # the queued run is absent
        np.testing.assert_allclose(frame["rate"], [0.03, 0.0, 0.07])
        np.testing.assert_allclose(frame["var"], [3 / 100**2, 1 / 100**2, 7 / 100**2])   # k=0 rule: 1/n^2
        np.testing.assert_allclose(frame["cost_cpu_h"], 0.01)
        events = store.all_events()
        assert events.n == 300 and events.k == 10


def test_shard_round_trip(tmp_path):
    with EventStore(tmp_path) as store:
        store.add_requests(requests())
        finish(store, requests()[1], 4)
        ev = store.events("run-00001")
        assert ev.k == 4 and set(ev.to_pandas()["run_id"]) == {"run-00001"}


def test_a_run_without_events_has_no_rate_row(tmp_path, caplog):
    with EventStore(tmp_path) as store:
        reqs = requests()
        store.add_requests(reqs)
        finish(store, reqs[0], 3)
        EventStore.write_shard(store.run_dir, reqs[1].run_id, EventTable.from_arrays(
            reqs[1].theta, {"u": np.zeros(0)}, np.zeros(0, dtype=np.int8), fidelity="lf", run_id=reqs[1].run_id))
        store.mark_done(reqs[1].run_id, n=0, k=0, wall_s=0.1, cpu_s=0.1, attempts=1)
        with caplog.at_level("WARNING"):
            table = store.rate_table(space())
        assert list(table.frame["run_id"]) == ["run-00000"]
        assert "run-00001" in caplog.text
