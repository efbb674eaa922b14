"""The run directory of a closed loop: run ids and seeds of loop runs, the campaign runner, the result."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..campaign import run_campaign, run_seed
from ..config import RunConfig
from ..data.rates import RateTable
from ..data.rundir import LOOP_DIR, REPORT_DIR, RESULT, TRAINING_RATES, write_config
from ..data.store import RunRequest
from ..diagnostics.validation import cross_validate
from ..io import atomic_path, check_output, read_json, write_json
from ..provenance import provenance
from ..optim.design import theta_rows
from ..space import DesignSpace, text_table
from .fit import build_surrogate
from .rundata import denoised_fidelities, training_table, update_denoised
from .simulate import check_campaign, simulator_spec

__all__ = ["LOOP_BASE", "VERIFY_BASE", "BASELINE_BASE", "LoopResult", "LoopWorkspace", "loop_request_id",
           "iteration_requests", "loop_cross_validation"]

log = logging.getLogger(__name__)

LOOP_BASE = 100_000            # catalog index of loop run (i, j): LOOP_BASE + 1000 * i + j
VERIFY_BASE = 100_000_000      # verification run j at θ* after i iterations: VERIFY_BASE + 1000 * i + j
BASELINE_BASE = 200_000_000    # the same at the baseline design


@dataclass
class LoopResult:
    """What :func:`run` produced: the ``result.json`` content and the run directory.

    ``space`` gives θ*'s units and integer parameters (:meth:`theta_rows`); ``rate_unit`` is
    the target fidelity's ``value_unit``.
    """

    result: dict[str, Any]
    run_dir: Path
    iterations: int
    wall_s: float
    executed: int = 0
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)
    space: DesignSpace | None = field(default=None, repr=False, compare=False)
    rate_unit: str = ""

    def theta_rows(self) -> list[tuple[str, str, str]]:
        """θ* as table rows ``(parameter, value, unit)``; none for a multi-objective run (a Pareto set)."""
        if "optimum" not in self.result:
            return []
        return theta_rows(self.result["optimum"], self.space)

    def summary(self, theta: bool = True) -> list[str]:
        """What the loop found, in a few lines: θ* (a small table, unless ``theta`` is False) or the Pareto set,
        the predicted and verified rates, cost, where the files are."""
        r, out = self.result, self.run_dir
        tail = (f"{self.iterations} iterations, {r['cost_cpu_h']['total']:.4g} CPU-h nominal, {self.wall_s:.1f} s "
                f"-> {out / RESULT}")
        if "pareto_set" in r:  # multi-objective run
            return [f"estimated Pareto set: {len(r['pareto_set'])} designs, hypervolume {r['hypervolume']:.4g} "
                    f"(reference {r['reference_point']})", f"{tail}, {out / REPORT_DIR}"]
        unit = f" {self.rate_unit}" if self.rate_unit else ""
        if r.get("goal") == "surface":
            stop, acc = r["stop"], r["accuracy"]
            lines = [f"{r['target']} rate surface: {stop['metric']} {acc[stop['metric']]:.3g} (stop at "
                     f"{stop['below']:.3g}); stopped by {r['stopped']}"]
            cv = r.get("cv") or {}
            if "coverage_2sigma" in cv:
                lines.append(f"cross-validated 2σ coverage over the {r['target']} runs: {cv['coverage_2sigma']:.2f}")
            spent = ", ".join(f"{k} {v:.4g}" for k, v in r["cost_cpu_h"].items() if k != "total")
            return [*lines, f"CPU-h nominal by part: {spent}", tail, f"report: {out / REPORT_DIR / 'index.html'}"]
        verified = "-" if r["verified_rate"] is None else f"{r['verified_rate']:.4g} ± {r['verified_sigma']:.2g}{unit}"
        lines = ["θ*:", *text_table(self.theta_rows())] if theta else []
        lines.append(f"{r['target']} rate: predicted {r['predicted_rate']:.4g} ± {r['predicted_sigma']:.2g}{unit}, "
                     f"verified {verified}")
        if r["reduction"] is not None:
            line = (f"reduction vs baseline {r['baseline_rate']:.4g}{unit}: {100 * r['reduction']:.1f}% "
                    f"± {100 * r['reduction_sigma']:.1f}%")
            if r.get("predicted_reduction") is not None and r.get("verified_rate") is not None:
                line += (f" (predicted {100 * r['predicted_reduction']:.1f}%; gain "
                         f"{'confirmed' if r.get('gain_confirmed') else 'not confirmed'} at 2σ)")
            lines.append(line)
        return [*lines, tail, f"report: {out / REPORT_DIR / 'index.html'}"]


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
        self.out = check_output(Path(out).absolute(), folder=True)
        self.space = cfg.space.build()
        self.spec = simulator_spec(cfg, config_dir, self.out)
        self.simulator = self.spec.build()
        self.executed = 0

    def save_config(self, initial: list[RunRequest]) -> None:
        """Check the initial design ``initial`` against RUN_DIR's catalog (a different campaign raises
        :class:`InputError`), then write the resolved config to RUN_DIR/config.yaml (atomically)."""
        check_campaign(self.out, initial)
        (self.out / LOOP_DIR).mkdir(parents=True, exist_ok=True)
        write_config(self.out, self.cfg)

    def table(self) -> RateTable:
        """The training table of RUN_DIR; with denoised fidelities in the chain, the denoiser is trained once and
        the runs not yet scored are scored first (:func:`rarefy.jobs.rundata.update_denoised`).

        The denoiser's wall time × torch threads is added to :attr:`denoiser_cpu_h` and kept in
        ``RUN_DIR/loop/denoiser.json``, so a resumed loop still counts what it spent.
        """
        if denoised_fidelities(self.cfg):
            t0 = time.perf_counter()
            new = update_denoised(self.cfg, self.out, progress=self.progress)
            if new:
                sec = time.perf_counter() - t0
                log.info("denoiser: %d new runs scored (%.1f s)", len(new), sec)
                self._add_denoiser_time(sec, torch.get_num_threads())
        return training_table(self.out, self.cfg, self.space)

    @property
    def denoiser_cpu_h(self) -> float:
        """CPU-hours spent training and running the denoiser in this run directory (wall time × threads)."""
        path = self.out / LOOP_DIR / "denoiser.json"
        return float(read_json(path)["cpu_h"]) if path.exists() else 0.0

    def _add_denoiser_time(self, seconds: float, threads: int) -> None:
        path = self.out / LOOP_DIR / "denoiser.json"
        rec = read_json(path) if path.exists() else {"seconds": 0.0, "cpu_h": 0.0}
        rec["seconds"] += seconds
        rec["cpu_h"] += seconds * threads / 3600.0
        write_json(path, rec)

    def record(self, name: str) -> dict[str, Any] | None:
        """The loop record ``RUN_DIR/loop/<name>.json`` (e.g. ``iter-001``, ``optimum``), None when absent."""
        path = self.out / LOOP_DIR / f"{name}.json"
        return read_json(path) if path.exists() else None

    def save_record(self, name: str, record: dict[str, Any]) -> None:
        """Write ``RUN_DIR/loop/<name>.json`` atomically (proposals are saved before they are simulated,
        so a resumed loop reuses them)."""
        write_json(self.out / LOOP_DIR / f"{name}.json", record)

    def save_result(self, result: dict[str, Any], report: Callable[[Path], Any]) -> None:
        """Write ``RUN_DIR/result.json`` (with its ``provenance``) and then the report (a failing report is
        logged, never raised)."""
        result["provenance"] = provenance(self.cfg)
        write_json(self.out / RESULT, result)
        try:
            report(self.out)
        except Exception as exc:  # a plotting problem must not lose a finished loop
            log.warning("could not write the report: %s", exc)

    def run_iteration(self, i: int, record: dict[str, Any], seed: int) -> bool:
        """Simulate the proposals of iteration ``i``'s record; False when it proposed nothing (the loop ends)."""
        if not record["proposals"]:
            return False
        self(iteration_requests(i, record["proposals"], self.space, seed))
        return True

    def __call__(self, requests: list[RunRequest]) -> None:
        """Run ``requests`` into RUN_DIR (those already done are skipped)."""
        res = run_campaign(requests, self.spec, self.out, self.space, campaign=self.cfg.campaign,
                           progress=self.progress)
        self.executed += res.n_executed


