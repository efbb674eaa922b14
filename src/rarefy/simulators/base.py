"""The simulator protocol, fidelities, and the conversion of simulator output to events.

A simulator is anything with a method

    ``simulate(theta: dict[str, float], n: int, fidelity: str, seed: int) -> EventTable``

that throws ``n`` primaries (e.g. neutrons) at design ``theta`` with the given fidelity
and returns one row per primary. It must be deterministic for a given ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import pandas as pd
import pyarrow as pa

from ..data.event_readers import frame_to_events
from ..data.events import EventTable
from ..errors import InputError

__all__ = ["Fidelity", "Fidelities", "Simulator", "as_event_table"]


@dataclass(frozen=True)
class Fidelity:
    """One fidelity of a simulator.

    ``order`` ranks fidelities from cheapest/least faithful (0) upwards;
    ``cost_cpu_h_per_event`` is the nominal cost of one event in CPU-hours and
    ``events_per_run`` the default number of events of one run.
    """

    name: str
    order: int
    cost_cpu_h_per_event: float
    events_per_run: int
    description: str = ""

    def run_cost(self, n: int) -> float:
        """Nominal cost in CPU-hours of a run of ``n`` events."""
        return float(n) * self.cost_cpu_h_per_event


class Fidelities(Sequence[Fidelity]):
    """An ordered collection of fidelities (lowest first), indexable by position or name."""

    def __init__(self, fidelities: Sequence[Fidelity]) -> None:
        self._items = sorted(fidelities, key=lambda f: f.order)
        names = [f.name for f in self._items]
        if len(set(names)) != len(names):
            raise ValueError(f"fidelity names must be unique, got {names}")

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            for f in self._items:
                if f.name == key:
                    return f
            raise InputError(f"unknown fidelity {key!r}; defined fidelities: {self.names}")
        return self._items[key]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Fidelity]:
        return iter(self._items)

    def __contains__(self, key: object) -> bool:
        return any(f.name == key for f in self._items) if isinstance(key, str) else key in self._items

    @property
    def names(self) -> list[str]:
        """Fidelity names, lowest first."""
        return [f.name for f in self._items]

    def __repr__(self) -> str:
        return f"Fidelities({self.names})"


@runtime_checkable
class Simulator(Protocol):
    """What the campaign needs from a simulator."""

    def simulate(self, theta: dict[str, float], n: int, fidelity: str, seed: int) -> EventTable:
        """Throw ``n`` primaries at design ``theta``; one row per primary."""
        ...


def as_event_table(
    result: Any,
    theta: Mapping[str, float],
    *,
    fidelity: str,
    run_id: str | None = None,
    columns: Mapping[str, str] | None = None,
    phi: Sequence[str] | None = None,
    outcome: str = "outcome",
    weight: str | None = None,
    source: str | None = None,
) -> EventTable:
    """Turn what a simulator returned into an :class:`EventTable` for one run.

    Accepts an EventTable, a pandas DataFrame, a pyarrow Table or a dict of arrays. The
    θ columns are set to the run's design, ``fidelity`` and ``run_id`` to the run's. A
    missing outcome or φ column raises :class:`InputError` naming the column.
    """
    if isinstance(result, EventTable):
        if phi is not None:
            missing = [c for c in phi if c not in result.phi_names]
            if missing:
                raise InputError(f"simulator output lacks the φ columns {missing}", file=source, column=missing[0])
        return result.with_run(fidelity=fidelity, run_id=run_id, theta=theta)
    if isinstance(result, pa.Table):
        frame = result.to_pandas()
    elif isinstance(result, pd.DataFrame):
        frame = result
    elif isinstance(result, Mapping):
        frame = pd.DataFrame(dict(result))
    else:
        raise InputError(f"simulator returned {type(result).__name__}; expected an EventTable, DataFrame, "
                         "pyarrow Table or dict of arrays", file=source)
    frame = frame.copy()
    for name, value in theta.items():
        frame[name] = float(value)
    return frame_to_events(frame, source=source, columns=columns, theta=list(theta), phi=phi, outcome=outcome,
                           weight=weight, fidelity=fidelity, run_id=run_id)
