"""The closed loop (rarefy run), suggest and ingest: results, resume after kill -9, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import rarefy
from rarefy.cli import app
from rarefy.data.store import EventStore
from rarefy.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

RESULT_KEYS = {"optimum", "predicted_rate", "predicted_sigma", "verified_rate", "verified_sigma", "baseline_rate",
               "reduction", "cost_cpu_h"}


def tiny_config(tmp_path: Path, name: str = "loop.yaml", **over) -> Path:
    """examples/moderator/run.yaml shrunk to seconds: few small runs, a quick surrogate and search."""
    cfg = yaml.safe_load((ROOT / "examples" / "moderator" / "run.yaml").read_text())
    cfg["fidelities"][0]["events"] = 20_000
    cfg["fidelities"][1]["events"] = 20_000
    cfg["surrogate"]["restarts"] = 1
    cfg["surrogate"]["max_iter"] = 40
    cfg["campaign"]["runs"] = [{"fidelity": "lf", "runs": 8, "designs": "sobol"},
                               {"fidelity": "hf", "runs": 2, "designs": "lf"}]
    cfg["acquisition"].update(candidates=64, reference=16, starts=2, steps=4)
    cfg["optimize"] = {"objective": "mean", "candidates": 128, "starts": 2, "steps": 5}
    cfg["loop"] = {"iterations": 2, "batch": 2, "verify": {"runs": 1}}
    cfg.update(over)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory) -> tuple[Path, Path, rarefy.jobs.loop.LoopResult]:
    tmp = tmp_path_factory.mktemp("loop")
    cfg = tiny_config(tmp)
    out = tmp / "run"
    return cfg, out, rarefy.run(cfg, out, progress=False)


def test_run_writes_result(loop_run):
    cfg, out, res = loop_run
    result = json.loads((out / "result.json").read_text())
    assert RESULT_KEYS <= set(result)
    space = rarefy.load_config(cfg).space.build()
    assert space.is_feasible(pd.DataFrame([result["optimum"]])).all()
    assert result["verified_rate"] is not None and result["verified_sigma"] > 0
    assert result["verified_n"] == 20_000
    # the simulator's baseline and the reduction from the verified rate
    assert result["baseline_rate"] == pytest.approx(rarefy.simulators.get("moderator").baseline_rate("hf"))
    assert result["reduction"] == pytest.approx(1 - result["verified_rate"] / result["baseline_rate"])
    # nominal costs: 8+4 LF/HF runs of the loop and design, 1 verification run; per-event costs of the moderator
    runs = pd.read_parquet(out / "rates.parquet")
    assert len(runs) == 8 + 2 + 2 * 2 + 1
    lf, hf = (runs["fidelity"] == "lf").sum(), (runs["fidelity"] == "hf").sum()
    assert result["cost_cpu_h"]["lf"] == pytest.approx(lf * 20_000 * 3e-6)
    assert result["cost_cpu_h"]["hf"] == pytest.approx(hf * 20_000 * 1.5e-4)
    assert result["cost_cpu_h"]["total"] == pytest.approx(result["cost_cpu_h"]["lf"] + result["cost_cpu_h"]["hf"])
    assert sorted(r for r in runs["run_id"] if r.startswith("loop-")) == [
        "loop-001-00", "loop-001-01", "loop-002-00", "loop-002-01"]
    for i in (1, 2):
        rec = json.loads((out / "loop" / f"iter-{i:03d}.json").read_text())
        assert len(rec["proposals"]) == 2
    assert (out / "surrogate" / "model.pt").exists()
    page = (out / "report" / "index.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 7 and ".png\"" not in page  # one file, no links
    for png in ("convergence", "designs", "slices", "map", "calibration", "acquisition", "cost"):
        assert (out / "report" / f"{png}.png").stat().st_size > 10_000  # the figures beside it, for slides
    # the report's calibration plot comes from the loop's cross-validation over the HF runs
    cv = pd.read_csv(out / "loop" / "cv_predictions.csv")
    assert len(cv) == (runs["fidelity"] == "hf").sum() - 1  # every HF run but the verification run
    assert {"mse", "coverage_2sigma"} <= set(result["cv"])
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output


def test_result_records_provenance(loop_run):
    from test_provenance import check_provenance

    cfg, out, res = loop_run
    result = json.loads((out / "result.json").read_text())
    check_provenance(result["provenance"], rarefy.load_config(cfg), 11)
    assert result["provenance"] == res.result["provenance"]


def _theta_table_rows(output: str) -> dict[str, list[str]]:
    """The rows of a printed θ* table: parameter -> [value, unit?]."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃|").split("│")]
        if len(cells) >= 2 and cells[0] in {"radius", "thickness", "npanels", "theta", "length"}:
            rows[cells[0]] = [c for c in cells[1:] if c]
    return rows


