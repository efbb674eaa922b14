"""The ``fit`` and ``validate`` jobs: config + rate files -> surrogate in a run directory -> metrics.

These are the Python equivalents of ``rarefy fit`` and ``rarefy validate``::

    import rarefy
    result = rarefy.fit("examples/legend/legend.yaml", "runs/legend", cv=10)
    report = rarefy.validate("runs/legend", "heldout.csv", json_out="val.json")

Run-directory layout written by :func:`fit`::

    RUN_DIR/config.yaml             the resolved config (absolute data paths)
    RUN_DIR/surrogate/model.pt      state dict + training data (torch.save; load with weights_only)
    RUN_DIR/surrogate/model.json    settings, fitted hyperparameters, fit log
    RUN_DIR/training_rates.parquet  the RateTable the surrogate was fitted on
    RUN_DIR/fit.json                fit summary (+ cross-validation metrics with --cv), provenance
    RUN_DIR/cv_predictions.csv      out-of-fold predictions (with --cv)
    RUN_DIR/cv_calibration.png      calibration plot of the cross-validation (with --cv)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import RunConfig, as_config
from ..data.mapping import load_rate_table
from ..data.rates import RateTable
from ..data.rundir import FIT, SURROGATE_DIR, check_out_dir, read_config, run_dir_lock, write_config, \
    write_training_rates
from ..errors import InputError
from ..report.calibration import calibration_plot
from ..io import check_output, staged_run_dir, write_json
from ..provenance import provenance
from ..surrogate import AR1Surrogate
from ..surrogate import factory as surrogate_factory
from ..diagnostics.validation import CVResult, cross_validate, metrics, predict_table

log = logging.getLogger(__name__)

__all__ = ["fit", "validate", "build_surrogate", "FitResult", "ValidationResult"]


def build_surrogate(cfg: RunConfig) -> Any:
    """An unfitted surrogate for ``cfg`` (its ``surrogate`` section, space, fidelities and seed)."""
    return surrogate_factory.build_surrogate(cfg.surrogate, cfg.space.build(), cfg.fidelity_names, cfg.seed)


@dataclass
class FitResult:
    """What :func:`fit` produced: the fitted surrogate, its training table, optional CV, and the run dir."""

    surrogate: AR1Surrogate
    table: RateTable
    cv: CVResult | None
    run_dir: Path


def fit(config: str | os.PathLike[str] | RunConfig, out: str | os.PathLike[str], cv: int | None = None,
        progress: Callable[[int, int], None] | None = None, overrides: Sequence[str] = ()) -> FitResult:
    """Fit the configured surrogate on the config's data and save it to run directory ``out``.

    With ``cv=K`` also run K-fold cross-validation over the target-fidelity runs and save
    its metrics (same keys as :func:`validate`), predictions and calibration plot.
    All input (the config, its data, ``cv``, and ``out``: new, empty, or a ``rarefy fit``
    run directory, see :func:`rarefy.data.rundir.check_out_dir`) is validated before any
    fitting and before anything is written; the files appear only when everything
    succeeded. ``out`` is locked for the whole job.
    ``overrides``: ``KEY=VALUE`` config overrides (``--set``), see :mod:`rarefy.config.load`.
    """
    cfg, _ = as_config(config, overrides)
    check_output(out, folder=True)
    if cv is not None and cv < 2:
        raise InputError(f"--cv must be at least 2, got {cv}")
    check_out_dir(out, "fit")
    table = load_rate_table(cfg)
    if cv is not None:
        n_target = int((table.frame["fidelity"].astype(str) == str(cfg.target)).sum())
        if n_target < 2:
            raise InputError(f"--cv needs at least 2 runs of the target fidelity {cfg.target!r}, the data have "
                             f"{n_target}")
    with run_dir_lock(out, "rarefy fit", kind="fit"):
        return _fit(cfg, table, out, cv, progress)


def _fit(cfg: RunConfig, table: RateTable, out: str | os.PathLike[str], cv: int | None,
         progress: Callable[[int, int], None] | None) -> FitResult:
    """Fit, cross-validate and write the run directory of :func:`fit` (its input already checked, ``out`` locked)."""
    sur = build_surrogate(cfg).fit(table)
    cv_result = None
    if cv is not None:
        try:
            cv_result = cross_validate(lambda: build_surrogate(cfg), table, cfg.target, k=cv, seed=cfg.seed,
                                       tolerance=cfg.cv_design_tolerance, progress=progress)
        except ValueError as exc:  # e.g. every target run at one design
            raise InputError(f"--cv {cv}: {exc}") from None
    with staged_run_dir(out) as stage:
        write_config(stage, cfg)
        sur.save(stage / SURROGATE_DIR)
        write_training_rates(stage, table)
        summary: dict[str, Any] = {
            "name": cfg.name, "target": cfg.target, "fidelities": sur.fidelities,
            "rows_per_fidelity": sur.info.n_per_fidelity, "fit_seconds": sur.info.seconds,
            "restart_losses": getattr(sur.info, "losses", None), "hyperparameters": sur.hyperparameters(),
            "provenance": provenance(cfg),
        }
        if cv_result is not None:
            summary["cv"] = {"k": cv, **cv_result.metrics, "bootstrap": cv_result.bootstrap}
            cv_result.predictions.to_csv(stage / "cv_predictions.csv", index=False)
            calibration_plot(cv_result.predictions, stage / "cv_calibration.png",
                             title=f"{cfg.name}: {cv}-fold CV of {cfg.target!r}",
                             unit=cfg.fidelity(str(cfg.target)).value_unit)
        write_json(stage / FIT, summary)
    log.info("fitted %s on %d rows -> %s", cfg.target, len(table), out)
    return FitResult(sur, table, cv_result, Path(out))


@dataclass
class ValidationResult:
    """Metrics (the keys of the validate JSON) and per-point predictions."""

    metrics: dict[str, float]
    predictions: Any
    plot: Path


def validate(run_dir: str | os.PathLike[str], data: str | os.PathLike[str],
             json_out: str | os.PathLike[str] | None = None) -> ValidationResult:
    """Predict the target fidelity at the designs of ``data`` and score the predictions.

    ``data`` is read with the run's column mapping and the target fidelity's row filter,
    value column and noise rule. A filter column absent from ``data`` is skipped (all rows
    are taken), and absent noise columns mean zero own noise. Writes the metrics as
    JSON to ``json_out`` (if given) and a calibration plot ``validate_calibration.png``
    into ``run_dir``.
    """
    run_dir = Path(run_dir)
    if json_out is not None:
        check_output(json_out, folder=False)
    with run_dir_lock(run_dir, "rarefy validate"):
        cfg = read_config(run_dir, fitted=True)
        table = load_rate_table(cfg, paths=[Path(data)], fidelities=[cfg.target], strict=False)
        from ..surrogate.factory import load_surrogate

        sur = load_surrogate(run_dir / SURROGATE_DIR)
        pred = predict_table(sur, table, cfg.target)
        result = metrics(pred["rate"], pred["mean"], pred["sigma"])
        if json_out is not None:
            write_json(json_out, result)
        plot = calibration_plot(pred, run_dir / "validate_calibration.png",
                                title=f"{cfg.name}: {cfg.target!r} on {Path(data).name}",
                                unit=cfg.fidelity(str(cfg.target)).value_unit)
    return ValidationResult(result, pred, plot)
