"""The generator jobs on a run directory (Python equivalents of ``rarefy generate train`` / ``sample``).

:func:`train_generator` (CLI: ``rarefy generate train CONFIG --run RUN_DIR``) trains the
conditional normalizing-flow generator p(φ | θ) (:mod:`rarefy.generate`) on the events of
one fidelity that ``rarefy simulate`` stored in ``RUN_DIR``, driven by the config's
``generate`` section (:class:`rarefy.config.GenerateConfig`; missing: its defaults).
:func:`sample_generator` (CLI: ``rarefy generate sample RUN_DIR --theta k=v ... --n N
--out FILE``) draws events at a design from it and writes them as Parquet.

**Files.** ``RUN_DIR/generate/`` holds ``model.pt`` (the flow's state_dict),
``generator.json`` (φ names, space, feature map, flow options, training summary),
``history.json`` (one row per epoch), ``split.json`` (training and validation runs),
``config.yaml`` (the resolved config), the trainer's ``checkpoint.pt`` (re-running
resumes) and ``tensorboard/``. Every file is written atomically; the run directory's lock
is held while training.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from ..config import GenerateConfig, RunConfig, as_config
from ..data.events import EventTable
from ..data.rundir import CATALOG, GENERATE_DIR, run_dir_lock, write_config
from ..data.store import EventStore
from ..errors import InputError
from ..io import atomic_path, check_output, write_json

__all__ = ["GenerateTrainResult", "train_generator", "sample_generator", "load_generator", "parse_theta",
           "GENERATE_DIR"]

log = logging.getLogger(__name__)


@dataclass
class GenerateTrainResult:
    """What :func:`train_generator` did: the generator folder, the fidelity, events and runs used,
    the per-epoch ``history`` and the whole call's ``wall_s`` (seconds, loading included)."""

    folder: Path
    fidelity: str
    phi: list[str]
    history: list[dict[str, Any]] = field(default_factory=list)
    train_runs: list[str] = field(default_factory=list)
    val_runs: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def _events(run_dir: Path, fidelity: str) -> EventTable:
    if not run_dir.is_dir():
        raise InputError("run directory not found", file=run_dir)
    if not (run_dir / CATALOG).exists():
        raise InputError(f"no events: not a run directory written by 'rarefy simulate' (no {CATALOG})", file=run_dir)
    store = EventStore(run_dir)
    try:
        runs = store.runs(states=("done",))
        if runs.empty or not (runs["fidelity"].astype(str) == fidelity).any():
            raise InputError(f"no finished runs of fidelity {fidelity!r} to train the generator on", file=run_dir)
        return store.all_events(fidelity)
    finally:
        store.close()


