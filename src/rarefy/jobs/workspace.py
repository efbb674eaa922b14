"""The run directory of a closed loop: run ids and seeds of loop runs, the campaign runner, the result."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..campaign.engine import run_campaign, run_seed
from ..config import RunConfig, dump_config
from ..data.store import RunRequest
from ..io import atomic_path
from ..simulators import from_config as simulator_from_config
from ..space import DesignSpace

__all__ = ["LOOP_BASE", "VERIFY_BASE", "BASELINE_BASE", "LoopResult", "LoopWorkspace", "loop_request_id",
           "iteration_requests"]

LOOP_BASE = 100_000            # catalog index of loop run (i, j): LOOP_BASE + 1000 * i + j
VERIFY_BASE = 100_000_000      # verification run j at θ* after i iterations: VERIFY_BASE + 1000 * i + j
BASELINE_BASE = 200_000_000    # the same at the baseline design


@dataclass
class LoopResult:
    """What :func:`run` produced: the ``result.json`` content and the run directory."""

    result: dict[str, Any]
    run_dir: Path
    iterations: int
    wall_s: float
    executed: int = 0
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)


def loop_request_id(iteration: int, j: int) -> tuple[str, int]:
    """Run id and catalog index of run ``j`` of loop iteration ``iteration`` (1-based)."""
    if not (0 <= j < 1000):
        raise ValueError("at most 1000 runs per iteration")
    return f"loop-{iteration:03d}-{j:02d}", LOOP_BASE + 1000 * iteration + j


def iteration_requests(iteration: int, proposals: list[dict[str, Any]], space: DesignSpace,
                       seed: int) -> list[RunRequest]:
    """The campaign requests of one loop iteration's recorded proposals (θ, fidelity, events, cost)."""
    requests = []
    for j, p in enumerate(proposals):
        run_id, idx = loop_request_id(iteration, j)
        requests.append(RunRequest(run_id, idx, p["fidelity"], space.round_theta(p["theta"]), int(p["events"]),
                                   run_seed(seed, idx), float(p["cost_cpu_h"])))
    return requests


class LoopWorkspace:
    """RUN_DIR of a closed loop: the folders, the resolved config, the simulator and a campaign runner.

    Calling it runs campaign requests into RUN_DIR; :attr:`executed` counts the runs actually
    simulated (finished runs of a resumed loop are not repeated).
    """

    def __init__(self, cfg: RunConfig, config_dir: Path, out: str | os.PathLike[str], progress: bool) -> None:
        self.cfg, self.progress = cfg, progress
        self.out = Path(out).absolute()
        (self.out / "loop").mkdir(parents=True, exist_ok=True)
        self.space = cfg.space.build()
        scratch = str(self.out / "scratch")
        self.spec = {"simulator": cfg.simulator.model_dump(mode="json"), "config_dir": str(config_dir),
                     "scratch_dir": scratch, "timeout_s": cfg.campaign.timeout_s}
        self.simulator = simulator_from_config(cfg.simulator, config_dir=config_dir, scratch_dir=scratch,
                                               timeout_s=cfg.campaign.timeout_s)
        self.executed = 0

    def save_config(self) -> None:
        """Write the resolved config to RUN_DIR/config.yaml (atomically)."""
        with atomic_path(self.out / "config.yaml") as tmp:
            dump_config(self.cfg, tmp)

    def __call__(self, requests: list[RunRequest]) -> None:
        res = run_campaign(requests, self.spec, self.out, self.space, campaign=self.cfg.campaign,
                           progress=self.progress)
        self.executed += res.n_executed
