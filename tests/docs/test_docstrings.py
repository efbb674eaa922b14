"""The API reference's docstrings parse as numpydoc without warnings (the strict docs build needs it).

Prose after a ``Parameters`` section is read as more parameters; it belongs before the
section. Checks every object that docs/reference/api.md documents.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _documented() -> list[str]:
    return re.findall(r"^::: (\S+)", (ROOT / "docs" / "reference" / "api.md").read_text(), flags=re.M)


def test_api_reference_docstrings_parse_cleanly(caplog):
    griffe = pytest.importorskip("griffe")
    package = griffe.load("rarefy", search_paths=[str(ROOT / "src")], allow_inspection=False)
    names = _documented()
    assert len(names) > 20
    problems = []
    for name in names:
        obj = package[name.removeprefix("rarefy.")] if name != "rarefy" else package
        targets = [obj] + [m for m in obj.members.values()
                           if not m.is_alias and not m.name.startswith("_") and m.docstring is not None]
        for target in targets:
            if target.docstring is None:
                continue
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                target.docstring.parse("numpy")
            problems += [f"{target.path}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert not problems, "\n".join(problems)
