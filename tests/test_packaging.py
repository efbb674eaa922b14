"""Packaging: every third-party import of src/rarefy is declared in pyproject.toml, optional ones go through
rarefy.optional.require and name the extra that installs them."""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from rarefy.errors import InputError
from rarefy.optional import EXTRAS, require

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "rarefy"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
NOT_RUNTIME = {"test", "docs", "all"}  # extras that rarefy's modules must not need
# import name -> distribution, for modules that are not installed here (packages_distributions() knows the rest)
KNOWN = {"cosmic": "cosmic-popsynth", "yaml": "PyYAML", "sklearn": "scikit-learn", "GPy": "GPy"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def declared() -> dict[str, set[str]]:
    """Distribution -> where pyproject declares it ("" for the dependencies, else the extras), with the
    requirements that a declared ``dist[extra]`` pulls in."""
    out: dict[str, set[str]] = {}

    def add(text: str, where: str) -> None:
        req = Requirement(text)
        if norm(req.name) == "rarefy":
            return  # 'all' = rarefy[...]: the extras themselves are listed
        out.setdefault(norm(req.name), set()).add(where)
        for extra in req.extras:  # dask[distributed] declares distributed too
            for sub in md.requires(req.name) or []:
                r = Requirement(sub)
                if r.marker is not None and r.marker.evaluate({"extra": extra}):
                    out.setdefault(norm(r.name), set()).add(where)

    for text in PYPROJECT["dependencies"]:
        add(text, "")
    for extra, reqs in PYPROJECT["optional-dependencies"].items():
        for text in reqs:
            add(text, extra)
    return out


def imports(path: Path) -> list[tuple[str, int]]:
    """(top-level module, line) of every absolute import in a file, also inside functions and TYPE_CHECKING."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def required(path: Path) -> list[tuple[str, int]]:
    """(top-level module, line) of every ``require("module", ...)`` call with a literal name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "require"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.args[0].value.split(".")[0], node.lineno))
    return found


@functools.cache
def installed() -> dict[str, list[str]]:
    return md.packages_distributions()


def distribution(module: str) -> str:
    dists = installed().get(module) or [KNOWN.get(module, module)]
    return norm(dists[0])


def third_party() -> list[tuple[str, str, int]]:
    """(module, file, line) of every import of a package other than the standard library and rarefy."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for module, line in imports(path):
            if module not in sys.stdlib_module_names and module not in ("rarefy", "__future__"):
                out.append((module, str(path.relative_to(ROOT)), line))
    return out


def test_every_import_is_declared():
    decl = declared()
    missing = [f"{file}:{line} imports {module} (distribution {distribution(module)})"
               for module, file, line in third_party()
               if not decl.get(distribution(module), set()) - NOT_RUNTIME]
    assert missing == []


def test_optional_modules_are_imported_through_require():
    direct = [f"{file}:{line} imports {module}; use rarefy.optional.require({module!r})"
              for module, file, line in third_party() if module in EXTRAS]
    assert direct == []
    # and a core dependency never needs require()
    for path in sorted(PACKAGE.rglob("*.py")):
        for module, line in required(path):
            assert module in EXTRAS, f"{path.relative_to(ROOT)}:{line}: require({module!r}) of an unlisted module"


def test_extras_install_what_rarefy_optional_names():
    decl = declared()
    extras = PYPROJECT["optional-dependencies"]
    for module, extra in EXTRAS.items():
        assert extra in extras, f"{module}: pyproject has no extra {extra!r}"
        assert extra in decl.get(distribution(module), set()), \
            f"{module} ({distribution(module)}) is not in the {extra!r} extra"
    assert {"zoo", "nest", "cosmic", "slurm", "root", "bench", "all"} <= set(extras)
    listed = set(re.search(r"\[(.*)\]", extras["all"][0]).group(1).split(","))
    # omnifold: the TensorFlow reference stack of benchmarks/unfold_omnifold.py, kept out of `all` (and CI)
    assert set(extras) - {"all", "docs", "omnifold"} <= listed, "the 'all' extra misses an extra"
    assert "omnifold" not in listed, "TensorFlow must stay out of the 'all' extra"


def test_the_checker_sees_an_undeclared_import(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("import os\nimport numpy as np\ndef f():\n    from requests import get\n"
                   "    lgb = require('lightgbm')\n")
    assert imports(mod) == [("os", 1), ("numpy", 2), ("requests", 4)]
    assert required(mod) == [("lightgbm", 5)]
    assert "requests" not in declared() and "numpy" in declared()


@pytest.mark.parametrize("module, extra", sorted(EXTRAS.items()))
def test_a_missing_extra_is_one_line_naming_it(monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(InputError) as err:
        require(module)
    assert str(err.value) == f"{module} is not installed: pip install 'rarefy[{extra}]'"


def test_features_that_need_an_extra_say_which(monkeypatch, tmp_path):
    from rarefy.config import SlurmExecutorConfig
    from rarefy.campaign.executors import open_executor
    from rarefy.data.event_readers import read_events

    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    with pytest.raises(InputError, match=r"^dask_jobqueue is not installed: pip install 'rarefy\[slurm\]'$"):
        with open_executor(SlurmExecutorConfig(kind="slurm")):
            pass
    monkeypatch.setitem(sys.modules, "uproot", None)
    (tmp_path / "ev.root").write_bytes(b"")
    with pytest.raises(InputError, match=r"ev.root: reading ROOT files: uproot is not installed: "
                                         r"pip install 'rarefy\[root\]'$"):
        read_events(tmp_path / "ev.root", theta=[])
    monkeypatch.setitem(sys.modules, "nestpy", None)
    from rarefy.simulators import get

    with pytest.raises(InputError, match=r"^nestpy is not installed: pip install 'rarefy\[nest\]'$"):
        get("xlzd").simulate({"drift_field": 300.0, "gas_field": 8.0, "g1": 0.12, "e_lifetime": 5000.0}, 10, "lf", 0)
