"""Simulators: the protocol, adapters (Python callable, external command) and built-ins.

``rarefy.simulators.get("moderator")`` returns the built-in LEGEND-like moderator
simulator, ``get("cosmic")`` the COSMIC binary-black-hole adapter (``cosmic`` extra), ``get("xlzd")``
the XLZD-like liquid-xenon TPC on NEST (``nest`` extra);
:func:`from_config` builds whatever a config's ``simulator`` section names (``kind: flow``: a trained
event generator, :class:`rarefy.generate.simulator.FlowSimulator`).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from ..errors import InputError
from .base import Fidelities, Fidelity, Simulator, as_event_table
from .command import CommandSimulator, SimulatorError, SimulatorTimeout
from .cosmic import CosmicBBH
from .moderator import Moderator
from .python import PythonSimulator
from .xlzd import XLZD

__all__ = [
    "CommandSimulator", "CosmicBBH", "Fidelities", "Fidelity", "Moderator", "PythonSimulator", "Simulator",
    "SimulatorError", "SimulatorTimeout", "XLZD", "as_event_table", "available", "from_config", "get",
]

_BUILTINS: dict[str, Callable[..., Any]] = {"cosmic": CosmicBBH, "moderator": Moderator, "xlzd": XLZD}


def available() -> list[str]:
    """Names of the built-in simulators."""
    return sorted(_BUILTINS)


def get(name: str, **options: Any) -> Any:
    """Return a new instance of the built-in simulator ``name`` (e.g. ``"moderator"``)."""
    try:
        factory = _BUILTINS[name]
    except KeyError:
        raise InputError(f"unknown built-in simulator {name!r}; available: {', '.join(available())}") from None
    return factory(**options)


def from_config(cfg: Any, *, config_dir: str | os.PathLike[str] = ".", scratch_dir: str | None = None,
                timeout_s: float | None = None) -> Any:
    """Build the simulator a :class:`rarefy.config.SimulatorConfig` describes.

    ``timeout_s`` is the default wall-clock limit of a command request where the
    simulator config sets none.
    """
    events = cfg.events.model_dump()
    if cfg.kind == "builtin":
        return get(cfg.name, **cfg.options)
    if cfg.kind == "python":
        return PythonSimulator(cfg.target, cfg.options, events)
    if cfg.kind == "flow":  # torch and zuko load only here
        from ..generate.simulator import FlowSimulator

        return FlowSimulator(cfg.run, cfg.outcome)
    return CommandSimulator(cfg.command, cfg.output, timeout_s=cfg.timeout_s or timeout_s, env=cfg.env,
                            events=events, config_dir=config_dir, scratch_dir=scratch_dir)
