"""The ``rarefy simulate CONFIG --out RUN_DIR`` job: run (or resume) a config's campaign in a run directory.

It reads the config's ``simulator`` and ``campaign`` sections, plans the run requests
(:func:`rarefy.campaign.plan_requests`), takes the run directory's lock
(:func:`rarefy.data.rundir.run_dir_lock`: a second process on the same directory fails at
once, naming the first), checks the plan against the catalog, writes the resolved config
and runs the requests the run directory does not have yet
(:func:`rarefy.campaign.run_campaign`). Nothing is written into a directory that is not
a campaign run directory or that holds a different campaign. See
:mod:`rarefy.campaign.engine` for execution, retries, timeouts and resuming.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..campaign import CampaignResult, SimulatorSpec, build_simulator, plan_requests, run_campaign
from ..config import RunConfig, as_config
from ..data.rundir import CATALOG, check_out_dir, read_rates, run_dir_lock, write_config
from ..data.store import EventStore, RunRequest
from ..errors import InputError
from ..io import check_output
from ..space import DesignSpace

__all__ = ["simulate", "campaign_requests", "simulator_spec", "check_campaign"]


def simulator_spec(cfg: RunConfig, config_dir: str | os.PathLike[str], run_dir: str | os.PathLike[str]) -> SimulatorSpec:
    """The simulator of ``cfg`` as a spec workers build it from (scratch folders in ``RUN_DIR/scratch``)."""
    if cfg.simulator is None:
        raise InputError("the config has no 'simulator' section")
    timeout = cfg.campaign.timeout_s if cfg.campaign is not None else None
    return SimulatorSpec(cfg.simulator, str(config_dir), str(Path(run_dir) / "scratch"), timeout)


def campaign_requests(cfg: RunConfig, simulator: Any = None, space: DesignSpace | None = None,
                      source: str | os.PathLike[str] | None = None) -> list[RunRequest]:
    """The run requests of the config's ``campaign`` section (deterministic for its ``seed``).

    An :class:`InputError` of the plan (e.g. a constraint no design meets) names ``source``,
    the config file, when it names no file of its own.
    """
    if cfg.campaign is None:
        raise InputError("the config has no 'campaign' section", file=source)
    try:
        return plan_requests(cfg.campaign, cfg.simulated_fidelities, space or cfg.space.build(), cfg.seed, simulator)
    except InputError as exc:
        if exc.file is not None or source is None:
            raise
        raise InputError(exc.reason, file=source, column=exc.column, row=exc.row) from None


def check_campaign(run_dir: str | os.PathLike[str], requests: list[RunRequest]) -> None:
    """Raise :class:`InputError` when ``RUN_DIR``'s catalog holds a different campaign; writes nothing."""
    if (Path(run_dir) / CATALOG).exists():
        with EventStore(run_dir) as store:
            store.check_requests(requests)


def simulate(config: RunConfig | str | os.PathLike[str], out: str | os.PathLike[str], *,
             retry_failed: bool = False, progress: bool = True, overrides: Sequence[str] = ()) -> CampaignResult:
    """Run (or resume) the campaign of ``config`` in run directory ``out``; CLI: ``rarefy simulate``.

    Writes ``out/config.yaml`` (the resolved config), ``out/catalog.sqlite``,
    ``out/events/*.parquet`` and ``out/rates.parquet`` (keeping the rows and columns that
    ``rarefy train`` / ``rarefy denoise`` added there). A config object's relative
    simulator paths are resolved against the working directory. Raises
    :class:`InputError` (before writing anything) for a bad config, an output directory
    that is not a campaign run directory (:func:`rarefy.data.rundir.check_out_dir`), a run
    directory that holds a different campaign, or one another process is using.
    ``overrides``: ``KEY=VALUE`` config overrides (``--set``), see :mod:`rarefy.config.load`.
    """
    cfg, source = as_config(config, overrides)
    if cfg.simulator is None or cfg.campaign is None:
        raise InputError("the config needs 'simulator' and 'campaign' sections to simulate", file=source)
    config_dir = source.absolute().parent if source is not None else Path.cwd()
    out = check_output(Path(out).absolute(), folder=True)
    check_out_dir(out, "simulate")
    space = cfg.space.build()
    spec = simulator_spec(cfg, config_dir, out)
    requests = campaign_requests(cfg, build_simulator(spec), space, source)
    with run_dir_lock(out, "rarefy simulate", kind="simulate"):
        check_campaign(out, requests)
        read_rates(out)  # merged with the new runs at the end: a broken one fails now, before any simulation
        write_config(out, cfg)
        return run_campaign(requests, spec, out, space, campaign=cfg.campaign, retry_failed=retry_failed,
                            progress=progress)
