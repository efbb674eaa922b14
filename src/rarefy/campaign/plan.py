"""Planning a campaign: the run requests of its blocks, their seeds, and each fidelity's cost and size.

Each ``campaign.runs`` block asks for ``runs`` runs of ``events`` events at one fidelity.
Designs come from the design space (scrambled Sobol by default, seeded by the campaign
seed and the block's position) or repeat an earlier block's designs (nested designs, as
multi-fidelity surrogates like them). Run ``i`` is called ``run-{i:05d}`` and its seed is
drawn from ``numpy.random.SeedSequence(seed, spawn_key=(i,))``: a run's seed depends only
on the campaign seed and its position, so a resumed campaign reproduces an uninterrupted one.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np

from ..config import CampaignConfig, FidelityConfig
from ..data.store import RunRequest
from ..errors import InputError
from ..space import DesignSpace

__all__ = ["run_seed", "fidelity_info", "plan_requests"]


def run_seed(seed: int, index: int) -> int:
    """Seed of run ``index`` of a campaign with seed ``seed`` (63-bit, SeedSequence-derived)."""
    state = np.random.SeedSequence(int(seed), spawn_key=(int(index),)).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def fidelity_info(fidelity: FidelityConfig, simulator: Any = None) -> tuple[float, int | None]:
    """(nominal cost per event in CPU-hours or NaN, default events per run or None) of a fidelity.

    The config's ``cost_cpu_h_per_event`` and ``events`` win; the simulator's fidelity
    table (``simulator.fidelities[name]``, when it has one) fills what the config leaves out.
    """
    sim_fid = None
    fids = getattr(simulator, "fidelities", None)
    if fids is not None:
        with contextlib.suppress(Exception):
            sim_fid = fids[fidelity.name]
    cost = fidelity.cost_cpu_h_per_event
    if cost is None and sim_fid is not None:
        cost = sim_fid.cost_cpu_h_per_event
    events = fidelity.events if fidelity.events is not None else (
        sim_fid.events_per_run if sim_fid is not None else None)
    return (float("nan") if cost is None else float(cost)), events


def plan_requests(campaign: CampaignConfig, fidelities: Sequence[FidelityConfig], space: DesignSpace, seed: int,
                  simulator: Any = None) -> list[RunRequest]:
    """The run requests of a campaign, in order (deterministic for ``seed``).

    ``fidelities`` are the config's fidelity sections (cost and default events per run);
    a ``simulator`` with ``check_space`` refuses a design space that leaves its physical
    limits, and one with a ``space`` refuses designs outside it, before any run.
    """
    by_name = {f.name: f for f in fidelities}
    check = getattr(simulator, "check_space", None)
    if callable(check):
        check(space)
    requests: list[RunRequest] = []
    designs_by_fid: dict[str, list[dict[str, float]]] = {}
    for b, block in enumerate(campaign.runs):
        if block.fidelity not in by_name:
            raise InputError(f"campaign.runs.{b}: unknown fidelity {block.fidelity!r}; defined fidelities: "
                             f"{list(by_name)}")
        cost_per_event, default_events = fidelity_info(by_name[block.fidelity], simulator)
        n = block.events or default_events
        if n is None:
            raise InputError(f"campaign.runs.{b}: give 'events' (fidelity {block.fidelity!r} has no default)")
        if block.designs in ("sobol", "lhs", "random"):
            block_seed = run_seed(seed, 1_000_000 + b)
            frame = space.sample(block.runs, method=block.designs, seed=block_seed % (2**32))
            designs = [{k: float(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
        elif block.designs in designs_by_fid:
            pool = designs_by_fid[block.designs]
            if block.runs > len(pool):
                raise InputError(f"campaign.runs.{b}: {block.runs} runs asked to repeat the designs of "
                                 f"{block.designs!r}, which has only {len(pool)}")
            designs = pool[: block.runs]
        else:
            raise InputError(f"campaign.runs.{b}: 'designs' must be sobol, lhs, random or the fidelity of an "
                             f"earlier block, got {block.designs!r}")
        designs_by_fid.setdefault(block.fidelity, []).extend(designs)
        for theta in designs:
            i = len(requests)
            cost = n * cost_per_event
            requests.append(RunRequest(f"run-{i:05d}", i, block.fidelity, theta, int(n), run_seed(seed, i), cost))
    sim_space = getattr(simulator, "space", None)
    if isinstance(sim_space, DesignSpace) and requests:
        designs_arr = np.array([[r.theta.get(name, np.nan) for name in sim_space.names] for r in requests])
        bad = ~sim_space.is_feasible(designs_arr)
        if bad.any():
            r = requests[int(np.argmax(bad))]
            raise InputError(f"design {r.theta} of {r.run_id} is not feasible for the simulator's design space "
                             f"(its bounds/constraints: {sim_space.constraints})")
    return requests
