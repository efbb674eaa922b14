"""rarefy: affordable surrogates for expensive rare-event simulations.

Public API (see README for the tour)::

    from rarefy import load_config, load_rate_table, AR1Surrogate, DesignSpace
    from rarefy import fit, validate                       # the CLI jobs, as functions
    from rarefy import simulate, simulators, EventTable, EventStore, read_events
    from rarefy import train_denoiser, denoise_run           # the denoiser jobs
    from rarefy import train_generator, sample_generator     # the event generator p(φ | θ)
    from rarefy import run, suggest, ingest, optimize_run    # the closed loop

Names are imported lazily (PEP 562), so ``import rarefy`` is cheap: torch and gpytorch
load only when a surrogate is first used. Dask workers that only simulate never pay
for them.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it

logging.getLogger(__name__).addHandler(logging.NullHandler())

# public name -> module that defines it
_EXPORTS = {
    "AR1Settings": ".surrogate",
    "AR1Surrogate": ".surrogate",
    "CampaignResult": ".campaign",
    "DesignSpace": ".space",
    "EventStore": ".data.store",
    "EventTable": ".data.events",
    "DenoiseRunResult": ".jobs.denoise",
    "DenoiseTrainResult": ".jobs.denoise",
    "InputError": ".errors",
    "PCESettings": ".surrogate.pce",
    "PCESurrogate": ".surrogate.pce",
    "infer": ".inference.run",
    "run_anomaly": ".anomaly.run",
    "AnomalyResult": ".anomaly.run",
    "run_unfold": ".unfold.run",
    "UnfoldResult": ".unfold.run",
    "load_surrogate": ".surrogate.factory",
    "Parameter": ".space",
    "RateTable": ".data.rates",
    "RunConfig": ".config",
    "count_variance": ".data.rates",
    "denoise_run": ".jobs.denoise",
    "fit": ".jobs.fit",
    "load_config": ".config",
    "load_rate_table": ".data.mapping",
    "read_events": ".data.event_readers",
    "read_frame": ".data.readers",
    "simulate": ".jobs.simulate",
    "train_denoiser": ".jobs.denoise",
    "train_generator": ".jobs.generate",
    "sample_generator": ".jobs.generate",
    "GenerateTrainResult": ".jobs.generate",
    "validate": ".jobs.fit",
    "Acquisition": ".acquisition",
    "propose": ".acquisition",
    "optimize_design": ".optim.design",
    "optimize_run": ".jobs.optimize",
    "run": ".jobs.loop",
    "suggest": ".jobs.suggest",
    "ingest": ".jobs.ingest",
    "loop_report": ".report.loop_report",
    "bench": ".jobs.bench",
    "BenchResult": ".jobs.bench",
}
_SUBMODULES = {"simulators", "denoise", "generate", "surrogate", "data", "report", "inference", "zoo", "anomaly", "unfold"}

__all__ = sorted([*_EXPORTS, "simulators", "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'rarefy' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from . import simulators
    from .campaign.engine import CampaignResult
    from .jobs.simulate import simulate
    from .config import RunConfig, load_config
    from .data.event_readers import read_events
    from .data.events import EventTable
    from .data.mapping import load_rate_table
    from .data.rates import RateTable, count_variance
    from .data.readers import read_frame
    from .data.store import EventStore
    from .jobs.denoise import DenoiseRunResult, DenoiseTrainResult, denoise_run, train_denoiser
    from .jobs.generate import GenerateTrainResult, sample_generator, train_generator
    from .errors import InputError
    from .acquisition import Acquisition, propose
    from .jobs.fit import fit, validate
    from .jobs.ingest import ingest
    from .jobs.loop import run
    from .report.loop_report import loop_report
    from .jobs.bench import BenchResult, bench
    from .anomaly.run import AnomalyResult, run_anomaly
    from .unfold.run import UnfoldResult, run_unfold
    from .jobs.optimize import optimize_run
    from .optim.design import optimize_design
    from .jobs.suggest import suggest
    from .space import DesignSpace, Parameter
    from .surrogate import AR1Settings, AR1Surrogate
