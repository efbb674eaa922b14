"""The package's shape: no import cycles between rarefy's modules, no imports of another module's private names.

Every ``import`` and ``from ... import`` in src/rarefy counts, also those inside functions (a lazy import is still
a dependency); imports under ``if TYPE_CHECKING:`` are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "rarefy"


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        mods[".".join(parts)] = (path, is_pkg)
    return mods


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, name: str, is_pkg: bool):
    """Yield (target module, imported name or None) for every import in the file, TYPE_CHECKING blocks excluded."""
    base = name.split(".") if is_pkg else name.split(".")[:-1]

    def visit(node: ast.AST):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                yield from (x for stmt in child.orelse for x in visit(ast.Module(body=[stmt], type_ignores=[])))
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    anchor = base[: len(base) - (child.level - 1)]
                    target = ".".join(anchor + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                for alias in child.names:
                    yield target, alias.name
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, None
            yield from visit(child)

    yield from visit(ast.parse(path.read_text(), filename=str(path)))


def _graph():
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private: list[str] = []
    for name, (path, is_pkg) in mods.items():
        for target, imported in _imports(path, name, is_pkg):
            if not target.startswith("rarefy"):
                continue
            full = f"{target}.{imported}" if imported else None
            if full in mods:  # `from package import module`
                edges[name].add(full)
                continue
            if target in mods and target != name:
                edges[name].add(target)
            if imported and imported.startswith("_") and not imported.startswith("__") and target != name:
                private.append(f"{name} imports {imported} from {target}")
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles():
    edges, _ = _graph()
    assert _cycles(edges) == []


def test_no_imports_of_private_names():
    _, private = _graph()
    assert private == []


def test_the_checker_sees_a_cycle_and_a_private_import(tmp_path):
    edges = {"rarefy.a": {"rarefy.b"}, "rarefy.b": {"rarefy.c"}, "rarefy.c": {"rarefy.a"}, "rarefy.d": set()}
    assert _cycles(edges) == [["rarefy.a", "rarefy.b", "rarefy.c"]]
    mod = tmp_path / "m.py"
    mod.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .x import _Hidden\n"
                   "def f():\n    from ..y import _secret\n")
    found = list(_imports(mod, "rarefy.pkg.m", False))
    assert found == [("typing", "TYPE_CHECKING"), ("rarefy.y", "_secret")]


@pytest.mark.parametrize("layer, forbidden", [
    ("rarefy.config", ("rarefy.surrogate", "rarefy.denoise", "rarefy.zoo", "rarefy.nn", "rarefy.jobs",
                       "rarefy.campaign", "rarefy.acquisition", "rarefy.report", "rarefy.inference")),
    ("rarefy.nn", ("rarefy.config", "rarefy.denoise", "rarefy.zoo", "rarefy.jobs")),
    ("rarefy.surrogate", ("rarefy.jobs", "rarefy.acquisition", "rarefy.optim", "rarefy.campaign", "rarefy.cli")),
    ("rarefy.optim", ("rarefy.surrogate", "rarefy.jobs", "rarefy.acquisition")),
    ("rarefy.acquisition", ("rarefy.jobs", "rarefy.campaign", "rarefy.cli", "rarefy.report")),
    ("rarefy.campaign", ("rarefy.jobs", "rarefy.surrogate", "rarefy.acquisition", "rarefy.cli")),
    ("rarefy.zoo", ("rarefy.jobs", "rarefy.cli", "rarefy.campaign")),
    ("rarefy.denoise", ("rarefy.jobs", "rarefy.cli", "rarefy.zoo")),
    ("rarefy.data", ("rarefy.jobs", "rarefy.surrogate", "rarefy.campaign", "rarefy.cli")),
])
def test_lower_layers_do_not_import_higher_ones(layer, forbidden):
    edges, _ = _graph()
    bad = sorted(f"{m} -> {t}" for m, targets in edges.items() if m == layer or m.startswith(layer + ".")
                 for t in targets if any(t == f or t.startswith(f + ".") for f in forbidden))
    assert bad == []
