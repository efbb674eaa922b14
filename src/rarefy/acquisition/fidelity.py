"""Runs of each fidelity: events per run, nominal cost (CPU-hours) and the noise a run will have.

A candidate run of ``n_f`` events at design x and fidelity f has observation noise (rate
units²) ``s²_f(x) = max(m_f(x), 1/n_f)/n_f + τ_f``: the binomial variance of k/n at the
predicted rate m_f, at least one count's worth, plus the fidelity's learned nugget τ_f
(:class:`RunNoise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from ..config import FidelityConfig
from ..data.rundir import denoised_base

__all__ = ["FidelityPlan", "RunNoise", "fidelity_plans"]


@dataclass(frozen=True)
class FidelityPlan:
    """What a proposed run of one fidelity is: ``events`` per run and its nominal cost (CPU-hours, NaN if unknown).

    ``simulate`` is the fidelity that is actually simulated (default: ``name``): a
    denoised fidelity ``lf-denoised`` is observed by simulating an ``lf`` run and scoring it
    with the denoiser, so its plan is the ``lf`` plan with ``simulate="lf"``.
    """

    name: str
    events: int
    cost_cpu_h: float = float("nan")
    simulate: str | None = None

    @property
    def simulated(self) -> str:
        """The fidelity a run of this plan simulates."""
        return self.simulate or self.name


@dataclass(frozen=True)
class RunNoise:
    """Noise variance (rate units²) of a run of ``events`` events with the fidelity's ``nugget``, at predicted rate m."""

    events: int
    nugget: float = 0.0

    def __call__(self, mean: torch.Tensor) -> torch.Tensor:
        n = float(self.events)
        return torch.clamp(mean, min=1.0 / n) / n + self.nugget


def fidelity_plans(fidelities: Sequence[FidelityConfig], events: Mapping[str, int] | None = None,
                   simulator: Any = None) -> dict[str, FidelityPlan]:
    """Events and nominal run cost of every fidelity (the config's ``fidelities`` section).

    Events: ``events[f]`` (the config's ``acquisition.events``), else the fidelity's ``events``, else the simulator's
    default. Cost of a run (CPU-h): events × ``cost_cpu_h_per_event`` (config or simulator),
    else the fidelity's ``cost_cpu_h`` per run, else NaN. A fidelity without an events
    number gets ``events = 0`` (it cannot be proposed). A denoised fidelity ``<base>-denoised``
    (see :mod:`rarefy.denoise`) without events of its own gets the plan of ``<base>``
    with ``simulate=<base>``: a run of ``base`` is what yields its observation; one whose base
    is not among ``fidelities`` is simulated as its base too, at the base's cost per event.
    """
    out = {}
    events_of = dict(events or {})
    names = {f.name for f in fidelities}
    for f in fidelities:
        sim_fid = None
        fids = getattr(simulator, "fidelities", None)
        base = denoised_base(f.name)
        lookup = base if (base is not None and base not in names) else f.name   # simulated as its base
        if fids is not None and lookup in fids:
            sim_fid = fids[lookup]
        n_events = events_of.get(f.name) or f.events or (sim_fid.events_per_run if sim_fid else 0)
        per_event = f.cost_cpu_h_per_event
        if per_event is None and sim_fid is not None:
            per_event = sim_fid.cost_cpu_h_per_event
        if per_event is not None and n_events:
            cost = float(per_event) * int(n_events)
        elif f.cost_cpu_h is not None:
            cost = float(f.cost_cpu_h)
        else:
            cost = float("nan")
        out[f.name] = FidelityPlan(f.name, int(n_events or 0), cost, simulate=None if lookup == f.name else lookup)
    for name, plan in list(out.items()):
        base = denoised_base(name)
        if base is not None and plan.events == 0 and base in out and out[base].events > 0:
            out[name] = FidelityPlan(name, out[base].events, out[base].cost_cpu_h, simulate=base)
    return out

