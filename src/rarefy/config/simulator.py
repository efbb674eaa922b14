"""Simulator section: which simulator a campaign drives and how its event files map to columns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .base import ConfigModel

__all__ = ["EventColumnsConfig", "SimulatorConfig"]


class EventColumnsConfig(ConfigModel):
    """How event files map to rarefy's event columns (file column -> rarefy name, then θ/φ/outcome/weight).

    ``phi: null`` takes every remaining numeric column as φ; ``key`` names the HDF5
    key/group or ROOT TTree where a file holds several.
    """

    columns: dict[str, str] = Field(default_factory=dict)
    theta: list[str] = Field(default_factory=list)
    phi: list[str] | None = None
    outcome: str = "outcome"
    weight: str | None = None
    key: str | None = None


class SimulatorConfig(ConfigModel):
    """Which simulator a campaign drives.

    - ``kind: builtin``: ``name`` from :func:`rarefy.simulators.get` (e.g. ``moderator``);
    - ``kind: python``: ``target`` is an import path ``package.module:attribute`` naming a
      function ``f(theta, n, fidelity, seed, **options)``, or a class / factory called with
      ``options`` that returns an object with ``simulate``;
    - ``kind: command``: ``command`` is an argument list (no shell) whose items are
      ``str.format`` templates with ``{n}``, ``{seed}``, ``{fidelity}``, ``{output}``,
      ``{run_id}`` and ``{theta[NAME]}``; the command writes ``output`` (CSV, Parquet,
      HDF5 or ROOT, by suffix) which is read back with ``events``.
    """

    kind: Literal["builtin", "python", "command"] = "builtin"
    name: str | None = None
    target: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    command: list[str] | None = None
    output: str = "events.parquet"
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0, description="wall-clock limit of one request, seconds")
    events: EventColumnsConfig = Field(default_factory=EventColumnsConfig)

    @model_validator(mode="after")
    def _fields_for_kind(self) -> "SimulatorConfig":
        need = {"builtin": "name", "python": "target", "command": "command"}[self.kind]
        if not getattr(self, need):
            raise ValueError(f"a simulator of kind {self.kind!r} needs '{need}'")
        return self