def test_theta_star_prints_as_a_table_with_units(loop_run):
    cfg, out, res = loop_run
    assert res.summary()[0] == "θ*:"
    assert res.theta_rows()[0][0] == "radius" and res.theta_rows()[0][2] == "cm"
    assert "1/neutron" in res.summary()[len(res.theta_rows()) + 1]
    printed = runner.invoke(app, ["run", str(cfg), "--out", str(out)])  # finished: reprints the result
    assert printed.exit_code == 0, printed.output
    rows = _theta_table_rows(printed.output)
    assert set(rows) == {"radius", "thickness", "npanels", "theta", "length"}, printed.output
    assert rows["radius"][1] == "cm" and rows["theta"][1] == "deg" and len(rows["npanels"]) == 1
    assert rows["npanels"][0] == str(int(res.result["optimum"]["npanels"]))
    assert float(rows["radius"][0]) == pytest.approx(res.result["optimum"]["radius"], rel=1e-3)
    assert len(rows["radius"][0].replace(".", "").lstrip("0")) <= 4  # four significant digits at most
    assert "θ* = {" not in printed.output  # no raw dict


def test_optimize_prints_theta_star_as_a_table(loop_run):
    cfg, out, res = loop_run
    printed = runner.invoke(app, ["optimize", str(out), "--json", str(out.parent / "opt.json")])
    assert printed.exit_code == 0, printed.output
    rows = _theta_table_rows(printed.output)
    assert set(rows) == {"radius", "thickness", "npanels", "theta", "length"}, printed.output
    assert rows["length"][1] == "cm" and "." not in rows["npanels"][0]
    assert "1/neutron" in printed.output
    assert json.loads((out.parent / "opt.json").read_text())["rate_unit"] == "1/neutron"


def _without_time(result: dict) -> dict:
    return {**result, "provenance": {k: v for k, v in result["provenance"].items() if k != "created_utc"}}


def test_rerun_of_a_finished_loop_simulates_nothing(loop_run):
    cfg, out, first = loop_run
    again = rarefy.run(cfg, out, progress=False)
    assert again.executed == 0
    assert _without_time(again.result) == _without_time(first.result)


def test_budget_stops_the_loop(tmp_path):
    # initial design: 8 LF (0.06 CPU-h each... 0.48) + 2 HF (3 CPU-h each) = 6.48; verification 3 CPU-h
    cfg = tiny_config(tmp_path, loop={"iterations": 5, "batch": 2, "budget_cpu_h": 9.6, "verify": {"runs": 1}})
    res = rarefy.run(cfg, tmp_path / "run", progress=False)
    assert res.result["cost_cpu_h"]["total"] <= 9.6 + 1e-9
    assert res.iterations >= 1  # 0.12 CPU-h left: only LF runs fit


KILL_DRIVER = """
import sys, rarefy
rarefy.run(sys.argv[1], sys.argv[2], progress=False)
"""


