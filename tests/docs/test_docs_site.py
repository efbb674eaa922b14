"""The documentation site's generated pages: the config reference and the tutorial page."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rarefy.config import RunConfig

ROOT = Path(__file__).resolve().parents[2]


def _hooks():
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_covers_every_section_and_model():
    page = _hooks().config_reference()
    schema = RunConfig.model_json_schema()
    for field in schema["properties"]:
        assert f"| `{field}` |" in page, field
    for model in schema["$defs"]:
        assert f"## {model}\n" in page, model
    surrogate = schema["$defs"]["SurrogateConfig"]["properties"]
    assert "rho_prior" in surrogate and "scale s of a Normal(1, s) prior" in page


def test_cli_reference_covers_every_command_and_option():
    import typer

    from rarefy.cli import app

    page = _hooks().cli_reference()
    commands = {}
    for name, command in typer.main.get_command(app).commands.items():   # a group: its subcommands
        subs = getattr(command, "commands", None)
        commands.update({f"{name} {s}": c for s, c in subs.items()} if subs else {name: command})
    assert "generate train" in commands
    for name, command in commands.items():
        assert f"## rarefy {name}\n" in page, name
        for param in command.params:
            label = param.name.upper() if param.param_type_name == "argument" else ", ".join(param.opts)
            assert f"| `{label}` |" in page, (name, label)


def test_tutorial_page_renders_prose_and_code():
    page = _hooks().percent_script_to_markdown((ROOT / "examples" / "legend" / "tutorial.py").read_text())
    assert page.startswith("# Tutorial")
    assert "```python\nsuggestions = rarefy.suggest(" in page
    assert '"""' not in page.split("```python", 1)[0]


def test_nav_pages_exist():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))
    generated = {"reference/config.md", "reference/cli.md", "tutorial.md"}

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from pages(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)

    for page in pages(config["nav"]):
        assert page in generated or (ROOT / "docs" / page).exists(), page
