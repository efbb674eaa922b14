"""Product files speak of the product only: no issue numbers or work-log words.

Scans the text files under README.md, docs/, examples/, benchmarks/ and src/ for patterns
that only a work log would contain. The patterns are narrow on purpose: "stop" alone, or
``start_new_session`` (a subprocess argument), are legitimate.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCOPES = ["README.md", "CHANGELOG.md", "docs", "examples", "benchmarks", "src"]
SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".sh", ".rst", ".ini"}

FORBIDDEN = {
    "issue number": re.compile(r"\bissues?\s*#?\s*\d+", re.I),
    "ticket reference": re.compile(r"(?<![\w&/#:])#\d+(?!\w)"),
    "stop N": re.compile(r"\bstop\s+\d+", re.I),
    "session": re.compile(r"(?<!\w)sessions?\b", re.I),
    "coming:": re.compile(r"\bcoming\s*:", re.I),
    "wave N": re.compile(r"\bwaves?\s+\d+", re.I),
    "work log": re.compile(r"\bwork[- ]?log\b", re.I),
}


def _product_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *SCOPES],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
        files = [ROOT / f for f in out]
    except (OSError, subprocess.CalledProcessError):
        files = [p for s in SCOPES for p in ([ROOT / s] if (ROOT / s).is_file() else (ROOT / s).rglob("*"))]
    return [f for f in files if f.is_file() and (f.suffix in SUFFIXES or f.name == "README")]


def test_patterns_catch_work_log_text():
    hits = {name for name, rx in FORBIDDEN.items()
            for text in ("fixed in issue #12", "see #34", "after stop 3", "this session", "coming: CNP", "wave 2")
            if rx.search(text)}
    assert hits == set(FORBIDDEN) - {"work log"}
    assert not any(rx.search("start_new_session=True; stop the campaign; color #1f77b4; color:#222; # 1 comment")
                   for rx in FORBIDDEN.values())


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_no_work_log_words_in_product_files(name):
    rx = FORBIDDEN[name]
    found = []
    for path in _product_files():
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if rx.search(line):
                found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    assert not found, f"{name}:\n" + "\n".join(found)


#: names that say the wrong thing about a model: the factorised per-event classifier that the
#: examples use reads no context, so it is no conditional neural process (CNP)
MISNOMERS = {
    "CNP denoiser": re.compile(r"\bCNP[- ]denoiser", re.I),
    "factorised CNP": re.compile(r"\bfactori[sz]ed CNP\b", re.I),
}


def test_misnomer_patterns():
    assert all(rx.search(t) for rx, t in zip(MISNOMERS.values(), ("train the CNP denoiser", "a factorised CNP")))
    assert not any(rx.search("the denoiser's conditional neural process; FactorisedCNP = FactorisedClassifier")
                   for rx in MISNOMERS.values())


@pytest.mark.parametrize("name", sorted(MISNOMERS))
def test_models_are_named_for_what_they_are(name):
    rx = MISNOMERS[name]
    found = [f"{path.relative_to(ROOT)}:{i}: {line.strip()[:100]}" for path in _product_files()
             for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if rx.search(line)]
    assert not found, f"{name}:\n" + "\n".join(found)
