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
    variance: str | None = None
    counts: str | None = None
    events: str | None = None

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
    value: str
    value_unit: str = Field(default="", description="unit of the value column, shown on plots and in tables "
                                                    "('' for none)")
    filter: dict[str, Any] = Field(default_factory=dict)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    cost_cpu_h: float | None = Field(default=None, ge=0, description="nominal cost of one run, CPU-hours")
    cost_cpu_h_per_event: float | None = Field(
        default=None, ge=0, description="campaigns: nominal cost of one event, CPU-hours (default: the simulator's)")
    events: int | None = Field(default=None, ge=1, le=MAX_EVENTS, description="campaigns: default number of events of one run")


class DataConfig(ConfigModel):
    """Input rate files and the column mapping (file column name -> rarefy name)."""

    paths: list[Path]
    columns: dict[str, str] = Field(default_factory=dict)

    @field_validator("paths", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, (str, os.PathLike)) else v