def loop_cross_validation(cfg: RunConfig, out: Path, space: DesignSpace, iterations: int) -> dict[str, Any] | None:
    """K-fold CV of a loop's final surrogate over the target runs (``loop.cv_folds``), for the report; cached.

    Reads ``RUN_DIR/training_rates.parquet`` (the final fit's table); writes
    ``RUN_DIR/loop/cv_predictions.csv`` (held-out ``rate``, ``mean``, ``sigma``) and
    ``RUN_DIR/loop/cv.json`` (metrics: RMSE, coverage, ...); a rerun with the same number of
    iterations reads them back. Returns the metrics, or None (no CV asked, or too few target runs).
    """
    assert cfg.loop is not None
    k = cfg.loop.cv_folds
    path = out / LOOP_DIR / "cv.json"
    if k < 2:
        return None
    if path.exists():
        rec = read_json(path)
        if rec.get("iterations") == iterations:
            return rec["metrics"]
    table = RateTable.read_parquet(out / TRAINING_RATES, space)
    try:
        res = cross_validate(lambda: build_surrogate(cfg), table, str(cfg.target), k=k, seed=cfg.seed,
                             tolerance=cfg.cv_design_tolerance)
    except ValueError as exc:  # e.g. fewer than 2 target runs
        log.info("no cross-validation: %s", exc)
        return None
    with atomic_path(out / LOOP_DIR / "cv_predictions.csv") as tmp:
        res.predictions.to_csv(tmp, index=False)
    metrics = {key: float(v) for key, v in res.metrics.items()}
    write_json(path, {"iterations": iterations, "folds": k, "metrics": metrics})
    return metrics
