"""Design optimisation of a run directory (``rarefy optimize RUN_DIR``).

The optimiser itself is :func:`rarefy.optim.design.optimize_design`. :func:`optimize_run`
is the Python equivalent of ``rarefy optimize RUN_DIR``: it loads the surrogate of a run
directory (from ``rarefy fit`` or ``rarefy run``) and writes ``RUN_DIR/optimum.json``: the
optimum's fields (:meth:`rarefy.optim.design.OptimumResult.to_dict`) and its ``provenance``
(:func:`rarefy.provenance.provenance`).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from ..data.rundir import CONFIG, OPTIMUM, RATES, SURROGATE_DIR, TRAINING_RATES, read_config, run_dir_lock
from ..errors import InputError
from ..io import check_output, read_parquet, write_json
from ..optim.design import OptimumResult, baseline_of, optimize_design
from ..provenance import provenance
from ..space import DesignSpace

__all__ = ["optimize_run"]

log = logging.getLogger(__name__)


def optimize_run(run_dir: str | os.PathLike[str], *, objective: str | None = None, kappa: float | None = None,
             json_out: str | os.PathLike[str] | None = None) -> OptimumResult:
    """Optimise the design with the surrogate saved in ``run_dir``; CLI: ``rarefy optimize RUN_DIR``.

    Uses the run's config (``optimize`` and ``baseline`` sections; ``objective`` and
    ``kappa`` override them) and writes ``RUN_DIR/optimum.json`` (and ``json_out`` if given).
    The run directory's lock is held throughout (a second process on it fails at once).
    """
    run_dir = Path(run_dir)
    with run_dir_lock(run_dir, "rarefy optimize"):
        return _optimize(run_dir, objective, kappa, json_out)


def _optimize(run_dir: Path, objective: str | None, kappa: float | None,
              json_out: str | os.PathLike[str] | None) -> OptimumResult:
    from ..surrogate.factory import load_surrogate

    cfg = read_config(run_dir, fitted=True)
    if json_out is not None:
        check_output(json_out, folder=False)
    settings = cfg.optimize.model_copy()
    if objective is not None:
        if objective not in ("mean", "ucb"):
            raise InputError(f"objective must be 'mean' or 'ucb', got {objective!r}")
        settings.objective = objective  # type: ignore[assignment]
    if kappa is not None:
        if not 0 <= kappa < math.inf:
            raise InputError(f"--kappa must be a finite number >= 0, got {kappa}")
        settings.kappa = kappa
    sur = load_surrogate(run_dir / SURROGATE_DIR)
    simulator = None
    if cfg.baseline is not None and cfg.baseline.simulator:
        if cfg.simulator is None:
            raise InputError("baseline: simulator: true needs a 'simulator' section", file=run_dir / CONFIG)
        from ..simulators import from_config

        simulator = from_config(cfg.simulator, config_dir=run_dir)
    observed = _observed_designs(run_dir, sur.space)
    result = optimize_design(sur, settings, target=cfg.target, seed=cfg.seed, observed=observed,
                             baseline=baseline_of(cfg.baseline, cfg.target, sur, simulator))
    result.rate_unit = cfg.fidelity(str(cfg.target)).value_unit
    record = {**result.to_dict(), "provenance": provenance(cfg)}
    write_json(run_dir / OPTIMUM, record)
    if json_out is not None:
        write_json(json_out, record)
    return result


def _observed_designs(run_dir: Path, space: DesignSpace) -> np.ndarray | None:
    for name in (TRAINING_RATES, RATES):
        path = run_dir / name
        if path.exists():
            frame = read_parquet(path)
            if all(n in frame.columns for n in space.names):
                return frame[space.names].to_numpy(dtype=float)
    return None