def _done(run_dir: Path) -> pd.DataFrame:
    if not (run_dir / "catalog.sqlite").exists():
        return pd.DataFrame(columns=["run_id"])
    try:
        with EventStore(run_dir) as store:
            return store.runs(states=("done",))
    except Exception:  # the catalog is being created
        return pd.DataFrame(columns=["run_id"])


def test_kill_9_during_the_loop_then_resume(tmp_path):
    cfg = tiny_config(tmp_path)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILL_DRIVER, str(cfg), str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not any(str(r).startswith("loop-001") for r in _done(killed)["run_id"]):
            assert proc.poll() is None, "the loop ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _done(killed)
    mtimes = {r: (killed / "events" / f"{r}.parquet").stat().st_mtime_ns for r in before["run_id"]}
    proposals = (killed / "loop" / "iter-001.json").read_text()
    resumed = rarefy.run(cfg, killed, progress=False)
    after = _done(killed)
    assert resumed.executed == len(after) - len(before)  # only unfinished runs were simulated
    for r, m in mtimes.items():  # finished runs were not simulated again
        assert (killed / "events" / f"{r}.parquet").stat().st_mtime_ns == m
    assert (killed / "loop" / "iter-001.json").read_text() == proposals
    assert RESULT_KEYS <= set(resumed.result)
    # the same catalog rows as an uninterrupted loop: deterministic ids, designs and seeds
    clean = tmp_path / "clean"
    uninterrupted = rarefy.run(cfg, clean, progress=False)
    # the same result.json as a loop that was never killed (but for the time it was written)
    assert _without_time(resumed.result) == _without_time(uninterrupted.result)
    with EventStore(killed) as a, EventStore(clean) as b:
        ra, rb = a.requests(), b.requests()
    assert [r.run_id for r in ra] == [r.run_id for r in rb]
    assert all(x.same_as(y) for x, y in zip(ra, rb))


def test_suggest_and_ingest_round_trip(loop_run, tmp_path):
    cfg, out, _ = loop_run
    csv = tmp_path / "next.csv"
    res = runner.invoke(app, ["suggest", str(out), "--n", "3", "--out", str(csv)])
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(csv)
    space = rarefy.load_config(cfg).space.build()
    assert list(frame.columns) == [*space.names, "fidelity", "events", "cost_cpu_h", "value"]
    assert len(frame) == 3 and space.is_feasible(frame).all()
    assert set(frame["fidelity"]) <= {"lf", "hf"}
    # simulate the suggestions "elsewhere" and ingest them as runs (k, n)
    sim = rarefy.simulators.get("moderator")
    rows = []
    for i, row in frame.iterrows():
        theta = {n: float(row[n]) for n in space.names}
        ev = sim.simulate(theta, int(row["events"]), row["fidelity"], seed=100 + i)
        rows.append({**theta, "fidelity": row["fidelity"], "k": ev.k, "n": ev.n})
    results = tmp_path / "results.csv"
    pd.DataFrame(rows).to_csv(results, index=False)
    res = runner.invoke(app, ["ingest", str(out), str(results)])
    assert res.exit_code == 0, res.output
    ing = pd.read_parquet(out / "ingested.parquet")
    assert len(ing) == 3 and set(ing["run_id"]) == {f"ingest:results:{i}" for i in range(3)}
    assert np.allclose(ing["rate"], ing["k"] / ing["n"])
    assert (ing["cost_cpu_h"] > 0).all()
    assert rarefy.ingest(out, [results]).n_new == 0  # idempotent
    table = rarefy.jobs.rundata.training_table(out, rarefy.load_config(cfg))
    assert set(ing["run_id"]) <= set(table.frame["run_id"])
    # the next suggestion uses them (fit on campaign + ingested rows)
    assert len(rarefy.suggest(out, 1, out=tmp_path / "again.csv")) == 1
    (out / "ingested.parquet").unlink()


