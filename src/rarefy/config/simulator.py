"""Simulator section: which simulator a campaign drives and how its event files map to columns."""

from __future__ import annotations

from pathlib import Path
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
    """column renames of the event files: file column name -> rarefy name"""
    theta: list[str] = Field(default_factory=list)
    """the θ (design) columns; one the file lacks is filled from the run's design"""
    phi: list[str] | None = None
    """the per-event φ columns (null: every remaining numeric column)"""
    outcome: str = "outcome"
    """the 0/1 outcome column"""
    weight: str | None = None
    """the optional per-event weight column"""
    key: str | None = None
    """HDF5 key/group or ROOT TTree to read where a file holds several"""


class SimulatorConfig(ConfigModel):
    """Which simulator a campaign drives.

    - ``kind: builtin``: ``name`` from :func:`rarefy.simulators.get` (e.g. ``moderator``);
    - ``kind: python``: ``target`` is an import path ``package.module:attribute`` naming a
      function ``f(theta, n, fidelity, seed, **options)``, or a class / factory called with
      ``options`` that returns an object with ``simulate``;
    - ``kind: command``: ``command`` is an argument list (no shell) whose items are
      ``str.format`` templates with ``{n}``, ``{seed}``, ``{fidelity}``, ``{output}``,
      ``{run_id}`` and ``{theta[NAME]}``; the command writes ``output`` (CSV, Parquet,
      HDF5 or ROOT, by suffix) which is read back with ``events``;
    - ``kind: flow``: ``run`` is a run directory with a generator trained by ``rarefy generate train``
      (:mod:`rarefy.generate`); events are sampled from p(φ | θ) and ``outcome`` (an import path of
      ``t(theta, phi) -> per-event probability``) draws each event's outcome.
    """

    kind: Literal["builtin", "python", "command", "flow"] = "builtin"
    """``builtin`` (by ``name``), ``python`` (by import path ``target``), ``command`` (an external program) or
    ``flow`` (a trained event generator in ``run``)"""
    name: str | None = None
    """builtin: the simulator's name in :func:`rarefy.simulators.get` (e.g. ``moderator``)"""
    target: str | None = None
    """python: import path ``package.module:attribute`` of a function or of a class / factory"""
    options: dict[str, Any] = Field(default_factory=dict)
    """keyword options passed to the builtin simulator, or to the python function or class / factory"""
    command: list[str] | None = None
    """command: argument list (no shell) of ``str.format`` templates with ``{n}``, ``{seed}``, ``{fidelity}``,
    ``{output}``, ``{run_id}`` and ``{theta[NAME]}``"""
    output: str = "events.parquet"
    """command: the file the command writes (CSV, Parquet, HDF5 or ROOT, by suffix)"""
    env: dict[str, str] = Field(default_factory=dict)
    """command: environment variables set for the command, on top of the current environment"""
    timeout_s: float | None = Field(default=None, gt=0)
    """wall-clock limit of one request, seconds"""
    run: Path | None = None
    """flow: the run directory holding the generator (``RUN/generate/``, from ``rarefy generate train``)"""
    outcome: str | None = None
    """flow: import path ``package.module:attribute`` of ``t(theta, phi) -> probability per event`` (a function, an
    object with ``capture_probability``, or a class instantiated without arguments that has it); each event's
    outcome is Bernoulli(t)"""
    events: EventColumnsConfig = Field(default_factory=EventColumnsConfig)
    """how the command's event files map to rarefy's event columns"""

    @model_validator(mode="after")
    def _fields_for_kind(self) -> "SimulatorConfig":
        needs = {"builtin": ("name",), "python": ("target",), "command": ("command",), "flow": ("run", "outcome")}
        for need in needs[self.kind]:
            if not getattr(self, need):
                raise ValueError(f"a simulator of kind {self.kind!r} needs '{need}'")
        return self
