"""mkdocs hooks: pages generated at build time, so nothing in them is copied by hand.

- ``reference/config.md``: every section of the run config and of the ``rarefy anomaly`` and
  ``rarefy unfold`` configs, rendered from their pydantic schemas
  (``model_json_schema()``: fields, types, defaults, constraints, descriptions).
- ``reference/cli.md``: every ``rarefy`` command with its arguments and options, from the
  typer app.
- ``tutorial.md``: the percent-format script ``examples/legend/tutorial.py`` (``# %%``
  cells; ``# %% [markdown]`` cells are prose), the same file the tests execute.
- Sphinx roles in docstrings (``:func:`x```) are shown as plain code.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "examples" / "legend" / "tutorial.py"


# ---------------------------------------------------------------- config reference
def _rst_to_md(text: str) -> str:
    """Docstring / description text from RST-ish markup to Markdown."""
    text = re.sub(r":(?:class|func|meth|mod|attr|data|obj):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def _cell(text: str) -> str:
    """One Markdown table cell: no newlines, escaped pipes; ``<`` escaped outside code spans (inside them
    Markdown shows it as it is)."""
    parts = " ".join(_rst_to_md(text).split()).replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(parts))


def _anchor(name: str) -> str:
    return name.lower()


def _type(schema: dict[str, Any]) -> str:
    """A short, readable type for a JSON-schema node (links to models by anchor)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(name)})"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " \\| ".join(_type(s) for s in schema[key])
    kind = schema.get("type")
    if kind == "array":
        inner = _type(schema.get("items", {})) if schema.get("items") else "any"
        return f"list[{inner}]"
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"dict[str, {_type(extra)}]"
        return "mapping"
    if kind == "null":
        return "null"
    return {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}.get(kind, "any")


def _bounds(schema: dict[str, Any]) -> list[str]:
    out = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"),
                      ("minLength", "length ≥"), ("minItems", "items ≥")):
        if key in schema:
            out.append(f"{sign} {schema[key]}")
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key, []):
            out += _bounds(sub)
    return out


def _refs(schema: Any) -> list[str]:
    """Model names referenced anywhere below ``schema``, in order."""
    found: list[str] = []
    if isinstance(schema, dict):
        if "$ref" in schema:
            found.append(schema["$ref"].rsplit("/", 1)[-1])
        for value in schema.values():
            found += _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _refs(value)
    return found


def _factory_default(cls: Any, name: str) -> str:
    """The default of a field whose default comes from a factory (absent from the JSON schema)."""
    from pydantic import BaseModel

    field = getattr(cls, "model_fields", {}).get(name) if cls is not None else None
    if field is None or field.default_factory is None:
        return "(computed)"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return f"[{type(value).__name__}](#{_anchor(type(value).__name__)}) defaults"
    return f"`{json.dumps(value, ensure_ascii=False, default=str)}`"


def _fields_table(model: dict[str, Any], cls: Any = None) -> list[str]:
    required = set(model.get("required", []))
    lines = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, prop in model.get("properties", {}).items():
        typ = _type(prop)
        bounds = _bounds(prop)
        if bounds:
            typ += " (" + ", ".join(bounds) + ")"
        if name in required:
            default = "**required**"
        elif "default" in prop:
            default = f"`{json.dumps(prop['default'], ensure_ascii=False)}`"
        else:
            default = _factory_default(cls, name)
        lines.append(f"| `{name}` | {typ} | {default} | {_cell(prop.get('description', ''))} |")
    return lines


def config_reference() -> str:
    """The config reference page, rendered from the pydantic schemas of the run config and of the
    commands with their own config file (``rarefy anomaly``, ``rarefy unfold``)."""
    sys.path.insert(0, str(ROOT / "src"))
    import rarefy.config as config_module
    from pydantic import BaseModel
    from rarefy.config import AnomalyConfig, RunConfig, UnfoldConfig

    classes = {name: obj for name in dir(config_module)
               if isinstance(obj := getattr(config_module, name), type) and issubclass(obj, BaseModel)}
    lines = [
        "# Config reference",
        "",
        "Generated at build time from the pydantic schema "
        "(`rarefy.config.RunConfig.model_json_schema()`), so it always matches the code. "
        "A config is one YAML file; `rarefy.load_config(path)` validates it once and resolves "
        "relative paths against the file's folder. Unknown keys are errors. "
        "`rarefy anomaly` and `rarefy unfold` read their own config files "
        "([AnomalyConfig](#anomalyconfig-rarefy-anomaly), [UnfoldConfig](#unfoldconfig-rarefy-unfold)).",
        "",
    ]
    done: set[str] = set()
    for cls, title in ((RunConfig, "RunConfig (the file's top level)"), (AnomalyConfig, "AnomalyConfig (rarefy anomaly)"),
                       (UnfoldConfig, "UnfoldConfig (rarefy unfold)")):
        schema = cls.model_json_schema()
        defs = schema.get("$defs", {})
        lines += [f"## {title}", "", _rst_to_md(schema.get("description", "")), "", *_fields_table(schema, cls), ""]
        order: list[str] = []
        queue = _refs(schema.get("properties", {}))
        while queue:
            name = queue.pop(0)
            if name in order or name in done or name not in defs:
                continue
            order.append(name)
            queue += _refs(defs[name].get("properties", {}))
        for name in order:
            done.add(name)
            model = defs[name]
            lines += [f"## {name}", ""]
            if model.get("description"):
                lines += [_rst_to_md(model["description"]), ""]
            if model.get("properties"):
                lines += _fields_table(model, classes.get(name))
            lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line