def test_ingest_events_and_bad_input(loop_run, tmp_path):
    cfg, out, _ = loop_run
    space = rarefy.load_config(cfg).space.build()
    good = space.sample(2, seed=5)
    ev = pd.DataFrame({n: np.repeat(good[n].to_numpy(), [3, 5]) for n in space.names})
    ev["fidelity"] = "lf"
    ev["outcome"] = [1, 0, 0, 1, 1, 0, 0, 0]
    ev_path = tmp_path / "events.csv"
    ev.to_csv(ev_path, index=False)
    target = tmp_path / "copy"
    target.mkdir()
    (target / "config.yaml").write_text((out / "config.yaml").read_text())
    assert rarefy.ingest(target, [ev_path]).n_new == 2
    ing = pd.read_parquet(target / "ingested.parquet").sort_values("n")
    assert ing["k"].tolist() == [1, 2] and ing["n"].tolist() == [3, 5]

    bad = good.copy()
    bad["fidelity"], bad["k"], bad["n"] = ["lf", "xx"], [1, 1], [10, 10]
    bad.to_csv(tmp_path / "bad_fid.csv", index=False)
    res = runner.invoke(app, ["ingest", str(target), str(tmp_path / "bad_fid.csv")])
    assert res.exit_code == 2 and "column 'fidelity', row 1" in res.output and "unknown fidelity" in res.output
    assert len(res.output.strip().splitlines()) == 1

    bad = good.copy()
    bad["fidelity"], bad["k"], bad["n"] = "lf", [11, 1], [10, 10]
    bad.to_csv(tmp_path / "bad_k.csv", index=False)
    with pytest.raises(InputError, match="column 'k', row 0"):
        rarefy.ingest(target, [tmp_path / "bad_k.csv"])

    bad = good.copy()
    bad.loc[1, "length"] = 150.0  # inside the bounds, outside the cryostat constraint
    bad["fidelity"], bad["k"], bad["n"] = "lf", 1, 10
    bad.to_csv(tmp_path / "infeasible.csv", index=False)
    with pytest.raises(InputError, match="row 1: design .* constraint"):
        rarefy.ingest(target, [tmp_path / "infeasible.csv"])
    assert len(pd.read_parquet(target / "ingested.parquet")) == 2  # nothing written by the failures


