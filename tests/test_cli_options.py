"""The command line's global options and the config overrides: --version, --set, -v and dask's log lines."""

import re
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rarefy.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
MODERATOR = ROOT / "examples" / "moderator" / "simulate.yaml"
# a few small runs of the moderator campaign on a dask LocalCluster of one thread worker
TINY_CAMPAIGN = ["--set", "campaign.runs.0.runs=2", "--set", "campaign.runs.0.events=500",
                 "--set", "campaign.runs.1.runs=1", "--set", "campaign.runs.1.events=200",
                 "--set", "campaign.executor={kind: local, workers: 1, processes: false}"]
DASK_LINES = re.compile(r"Scheduler|Nanny|Register worker|Receive client connection|Lost all workers")


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_version_prints_the_installed_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == f"rarefy {version('rarefy')}"


@pytest.fixture
def legend_copy(legend_dir, tmp_path) -> Path:
    shutil.copytree(legend_dir, tmp_path / "legend")
    return tmp_path / "legend" / "legend.yaml"


def test_set_overrides_reach_the_job_and_the_saved_config(legend_copy, tmp_path):
    run = tmp_path / "run"
    res = runner.invoke(app, ["fit", str(legend_copy), "--out", str(run), "--set", "surrogate.restarts=1",
                              "--set", "name=overridden", "--set", "fidelities.hf.cost_cpu_h=99",
                              "--set", "space.parameters.length.high=160", "--set", "name=twice"])
    assert res.exit_code == 0, res.output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["name"] == "twice"  # the later --set wins
    assert saved["surrogate"]["restarts"] == 1
    assert saved["fidelities"][1]["cost_cpu_h"] == 99
    assert saved["space"]["parameters"]["length"]["high"] == 160
    assert yaml.safe_load(legend_copy.read_text())["name"] == "legend"  # the file itself is untouched


@pytest.mark.parametrize("override, pattern", [
    ("campaign.seed=3", r"override 'campaign.seed=3': campaign: Input should be a valid dictionary|"
                        r"override 'campaign.seed=3': campaign.* Extra inputs are not permitted"),
    ("surrogate.kind=gp", r"override 'surrogate.kind=gp': surrogate.kind: Input should be 'ar1' or 'pce'"),
    ("surrogate.restarts=many", r"override 'surrogate.restarts=many': surrogate.restarts: Input should be a valid"),
    ("surrogate.kernal=rbf", r"override 'surrogate.kernal=rbf': surrogate.kernal: Extra inputs are not permitted"),
    ("fidelities.mf.events=3", r"override 'fidelities.mf.events=3': fidelities has no item 'mf'; .*\['lf', 'hf'\]"),
    ("fidelities.7.events=3", r"override 'fidelities.7.events=3': fidelities has 2 item\(s\), no index 7"),
    ("seed.value=1", r"override 'seed.value=1': seed is 0, not a mapping or list"),
    ("space.parameters.radius.high=-5", r"override 'space.parameters.radius.high=-5': space: parameter 'radius'"),
    ("seed", r"override 'seed' is not KEY=VALUE"),
])
def test_a_bad_override_is_one_line_exit_2(legend_copy, tmp_path, override, pattern):
    run = tmp_path / "run"
    res = runner.invoke(app, ["fit", str(legend_copy), "--out", str(run), "--set", override])
    assert res.exit_code == 2, res.output
    line = one_line(res.stderr)
    assert re.search(pattern, line), line
    assert not run.exists()


@pytest.mark.parametrize("command", [
    ["simulate", "CONFIG", "--out", "RUN"], ["train", "CONFIG", "--run", "RUN"], ["run", "CONFIG", "--out", "RUN"],
    ["infer", "CONFIG", "--out", "RUN"], ["bench", "CONFIG", "--out", "RUN"],
    ["generate", "train", "CONFIG", "--run", "RUN"],
])
def test_every_config_command_takes_set(command, tmp_path):
    args = [str(MODERATOR) if a == "CONFIG" else str(tmp_path / "run") if a == "RUN" else a for a in command]
    res = runner.invoke(app, [*args, "--set", "surrogate.kind=gp"])
    assert res.exit_code == 2, res.output
    assert "override 'surrogate.kind=gp': surrogate.kind" in one_line(res.stderr)


def test_simulate_prints_no_dask_info_lines_by_default(tmp_path):
    res = runner.invoke(app, ["simulate", str(MODERATOR), "--out", str(tmp_path / "run"), *TINY_CAMPAIGN])
    assert res.exit_code == 0, res.output
    assert "campaign finished: 3 done" in res.stderr  # rarefy's own INFO lines stay
    assert not DASK_LINES.search(res.stderr), res.stderr


def test_simulate_with_v_shows_dask_info_lines(tmp_path):
    res = runner.invoke(app, ["-v", "simulate", str(MODERATOR), "--out", str(tmp_path / "run"), *TINY_CAMPAIGN])
    assert res.exit_code == 0, res.output
    assert DASK_LINES.search(res.stderr), res.stderr