def cli_reference() -> str:
    """The command-line reference page, rendered from the typer app's commands and options."""
    sys.path.insert(0, str(ROOT / "src"))
    import typer

    from rarefy.cli import app

    group = typer.main.get_command(app)
    lines = ["# Command line", "",
             "Generated at build time from the `rarefy` typer app. Every command has a Python "
             "equivalent (see the [Python API](api.md)). Bad input (a missing column, a NaN, an unknown "
             "fidelity, a design outside the bounds) prints one line naming the file, column and row "
             "to stderr and exits with code 2.", ""]
    top = [p for p in group.params if p.param_type_name == "option" and p.name != "help"]
    if top:
        lines += ["Options of `rarefy` itself, given before the command:", "",
                  "| option | help |", "|---|---|"]
        lines += [f"| `{', '.join(p.opts)}` | {_cell(getattr(p, 'help', None) or '')} |" for p in top]
        lines.append("")
    commands: dict[str, Any] = {}
    for name, cmd in group.commands.items():  # a group (rarefy generate) lists its subcommands
        subs = getattr(cmd, "commands", None)
        commands.update({f"{name} {sub}": c for sub, c in subs.items()} if subs else {name: cmd})
    lines += ["| command | what it does |", "|---|---|"]
    for name, cmd in commands.items():
        lines.append(f"| [`rarefy {name}`](#rarefy-{name.replace(' ', '-')}) | "
                     f"{_cell((cmd.help or '').splitlines()[0])} |")
    lines.append("")
    for name, cmd in commands.items():
        usage = " ".join(p.name.upper() + ("..." if p.nargs == -1 else "")
                         for p in cmd.params if p.param_type_name == "argument")
        lines += [f"## rarefy {name}", "", f"```\nrarefy {name} {usage} [OPTIONS]\n```", "",
                  _rst_to_md((cmd.help or "").strip()).replace("<", "&lt;"), "",
                  "| argument / option | help | default |", "|---|---|---|"]
        for param in cmd.params:
            label = param.name.upper() if param.param_type_name == "argument" else ", ".join(param.opts)
            default = "**required**" if param.required else (
                "" if param.default is None or callable(param.default) else f"`{param.default}`")
            lines.append(f"| `{label}` | {_cell(getattr(param, 'help', None) or '')} | {default} |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- tutorial
def percent_script_to_markdown(text: str) -> str:
    """A ``# %%`` percent-format script as Markdown: prose cells as text, code cells as Python blocks."""
    cells: list[tuple[str, list[str]]] = []
    kind, body = "code", []
    for line in text.splitlines():
        if line.startswith("# %%"):
            cells.append((kind, body))
            kind = "markdown" if "[markdown]" in line else "code"
            body = []
        else:
            body.append(line)
    cells.append((kind, body))
    out: list[str] = []
    for kind, body in cells:
        while body and not body[0].strip():
            body.pop(0)
        while body and not body[-1].strip():
            body.pop()
        if not body:
            continue
        if kind == "markdown":
            out += [re.sub(r"^# ?", "", line) for line in body] + [""]
        elif not body[0].startswith('"""'):  # the module docstring stays out of the page
            out += ["```python", *body, "```", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- hooks
def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "reference/config.md", content=config_reference()))
    files.append(File.generated(config, "reference/cli.md", content=cli_reference()))
    files.append(File.generated(config, "tutorial.md", content=percent_script_to_markdown(TUTORIAL.read_text())))
    return files


def on_page_content(html: str, **kwargs: Any) -> str:
    # Sphinx roles rendered by Markdown as ":func:<code>x</code>": keep the code only
    return re.sub(r":(?:class|func|meth|mod|attr|data|obj):(<code>)~?", r"\1", html)