def train_generator(config: RunConfig | str | os.PathLike[str], run_dir: str | os.PathLike[str], *,
                    seed: int | None = None, overrides: Sequence[str] = (), restart: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> GenerateTrainResult:
    """Train the event generator on the events stored in ``run_dir``; CLI: ``rarefy generate train CONFIG --run RUN_DIR``.

    Writes ``RUN_DIR/generate/`` (see the module docstring); re-running resumes an
    interrupted training. Raises :class:`InputError` before any training for a run
    directory without events of the fidelity, missing φ columns, or θ columns other than
    the config's design space.

    Parameters
    ----------
    config:
        Run config (path or :class:`RunConfig`); its ``generate`` section drives training.
    run_dir:
        A run directory written by ``rarefy simulate``.
    seed:
        Overrides ``generate.seed`` (default: the config's ``seed``).
    overrides:
        ``KEY=VALUE`` config overrides (``--set``), see :mod:`rarefy.config.load`.
    restart:
        Delete the checkpoint of an earlier training first (needed after changing the
        config, seed or events: a checkpoint of another training is refused).
    progress:
        Called as ``progress(epochs_done, epochs_total)`` after each epoch.
    """
    from ..generate.train import fit_generator

    t0 = time.perf_counter()
    cfg, source = as_config(config, overrides)
    gcfg = cfg.generate or GenerateConfig()
    fidelity = gcfg.fidelity or cfg.fidelity_names[0]
    seed = int(seed if seed is not None else (gcfg.seed if gcfg.seed is not None else cfg.seed))
    run_dir = Path(run_dir).absolute()
    space = cfg.space.build()
    folder = run_dir / GENERATE_DIR
    with run_dir_lock(run_dir, "rarefy generate train"):
        events = _events(run_dir, fidelity)
        if sorted(events.theta_names) != sorted(space.names):
            raise InputError(f"event θ columns {events.theta_names} do not match the config's design space "
                             f"{space.names}", file=run_dir)
        check_output(folder, folder=True)
        folder.mkdir(parents=True, exist_ok=True)
        def on_epoch(row: dict[str, Any]) -> None:
            if progress is not None:
                progress(int(row["epoch"]) + 1, gcfg.epochs)

        from ..generate.train import CHECKPOINT, check_events

        check_events(events, space, gcfg, str(run_dir))
        if restart and (folder / CHECKPOINT).exists():
            (folder / CHECKPOINT).unlink()
            log.info("generate: removed the earlier checkpoint %s (restart)", folder / CHECKPOINT)
        try:
            fit = fit_generator(events, space, gcfg, seed=seed, workdir=folder, source=str(run_dir),
                                on_epoch=on_epoch)
        except InputError as exc:
            if exc.file != str(folder / CHECKPOINT):
                raise
            raise InputError("the checkpoint here is of a training with another config, seed or events; "
                             "rerun with --restart (restart=True) to train afresh", file=exc.file) from None
        fit.generator.fidelity = fidelity
        fit.generator.save(folder)
        write_json(folder / "history.json", fit.history)
        write_json(folder / "split.json", {"train": fit.train_runs, "val": fit.val_runs})
        write_config(folder, cfg)
    log.info("generator of p(%s | θ) on %s trained in %.1f s", ", ".join(fit.generator.phi_names), fidelity,
             time.perf_counter() - t0)
    return GenerateTrainResult(folder, fidelity, fit.generator.phi_names, fit.history, fit.train_runs, fit.val_runs,
                               time.perf_counter() - t0)


def load_generator(run_dir: str | os.PathLike[str]) -> Any:
    """The :class:`rarefy.generate.Generator` trained in ``run_dir`` (``RUN_DIR/generate/``; a generator folder works too)."""
    from ..generate.model import META_FILE, Generator

    run_dir = Path(run_dir)
    folder = run_dir if (run_dir / META_FILE).exists() else run_dir / GENERATE_DIR
    if not run_dir.exists():
        raise InputError("run directory not found", file=run_dir)
    return Generator.load(folder)


def parse_theta(items: Sequence[str]) -> dict[str, float]:
    """``["radius=120", "npanels=40"]`` -> ``{"radius": 120.0, "npanels": 40.0}``; a malformed item raises InputError."""
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--theta {item!r} is not NAME=VALUE (e.g. radius=120)")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise InputError(f"--theta {item!r}: {value!r} is not a number", column=key.strip()) from None
    return out


def sample_generator(run_dir: str | os.PathLike[str], theta: Mapping[str, float], n: int, *,
                     out: str | os.PathLike[str] | None = None, seed: int = 0,
                     outcome: int | None = None) -> pd.DataFrame:
    """Draw ``n`` events at design ``theta`` from the generator in ``run_dir``; CLI: ``rarefy generate sample``.

    Returns a frame of the θ columns (constant) and the generated φ columns, in their
    units; with ``out``, also writes it as Parquet (atomically). ``outcome`` (0 or 1)
    selects p(φ | θ, y) for a generator trained with ``condition_on_outcome``. θ outside the
    trained space, or a missing θ parameter, raises :class:`InputError`.
    """
    gen = load_generator(run_dir)
    if out is not None:
        check_output(out, folder=False)
    frame = gen.sample(theta, int(n), seed=int(seed), outcome=outcome)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            frame.to_parquet(tmp, index=False)
    return frame
