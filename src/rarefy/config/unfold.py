"""Unfold section: ``rarefy unfold`` (the true distribution behind measured, detector-folded events).

Given as its own YAML file (see :func:`rarefy.config.load.load_unfold_config`)::

    seed: 0
    data: {simulation: sim.parquet, data: data.parquet, gen: [x], rec: [y], pass: passed, weight: w}
    # or, instead of data, a known-truth case:
    # case: {kind: gaussian, n_sim: 20000, n_data: 5000}
    # case: {kind: xlzd, n_sim: 20000, n_data: 5000, drift_field: 200}
    methods:
      ibu: {iterations: 4}
      omnifold: {}
    bins: 20
    edges: {x: [-2.6, -2.2, ..., 4.6]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from .base import MAX_EVENTS, MAX_SAMPLES, MAX_SEED, ConfigModel

__all__ = ["UnfoldConfig", "UnfoldDataConfig", "GaussianCaseConfig", "XLZDCaseConfig"]

_Events = Annotated[int, Field(ge=10, le=MAX_EVENTS)]


class UnfoldDataConfig(ConfigModel):
    """Simulated and measured events from CSV or Parquet files."""

    simulation: Path
    """simulated events (relative to the config): the ``gen`` and ``rec`` columns, every simulated event,
    passed or not"""
    data: Path
    """measured events (relative to the config): the ``rec`` columns; every row passed"""
    gen: list[str] = Field(min_length=1)
    """generation-level columns of the simulation (the ones unfolded)"""
    rec: list[str] = Field(min_length=1)
    """reconstructed columns, in both files"""
    pass_: str | None = Field(default=None, alias="pass")
    """optional column of the simulation: 1 (or true) where the event passed reconstruction; default: the
    rows whose ``rec`` values are all finite"""
    weight: str | None = None
    """optional event-weight column, in both files (non-negative, finite)"""

    @model_validator(mode="after")
    def _check(self) -> "UnfoldDataConfig":
        both = set(self.gen) & set(self.rec)
        if both:
            raise ValueError(f"column {sorted(both)[0]!r} is both a gen and a rec column")
        return self


class GaussianCaseConfig(ConfigModel):
    """The Gaussian toy of :class:`rarefy.unfold.toy.GaussianToy` (one column ``x``, arbitrary unit)."""

    kind: Literal["gaussian"]
    n_sim: _Events = 20_000
    """simulated events (passed or not)"""
    n_data: _Events = 5_000
    """measured events (passed)"""
    mu: float = 1.0
    """truth mean"""
    sigma: float = Field(default=1.2, gt=0)
    """truth width"""
    prior_mu: float = 0.5
    """simulation prior mean"""
    prior_sigma: float = Field(default=1.0, gt=0)
    """simulation prior width"""
    smear: float = Field(default=0.5, gt=0)
    """Gaussian resolution"""
    eff_low: float = Field(default=0.5, gt=0, le=1)
    """efficiency far below ``eff_center``"""
    eff_high: float = Field(default=0.9, gt=0, le=1)
    """efficiency far above ``eff_center``"""
    eff_center: float = 0.0
    """centre of the efficiency's logistic step"""
    eff_scale: float = Field(default=1.0, gt=0)
    """scale of the efficiency's logistic step"""


class XLZDCaseConfig(ConfigModel):
    """XLZD's ER energy spectrum through NEST, :class:`rarefy.unfold.xlzd.XLZDCase` (needs the ``nest`` extra)."""

    kind: Literal["xlzd"]
    n_sim: _Events = 20_000
    """simulated events (passed or not)"""
    n_data: _Events = 5_000
    """measured events (passed)"""
    drift_field: float = Field(default=200.0, ge=10, le=4000)
    """drift field (V/cm)"""
    gas_field: float = Field(default=8.5, gt=0, le=20)
    """extraction field (kV/cm)"""
    g1: float = Field(default=0.12, gt=0, le=1)
    """photon detection efficiency (phd/photon)"""
    e_lifetime: float = Field(default=8000.0, gt=0, le=1e6)
    """electron lifetime (µs)"""
    e_low: float = Field(default=2.0, gt=0)
    """lower end of the ER spectrum (keV)"""
    e_high: float = Field(default=13.0, gt=0)
    """upper end of the ER spectrum (keV)"""
    tilt: float = Field(default=0.5, gt=0)
    """truth continuum: density at ``e_high`` / density at ``e_low``"""
    peak_kev: float = 5.2
    """truth peak position (keV)"""
    peak_sigma: float = Field(default=0.6, gt=0)
    """truth peak width (keV)"""
    peak_fraction: float = Field(default=0.2, ge=0, le=1)
    """fraction of truth events in the peak"""

    @model_validator(mode="after")
    def _check(self) -> "XLZDCaseConfig":
        if not self.e_low < self.e_high:
            raise ValueError(f"need e_low < e_high, got {self.e_low} and {self.e_high} keV")
        return self


class UnfoldConfig(ConfigModel):
    """``rarefy unfold``: unfold ``data`` (or a known-truth ``case``) with each of ``methods``."""

    data: UnfoldDataConfig | None = None
    """events from files (exactly one of data and case)"""
    case: Annotated[Union[GaussianCaseConfig, XLZDCaseConfig], Field(discriminator="kind")] | None = None
    """a known-truth case: ``gaussian`` or ``xlzd`` (exactly one of data and case)"""
    methods: dict[str, dict[str, Any] | None] = Field(min_length=1)
    """method name (``ibu``, ``omnifold``, ``flow``, ``likelihood``) -> its settings (checked when the config
    is loaded; an ``ibu`` without ``edges``, ``range`` or ``bins`` uses the histogram edges of its column)"""
    bins: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)
    """equal histogram bins per gen column where ``edges`` gives none (default: the case's own binning, 20 for
    files, over the 0.5–99.5 % quantiles of the simulation)"""
    edges: dict[str, list[float]] = Field(default_factory=dict)
    """histogram edges per gen column (increasing, in the column's unit)"""
    plots: bool = True
    """write ``unfold_<column>.png``"""
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    """random seed (the case's events and every method)"""

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any] | None]:
        from ..unfold.registry import build_method

        for name, settings in value.items():
            build_method(name, settings)
        return value

    @field_validator("edges")
    @classmethod
    def _edges(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        for col, e in value.items():
            if len(e) < 2 or any(b <= a for a, b in zip(e, e[1:])):
                raise ValueError(f"{col}: need at least two increasing edges, got {e}")
        return value

    @model_validator(mode="after")
    def _check(self) -> "UnfoldConfig":
        if (self.data is None) == (self.case is None):
            raise ValueError("give exactly one of 'data' and 'case'")
        gen = self.gen_columns()
        for col in self.edges:
            if col not in gen:
                raise ValueError(f"edges: {col!r} is not a gen column (have {', '.join(gen)})")
        return self

    def gen_columns(self) -> list[str]:
        """The generation-level columns."""
        if self.data is not None:
            return list(self.data.gen)
        assert self.case is not None
        return ["x"] if self.case.kind == "gaussian" else ["energy_kev"]