def test_report_needs_a_finished_loop(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "result.json" in res.output


def test_config_errors(tmp_path):
    raw = yaml.safe_load((ROOT / "examples" / "moderator" / "run.yaml").read_text())
    from rarefy.config import config_from_dict

    with pytest.raises(InputError, match="loop.*needs 'simulator'"):
        config_from_dict({k: v for k, v in raw.items() if k not in ("simulator", "campaign")})
    with pytest.raises(InputError, match="exactly one"):
        config_from_dict({**raw, "baseline": {"rate": 1e-5, "simulator": True}})
    with pytest.raises(InputError, match="acquisition.fidelities: unknown"):
        config_from_dict({**raw, "acquisition": {"fidelities": ["mf"]}})
    with pytest.raises(InputError, match="baseline.design must give"):
        config_from_dict({**raw, "baseline": {"design": {"radius": 100}}})
    fids = [raw["fidelities"][0], {"name": "lf-denoised", "value": "rate", "filter": {"fidelity": "lf-denoised"}},
            raw["fidelities"][1]]
    path = tiny_config(tmp_path, fidelities=fids)  # a -denoised fidelity without a 'denoise' section
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "lf-denoised" in res.output and "'denoise' section" in res.output
    assert not (tmp_path / "r" / "catalog.sqlite").exists()  # failed before any simulation


TINY_CNP = {"model": {"kind": "cnp", "encoder": [8], "decoder": [8]}, "epochs": 1, "batches_per_epoch": 3,
            "batch_size": 512, "context_size": 16, "context_per_batch": 128, "split": [0.75, 0.25, 0.0],
            "tensorboard": False, "progress": False, "device": "cpu",
            "phi": ["r0_cm", "z0_cm", "phi0_rad", "e0_mev", "psi_rad", "cosz"]}


@pytest.mark.slow  # trains a (tiny) CNP inside a loop: about a minute on idle cores
@pytest.mark.parametrize("ensemble", [1, 2])
def test_loop_with_the_cnp_denoiser(tmp_path, ensemble):
    """denoise section + lf-denoised in the chain: the CNP is trained once, every run is scored, lf-denoised enters the fit."""
    cfg = yaml.safe_load(tiny_config(tmp_path).read_text())
    lf, hf = cfg["fidelities"]
    cfg["fidelities"] = [lf, {"name": "lf-denoised", "value": "rate", "filter": {"fidelity": "lf-denoised"}}, hf]
    cfg["denoise"] = {**TINY_CNP, "ensemble": ensemble}
    cfg["acquisition"]["fidelities"] = ["lf-denoised", "hf"]  # an LF run is valued by its denoised rate
    path = tmp_path / "cnp.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = tmp_path / "run"
    res = rarefy.run(path, out, progress=False)
    model_pt = out / "denoise" / ("model.pt" if ensemble == 1 else f"member-{ensemble - 1}/model.pt")
    assert model_pt.exists()
    scored = pd.read_parquet(out / "denoise" / "rates_denoised.parquet")
    runs = pd.read_parquet(out / "rates.parquet")
    lf_runs = set(runs.loc[(runs["fidelity"] == "lf") & ~runs["run_id"].str.startswith("verify"), "run_id"])
    assert lf_runs <= set(scored["run_id"])  # every LF run, loop runs included, was scored
    assert (scored["rate"] > 0).all() and (scored["var"] > 0).all()
    fitted = json.loads((out / "surrogate" / "model.json").read_text())
    assert fitted["fidelities"] == ["lf", "lf-denoised", "hf"]
    assert fitted["fit"]["n_per_fidelity"]["lf-denoised"] == fitted["fit"]["n_per_fidelity"]["lf"] == len(lf_runs)
    for i in (1, 2):  # proposals simulate real fidelities; LF runs were valued as lf-denoised
        rec = json.loads((out / "loop" / f"iter-{i:03d}.json").read_text())
        for p in rec["proposals"]:
            assert p["fidelity"] in ("lf", "hf")
            assert p["valued_as"] == {"lf": "lf-denoised", "hf": "hf"}[p["fidelity"]]
    # costs count the simulated runs only (a denoised row costs nothing more)
    assert set(res.result["cost_cpu_h"]) == {"lf", "hf", "total"}
    assert res.result["cost_cpu_h"]["lf"] == pytest.approx((runs["fidelity"] == "lf").sum() * 20_000 * 3e-6)
    mtime = model_pt.stat().st_mtime_ns
    again = rarefy.run(path, out, progress=False)  # resumes: nothing simulated, the CNP is not retrained
    assert again.executed == 0 and _without_time(again.result) == _without_time(res.result)
    assert model_pt.stat().st_mtime_ns == mtime


def test_optimize_command_on_a_loop_run(loop_run, tmp_path):
    _, out, res = loop_run
    r = runner.invoke(app, ["optimize", str(out), "--objective", "ucb", "--kappa", "1", "--json", str(tmp_path / "o.json")])
    assert r.exit_code == 0, r.output
    o = json.loads((tmp_path / "o.json").read_text())
    assert o["objective"] == "ucb" and o["baseline_rate"] == pytest.approx(res.result["baseline_rate"])
    assert o["reduction"] == pytest.approx(1 - o["rate"] / o["baseline_rate"])
    # the run directory's copy is the same record, traceable to the code and config that made it
    assert json.loads((out / "optimum.json").read_text()) == o
    assert o["provenance"]["seed"] == res.result["provenance"]["seed"]
    assert o["provenance"]["config_sha256"] == res.result["provenance"]["config_sha256"]
