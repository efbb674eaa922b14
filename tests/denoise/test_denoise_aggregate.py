"""Per-run aggregation of event scores into RateTable rows; the EventStore adapter."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rarefy import DesignSpace, EventStore, EventTable
from rarefy.data.store import RunRequest
from rarefy.denoise import EventData, Scores, aggregate, from_event_store, iter_chunks
from rarefy.errors import InputError


def test_rate_and_variance_by_hand() -> None:
    p = np.array([0.1, 0.3, 0.2, 0.05], np.float32)
    sigma = np.array([0.01, 0.03, 0.02, 0.04], np.float32)
    scores = Scores(p=p, sigma=sigma, mu=np.zeros(4, np.float32), log_var=np.zeros(4, np.float32),
                    y=np.array([0, 1, 0, 0], np.float32), run_starts=np.array([0, 3, 4]), run_ids=["a", "b"],
                    theta=np.array([[0.2], [0.7]]), theta_names=["x"], fidelity=None)
    table = aggregate(scores, DesignSpace.from_bounds({"x": (0, 1)}), fidelity="lf")
    f = table.frame
    assert list(f["fidelity"]) == ["lf-denoised", "lf-denoised"] and list(f["run_id"]) == ["a", "b"]
    # run a: mean 0.2, sample variance ((-.1)² + .1² + 0²)/2 = 0.01, mean σ 0.02
    assert f["rate"][0] == pytest.approx(0.2, rel=1e-6)
    assert f["var"][0] == pytest.approx(0.01 / 3, rel=1e-5)
    assert f["model_sigma"][0] == pytest.approx(0.02, rel=1e-5)
    # run b: a single event: no sampling term; the model's σ is reported, not added
    assert f["rate"][1] == pytest.approx(0.05, rel=1e-6)
    assert f["var"][1] == 0.0 and f["model_sigma"][1] == pytest.approx(0.04, rel=1e-5)
    # the conservative bound on request: the model's σ̄ fully correlated, added to var
    g = aggregate(scores, DesignSpace.from_bounds({"x": (0, 1)}), fidelity="lf", model_error=True).frame
    assert g["var"][0] == pytest.approx(0.01 / 3 + 0.02**2, rel=1e-5)
    assert g["var"][1] == pytest.approx(0.04**2, rel=1e-5)
    assert list(f["k"]) == [1, 0] and list(f["n"]) == [3, 1]
    assert math.isclose(f["x"][1], 0.7)


def test_from_event_store_streams_finished_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with EventStore(tmp_path / "run") as store:
        reqs = [RunRequest(f"run-{i}", i, "lf", {"x": 0.1 * i}, 50, i) for i in range(3)]
        store.add_requests(reqs)
        for req in reqs[:2]:
            ev = EventTable.from_arrays(req.theta, {"e": rng.normal(size=50)}, (rng.random(50) < 0.2).astype(int),
                                        extra={"depth": rng.random(50)})
            EventStore.write_shard(store.run_dir, req.run_id, ev)
            store.mark_done(req.run_id, n=50, k=ev.k, wall_s=0.1, cpu_s=0.1, attempts=1)
        chunks = list(iter_chunks(from_event_store(store)))
    assert [c.run_ids for c in chunks] == [["run-0"], ["run-1"]]
    assert all(isinstance(c, EventData) and c.fidelity == ["lf"] and c.phi_names == ["e"] for c in chunks)
    assert chunks[1].theta[0, 0] == pytest.approx(0.1)
    with EventStore(tmp_path / "run") as store:
        picked = next(iter(iter_chunks(from_event_store(store, fidelity="lf", phi=["e", "depth"]))))
        assert picked.phi_names == ["e", "depth"] and picked.phi.shape == (50, 2)
        with pytest.raises(InputError, match=r"lack the φ column\(s\) \['energy'\]"):
            next(iter(iter_chunks(from_event_store(store, phi=["energy"]))))
        with pytest.raises(InputError, match="no finished runs"):
            from_event_store(store, fidelity="hf")
