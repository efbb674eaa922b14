"""Bench section: the backends ``rarefy bench`` trains and scores on one by-run split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .base import MAX_PARALLEL, MAX_SAMPLES, MAX_SEED, ConfigModel

__all__ = ["BenchBackendConfig", "BenchImbalanceConfig", "BenchConfig"]


class BenchBackendConfig(ConfigModel):
    """One backend of ``rarefy bench``: registry ``name`` (or ``custom`` with ``import_path``), options, label.

    ``label`` is its key in ``bench.json`` (default: ``name``; labels must be unique, so the
    same backend can be benched with two option sets). ``options`` go to the backend's
    constructor ``Cls(seed=..., **options)``.
    """

    name: str
    """registry name of the backend, or ``custom`` (with ``import_path``)"""
    label: str | None = None
    """key of the backend in ``bench.json`` (default: ``name``; unique)"""
    import_path: str | None = None
    """custom: the backend class, ``package.module:Class``"""
    options: dict[str, Any] = Field(default_factory=dict)
    """keyword options of the backend's constructor ``Cls(seed=..., **options)``"""

    @model_validator(mode="after")
    def _known(self) -> "BenchBackendConfig":
        # names are checked against the backend registry by the bench job before any work
        if self.name == "custom":
            if not self.import_path:
                raise ValueError("backend 'custom' needs an 'import_path' ('package.module:Class')")
        elif self.import_path is not None:
            raise ValueError(f"backend {self.name!r}: 'import_path' is only for 'custom' backends")
        if self.import_path is not None and (self.import_path.count(":") != 1 or not all(self.import_path.split(":"))):
            raise ValueError(f"import_path {self.import_path!r} must look like 'package.module:Class'")
        if self.label is None:
            self.label = self.name
        return self


class BenchImbalanceConfig(ConfigModel):
    """A rarer variant of the data: keep ``rate`` × events positives per split part, at least ``min_positives``.

    In each of train / val / test, round(``rate`` · n_part) positives (but at least the
    part's entry of ``min_positives`` = [train, val, test], and at most those there are)
    are kept at random and the other positives are dropped; background is untouched.
    The realised rates are written to ``bench_meta.json``.
    """

    rate: float = Field(gt=0, lt=1)
    """fraction of positives kept in each split part: round(rate · n_part) positives"""
    min_positives: list[Annotated[int, Field(ge=0, le=MAX_SAMPLES)]] = Field(default_factory=lambda: [5, 2, 5],
                                                                            min_length=3, max_length=3)
    """fewest positives kept in [train, val, test] (at most those there are)"""


class BenchConfig(ConfigModel):
    """``rarefy bench``: backends trained and scored on one by-run split (see :mod:`rarefy.jobs.bench`).

    Data: the finished runs of ``fidelities`` (default: the lowest) in ``run_dir`` (a
    directory written by ``rarefy simulate``, relative to the config); without ``run_dir``
    the config's ``campaign`` is simulated into ``OUT/events`` first (resumable). ``phi``:
    per-event columns used (default: the events' φ). ``split``: train / val / test
    fractions of the runs (by run, seeded). ``ece_bins`` / ``ece_binning`` (``mass``:
    equal-count bins, ``width``: equal-width bins of p). ``threads``: torch threads.
    """

    backends: list[BenchBackendConfig] = Field(min_length=1)
    """the backends trained and scored"""
    run_dir: Path | None = None
    """a run directory written by ``rarefy simulate``, relative to the config (default: the config's ``campaign``
    is simulated into ``OUT/events`` first)"""
    fidelities: list[str] | None = Field(default=None, min_length=1)
    """fidelities whose finished runs are used (default: the lowest one)"""
    phi: list[str] | None = Field(default=None, min_length=1)
    """per-event columns used (default: the events' φ)"""
    split: list[float] = Field(default_factory=lambda: [0.7, 0.1, 0.2], min_length=3, max_length=3)
    """train / val / test fractions of the runs (by run, seeded)"""
    imbalance: BenchImbalanceConfig | None = None
    """a rarer variant of the data (fewer positives kept)"""
    ece_bins: int = Field(default=15, ge=1, le=MAX_SAMPLES)
    """bins of the expected calibration error"""
    ece_binning: Literal["mass", "width"] = "mass"
    """``mass``: equal-count bins; ``width``: equal-width bins of p"""
    threads: int = Field(default=1, ge=1, le=MAX_PARALLEL)
    """torch threads"""
    save_models: bool = True
    """save each trained model, to ``DIR/backends/LABEL/model``"""
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    """random seed (default: the run config's ``seed``)"""

    @model_validator(mode="after")
    def _check(self) -> "BenchConfig":
        labels = [b.label for b in self.backends]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"backend labels must be unique, repeated: {dup} (give 'label')")
        if any(f < 0 for f in self.split) or self.split[0] <= 0 or self.split[2] <= 0:
            raise ValueError(f"split must be three fractions >= 0 with positive train and test shares, got {self.split}")
        return self
