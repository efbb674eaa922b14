"""Hostile input never gives a traceback: exit 0, or exit 2 with one 'error:' line (cases: tests/cli_fuzz.py).

The short version runs in CI; ``-m slow`` runs 2,000 cases (also ``benchmarks/fuzz_inputs.py``,
which prints the counts).
"""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cli_fuzz import Outcome, Workspace, breach, invoke, make_workspace, run_case


@pytest.fixture(scope="module")
def workspace():
    ws = make_workspace()
    yield ws
    shutil.rmtree(ws.base, ignore_errors=True)


def fuzz(max_examples: int):
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


@fuzz(100)
@given(data=st.data())
def test_hostile_input_gives_one_line_or_success(workspace: Workspace, data: st.DataObject) -> None:
    problem = run_case(data, workspace)
    assert problem is None, problem


@pytest.mark.slow
@fuzz(2000)
@given(data=st.data())
def test_hostile_input_long(workspace: Workspace, data: st.DataObject) -> None:
    problem = run_case(data, workspace)
    assert problem is None, problem


def test_breach_detects_traceback_and_extra_lines(tmp_path):
    assert breach(Outcome(1, trace="Traceback ...\nValueError: x"), tmp_path).startswith("traceback")
    assert "one 'error:' line" in breach(Outcome(2, stderr="[12:00] INFO working\nerror: bad\n"), tmp_path)
    (tmp_path / ".rates.parquet.abc.tmp").write_text("")
    assert "left behind" in breach(Outcome(0), tmp_path)


@pytest.mark.parametrize("args, needle", [
    (["fit", "{base}", "--out", "{base}/run"], "is a folder, expected a config file"),
    (["fit", "{base}/legend.yaml", "--out", "{base}/legend.yaml/run"], "not a folder"),
    (["fit", "{base}/legend.yaml", "--out", "/proc/rarefy/run"], "cannot write here"),
    (["simulate", "{base}/moderator.yaml", "--out", "{base}/legend.yaml"], "exists and is not a folder"),
    (["validate", "{base}/fitted", "{base}/data/Ge77_rates_new_samples_v1.6.csv", "--json", "{base}"],
     "is a folder, expected a file"),
    (["optimize", "{base}/fitted", "--kappa", "nan"], "--kappa must be a finite number"),
    (["suggest", "{base}/simulated", "--n", "1000000000000"], "--n must be between 1 and 1000"),
])
def test_paths_and_options_fail_in_one_line(workspace: Workspace, args, needle):
    out = invoke([a.format(base=workspace.base) for a in args])
    assert out.trace is None, out.trace
    assert out.exit_code == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], out.stderr


def _truncate(path):
    path.write_bytes(path.read_bytes()[:40])


def _garbage(path):
    path.write_bytes(b"\xd9\x00 not this file's format \xff" * 4)


@pytest.mark.parametrize("kind, file, corrupt, args", [
    ("fitted", "surrogate/model.pt", _truncate, ["optimize", "{run}"]),
    ("fitted", "surrogate/model.json", _garbage, ["optimize", "{run}"]),
    ("fitted", "surrogate/model.json", lambda p: p.write_text("[1, 2]"), ["validate", "{run}", "{heldout}"]),
    ("fitted", "training_rates.parquet", _truncate, ["optimize", "{run}"]),
    ("fitted", "config.yaml", _garbage, ["optimize", "{run}"]),
    ("simulated", "catalog.sqlite", _garbage, ["simulate", "{base}/moderator.yaml", "--out", "{run}"]),
    ("simulated", "rates.parquet", _truncate, ["suggest", "{run}"]),
    ("simulated", "rates.parquet", lambda p: (p.unlink(), p.mkdir()), ["suggest", "{run}"]),
])
def test_corrupt_run_directory_file_is_named(workspace: Workspace, tmp_path, kind, file, corrupt, args):
    run = tmp_path / kind
    shutil.copytree(getattr(workspace, kind), run)
    corrupt(run / file)
    heldout = workspace.data / "Ge77_rates_new_samples_v1.6.csv"
    out = invoke([a.format(run=run, base=workspace.base, heldout=heldout) for a in args])
    assert out.trace is None, out.trace
    assert out.exit_code == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and file in lines[0], out.stderr


def test_poisson_surrogate_without_event_counts_is_one_line(workspace: Workspace, tmp_path):
    import yaml

    cfg = yaml.safe_load((workspace.base / "legend.yaml").read_text())
    cfg["surrogate"] = {"kind": "pce", "output": "poisson", "max_degree": 1, "cv_folds": 2}
    path = tmp_path / "poisson.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = invoke(["fit", path, "--out", tmp_path / "run"])
    assert out.trace is None, out.trace
    assert out.exit_code == 2 and "surrogate.output: poisson needs" in out.stderr, out.stderr
