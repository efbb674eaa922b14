"""The README's Python tour runs as written (from a copy of the examples, in a scratch folder)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_tour_runs(tmp_path, monkeypatch):
    blocks = _python_blocks((ROOT / "README.md").read_text())
    assert blocks, "the README has no Python tour"
    shutil.copytree(ROOT / "examples" / "legend", tmp_path / "examples" / "legend")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the project's own README
    import rarefy

    assert callable(rarefy.validate) and callable(rarefy.fit)
    assert (tmp_path / "runs" / "legend" / "validate.json").exists()
    assert 0.0 <= namespace["report"].metrics["coverage_2sigma"] <= 1.0


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move details into docs/"


def test_readme_table_lists_every_cli_command():
    import typer

    from rarefy.cli import app

    commands = sorted(typer.main.get_command(app).commands)
    assert len(commands) >= 12
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `rarefy ")]
    listed = {re.match(r"\| `rarefy ([a-z-]+)", row).group(1) for row in rows}
    missing = [c for c in commands if c not in listed]
    assert not missing, f"commands missing from the README's command table: {missing}"


# small settings for the README's commands, so that they run in seconds; everything else as written
_LOOP = ["loop.iterations=1", "loop.batch=2", "loop.verify.runs=1", "loop.verify.max_runs=2", "campaign.runs.0.runs=12",
         "campaign.runs.1.runs=3", "fidelities.hf.events=40000", "acquisition.candidates=128",
         "acquisition.reference=16", "optimize.candidates=256", "optimize.starts=2"]
SMALL = {
    "run.yaml": _LOOP + ["fidelities.lf.events=20000"],
    "run-denoised.yaml": _LOOP + ["fidelities.lf-denoised.events=20000", "campaign.runs.0.events=20000",
                                  "surrogate.restarts=1", "denoise.ensemble=1", "denoise.batches_per_epoch=5",
                                  "denoise.batch_size=512", "denoise.imbalance.0.epochs=1",
                                  "denoise.imbalance.0.positive_ratio=0.01"],
}


def _small(args: list[str]) -> list[str]:
    """``--set`` overrides that shrink a README command's config (by the config's file name)."""
    for name, sets in SMALL.items():
        if any(a.endswith(name) for a in args):
            return [w for s in sets for w in ("--set", s)]
    return []


def _cli_lines(text: str) -> list[list[str]]:
    """The ``rarefy ...`` commands of the README's bash blocks (``pip install`` steps left out)."""
    import shlex

    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            for part in line.split("#")[0].split("&&"):
                words = shlex.split(part)
                if words and words[0] == "rarefy":
                    commands.append(words[1:])
    return commands


def test_readme_cli_commands_run(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rarefy.cli import app

    commands = _cli_lines((ROOT / "README.md").read_text())
    assert {c[0] for c in commands} >= {"run", "fit", "validate"}, commands
    for name in ("legend", "moderator"):
        shutil.copytree(ROOT / "examples" / name, tmp_path / "examples" / name)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for args in commands:
        args = ["2" if a == "5" and i and args[i - 1] == "--cv" else a for i, a in enumerate(args)]
        res = runner.invoke(app, [*args, *_small(args)])
        assert res.exit_code == 0, f"rarefy {' '.join(args)}: {res.output}"
    assert (tmp_path / "runs" / "moderator" / "report" / "index.html").exists()
    assert (tmp_path / "runs" / "legend" / "validate.json").exists()
