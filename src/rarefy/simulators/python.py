"""Adapter for a simulator written in Python and named by an import path in the config."""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any, Callable, Mapping

from ..data.events import EventTable
from ..errors import InputError
from .base import as_event_table

__all__ = ["PythonSimulator", "import_object"]

log = logging.getLogger(__name__)


def import_object(path: str) -> Any:
    """Import ``package.module:attribute`` (or ``package.module.attribute``) and return the attribute."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise InputError(f"import path {path!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cannot import module {module_name!r} of simulator {path!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InputError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


class PythonSimulator:
    """A Python callable used as a simulator.

    ``target`` names either a function ``f(theta, n, fidelity, seed, **options)``, a class
    (instantiated with ``**options``) or a factory returning an object with ``simulate``,
    or an object that has ``simulate``. What it returns (EventTable, DataFrame, Arrow
    table or dict of arrays) is mapped to events with the ``events`` column spec.
    """

    def __init__(self, target: str, options: Mapping[str, Any] | None = None,
                 events: Mapping[str, Any] | None = None) -> None:
        self.target = target
        self.options = dict(options or {})
        self.events = dict(events or {})
        obj = import_object(target)
        self.impl: Any = None
        if inspect.isclass(obj):
            self.impl = obj(**self.options)
            self._call: Callable[..., Any] = self.impl.simulate
        elif hasattr(obj, "simulate"):
            self.impl = obj
            self._call = obj.simulate
        elif callable(obj):
            self._call = lambda theta, n, fidelity, seed: obj(theta, n, fidelity, seed, **self.options)
        else:
            raise InputError(f"simulator {target!r} is neither callable nor has a 'simulate' method")
        for member in ("space", "fidelities", "expected_rate"):
            if self.impl is not None and hasattr(self.impl, member):
                setattr(self, member, getattr(self.impl, member))

    def simulate(self, theta: dict[str, float], n: int, fidelity: str, seed: int) -> EventTable:
        """Call the target and map its output to an :class:`EventTable`."""
        result = self._call(dict(theta), int(n), fidelity, int(seed))
        spec = self.events
        return as_event_table(result, theta, fidelity=fidelity, columns=spec.get("columns"), phi=spec.get("phi"),
                              outcome=spec.get("outcome", "outcome"), weight=spec.get("weight"),
                              source=f"output of simulator {self.target}")

    def __repr__(self) -> str:
        return f"PythonSimulator({self.target!r})"
