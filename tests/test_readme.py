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
