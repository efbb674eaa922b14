"""Data sections: input rate files and column mapping, fidelities and their noise sources."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from .base import MAX_EVENTS, ConfigModel

__all__ = ["NoiseConfig", "FidelityConfig", "DataConfig"]


class NoiseConfig(ConfigModel):
    """Where a fidelity's per-point noise variance comes from (at most one source).

    - ``std``: a column holding the 1σ error of the value;
    - ``variance``: a column holding the noise variance;
    - ``counts``: a column of signal counts k; var = value² / k (Poisson/binomial), with
      the k = 0 rule of :func:`rarefy.data.count_variance`; ``events`` optionally names
      the column of events thrown n, used for k = 0;
    - none of them: the value is taken as exact (the surrogate may still learn a nugget).
    """

    std: str | None = None
    """column holding the 1σ error of the value (in the value's unit)"""
    variance: str | None = None
    """column holding the noise variance of the value (in the value's unit, squared)"""
    counts: str | None = None
    """column of signal counts k; variance = value² / k (Poisson/binomial)"""
    events: str | None = None
    """column of events thrown n, used for k = 0 (only together with ``counts``)"""

    @model_validator(mode="after")
    def _one_source(self) -> "NoiseConfig":
        given = [k for k in ("std", "variance", "counts") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of std / variance / counts, got {given}")
        if self.events is not None and self.counts is None:
            raise ValueError("'events' only makes sense together with 'counts'")
        return self


class FidelityConfig(ConfigModel):
    """One fidelity: which rows (``filter``: column -> value or list of values), which value column.

    ``value_unit`` is the unit of the value column (the rate), e.g. ``1/neutron`` for k/n of
    simulated neutrons or ``nuc/(kg yr)``; it labels plot axes and report tables. Default
    ``""``: no unit is shown (a plain number, such as a fraction of events).
    """

    name: str
    """name of the fidelity (used by ``target``, campaign blocks, acquisition, ...)"""
    value: str
    """column holding the fidelity's value (the rate)"""
    value_unit: str = ""
    """unit of the value column, shown on plots and in tables ('' for none)"""
    filter: dict[str, Any] = Field(default_factory=dict)
    """rows of this fidelity: column -> value or list of values"""
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    """where the per-point noise variance comes from (default: none, the value is exact)"""
    cost_cpu_h: float | None = Field(default=None, ge=0)
    """nominal cost of one run, CPU-hours"""
    cost_cpu_h_per_event: float | None = Field(default=None, ge=0)
    """campaigns: nominal cost of one event, CPU-hours (default: the simulator's)"""
    events: int | None = Field(default=None, ge=1, le=MAX_EVENTS)
    """campaigns: default number of events of one run"""


class DataConfig(ConfigModel):
    """Input rate files and the column mapping (file column name -> rarefy name)."""

    paths: list[Path]
    """input rate files (``.csv`` or ``.parquet``), relative to the config's folder; one path or a list"""
    columns: dict[str, str] = Field(default_factory=dict)
    """column renames: file column name -> rarefy name"""

    @field_validator("paths", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, (str, os.PathLike)) else v
