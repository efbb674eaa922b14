"""The denoiser jobs on a run directory (Python equivalents of ``rarefy train`` / ``rarefy denoise``).

:func:`train_denoiser` (CLI: ``rarefy train CONFIG --run RUN_DIR``) trains the
denoiser (:mod:`rarefy.denoise`) on the events that ``rarefy simulate`` stored in
``RUN_DIR`` and :func:`denoise_run` (CLI: ``rarefy denoise RUN_DIR``) scores the events
of every finished run with it and adds the ``<fidelity>-denoised`` rows to
``RUN_DIR/rates.parquet``.

**Which runs.** The config's ``denoise`` section (:class:`rarefy.config.DenoiseConfig`)
names the training fidelities (``fidelities``, default: the lowest fidelity) and the φ
columns (``phi``, default: the events' φ columns). Runs of ``test_blocks`` (0-based
``campaign.runs`` blocks) are held out: the trainer never sees them. The other runs of
the training fidelities are split train / validation / test by run with ``split``
(deterministic for the seed, :func:`rarefy.denoise.split_runs`).

**Split column.** After training, ``rates.parquet`` gets a ``split`` column for every
run: ``train`` / ``val`` / ``test`` as the trainer used them; held-out runs and runs of
fidelities the denoiser was not trained on (e.g. ``hf``) are ``test`` (the model never
saw their events). ``rates.parquet`` is written through its one merging writer
(:func:`rarefy.data.rundir.write_rates`), so a later ``rarefy simulate`` on the same run
directory keeps the ``-denoised`` rows and the ``split`` column; runs it adds have no split
until the next ``rarefy denoise`` marks them ``test``. The same mapping is kept in ``RUN_DIR/denoise/pipeline.json``.

**Files.** ``RUN_DIR/denoise/`` holds the trainer's ``checkpoint.pt`` (re-running
``rarefy train`` resumes), ``model.pt``, ``history.json``, ``split.json``,
``tensorboard/`` (with ``denoise.ensemble: K`` > 1, one ``member-<i>/`` folder of these
per member; ``rarefy denoise`` averages the members, :func:`rarefy.denoise.average_scores`,
and the ``split`` column is member 0's), plus ``config.yaml`` (the resolved config of the
training run),
``pipeline.json`` (fidelities, φ columns, seed, per-run split) and, after
``rarefy denoise``, ``rates_denoised.parquet`` (the denoised rows alone). Every file,
``rates.parquet`` included, is written atomically; re-running ``rarefy denoise`` replaces
the ``-denoised`` rows (and an older version's ``-cnp`` rows), never duplicates them.

All input checks (config, run directory, events, φ columns) run before any training.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from ..config import DenoiseConfig, RunConfig, as_config, load_config
from ..data.events import EventTable
from ..data.rates import RateTable
from ..data.rundir import CATALOG, CONFIG, DENOISE_DIR, DENOISED_RATES, DENOISED_SUFFIX, LEGACY_NAMES, PIPELINE, \
    SPLIT_COLUMN, read_rates, run_dir_lock, write_config, write_rates
from ..data.store import EventStore
from ..errors import InputError
from ..io import check_output, read_json, read_parquet, write_json
from ..space import DesignSpace

if TYPE_CHECKING:
    from ..denoise import EventData, TrainResult

__all__ = ["DenoiseTrainResult", "DenoiseRunResult", "train_denoiser", "denoise_run", "SUFFIX", "DENOISE_DIR"]

log = logging.getLogger(__name__)

SUFFIX = DENOISED_SUFFIX

Progress = Callable[[int, int], None]


# ------------------------------------------------------------------ results
@dataclass
class DenoiseTrainResult:
    """What :func:`train_denoiser` did.

    ``split`` maps every finished run id to ``train`` / ``val`` / ``test``; ``wall_s``
    is the whole call in seconds (loading events included).
    """

    run_dir: Path
    model_path: Path
    rates_path: Path
    fidelities: list[str]
    phi: list[str]
    split: dict[str, str]
    train: "TrainResult" = field(repr=False)
    n_events: int = 0
    wall_s: float = 0.0

    def split_counts(self) -> dict[str, int]:
        """Number of runs in each of ``train`` / ``val`` / ``test``."""
        values = list(self.split.values())
        return {s: values.count(s) for s in ("train", "val", "test")}

    def summary(self) -> str:
        """One line: events, best epoch, validation loss, split, seconds, where the model is."""
        tr = self.train
        return (f"trained on {self.n_events} events of {'/'.join(self.fidelities)}: best epoch {tr.best_epoch} of "
                f"{tr.epochs_run}, val loss {tr.best_val_loss:.5g}; runs {self.split_counts()} in {self.wall_s:.1f} s "
                f"-> {self.model_path}")


@dataclass
class DenoiseRunResult:
    """What :func:`denoise_run` did: the ``-denoised`` rows written, events scored, seconds."""

    run_dir: Path
    rates_path: Path
    table: RateTable = field(repr=False)
    fidelities: list[str] = field(default_factory=list)
    n_events: int = 0
    wall_s: float = 0.0

    @property
    def events_per_s(self) -> float:
        """Scoring throughput, events per second of the whole call."""
        return self.n_events / self.wall_s if self.wall_s > 0 else float("nan")

    def summary(self) -> str:
        """One line: fidelities scored, runs, events, throughput, where the rates are."""
        return (f"{', '.join(self.fidelities)}: {len(self.table)} runs, {self.n_events} events in {self.wall_s:.1f} s "
                f"({self.events_per_s:.3g} events/s) -> {self.rates_path}")


# ------------------------------------------------------------------ helpers
def _open_store(run_dir: Path) -> EventStore:
    """The EventStore of an existing run directory (never creates one)."""
    if not run_dir.is_dir():
        raise InputError("run directory not found", file=run_dir)
    if not (run_dir / CATALOG).exists():
        raise InputError(f"no events: not a run directory written by 'rarefy simulate' (no {CATALOG})",
                         file=run_dir)
    return EventStore(run_dir)


def _block_of(cfg: RunConfig, runs: pd.DataFrame, run_dir: Path) -> dict[str, int]:
    """Campaign block (0-based ``campaign.runs`` position) of each catalog run, checked against the plan."""
    assert cfg.campaign is not None
    edges = np.cumsum([0] + [b.runs for b in cfg.campaign.runs])
    out: dict[str, int] = {}
    for rid, idx, fid in zip(runs["run_id"].astype(str), runs["idx"].astype(int), runs["fidelity"].astype(str)):
        b = int(np.searchsorted(edges, idx, side="right") - 1)
        if not 0 <= b < len(cfg.campaign.runs) or cfg.campaign.runs[b].fidelity != fid:
            raise InputError(f"run {rid} (request {idx}, fidelity {fid!r}) does not fit the config's campaign.runs; "
                             "denoise.test_blocks needs the campaign that filled this run directory",
                             file=run_dir / CATALOG)
        out[rid] = b
    return out


def _check_phi(store: EventStore, run_ids: Sequence[str], phi: list[str] | None) -> tuple[list[str], list[str]]:
    """(θ names, φ names) of the shards of ``run_ids``; a missing φ column raises :class:`InputError`."""
    first = store.events(run_ids[0])
    theta_names = list(first.theta_names)
    names = list(phi) if phi is not None else list(first.phi_names)
    if not names:
        raise InputError("the events have no φ columns; name some with denoise.phi",
                         file=EventStore.shard_path(store.run_dir, run_ids[0]))
    for rid in run_ids:
        path = EventStore.shard_path(store.run_dir, rid)
        cols = EventStore.shard_columns(store.run_dir, rid)
        missing = [c for c in names if c not in cols]
        if missing:
            raise InputError(f"events lack the φ column(s) {missing} named in denoise.phi "
                             f"(has: {', '.join(cols)})", file=path)
    return theta_names, names


def _run_events(store: EventStore, rid: str, fidelity: str, phi: list[str]) -> "EventData":
    from ..denoise import from_event_table

    table: EventTable = store.events(rid).with_run(fidelity=fidelity, run_id=rid)
    return from_event_table(table, phi=phi)


def _concat(parts: list["EventData"]) -> "EventData":
    """One in-memory EventData from per-run chunks (each sorted by run already)."""
    from ..denoise import EventData

    sizes = np.concatenate([p.run_sizes for p in parts])
    fid: list[str] | None = []
    for p in parts:
        if p.fidelity is None:
            fid = None
            break
        fid += p.fidelity
    return EventData(np.concatenate([p.theta for p in parts]), np.concatenate([p.phi for p in parts]),
                     np.concatenate([p.y for p in parts]), np.concatenate([[0], np.cumsum(sizes)]),
                     [r for p in parts for r in p.run_ids], parts[0].theta_names, parts[0].phi_names, fid)


def _read_rates(store: EventStore, space: DesignSpace) -> pd.DataFrame:
    frame = read_rates(store.run_dir)
    return store.rate_frame(space) if frame is None else frame


# -------------------------------------------------------------------- train
def train_denoiser(config: RunConfig | str | os.PathLike[str], run_dir: str | os.PathLike[str], *,
                   seed: int | None = None, progress: Progress | None = None,
                   overrides: Sequence[str] = ()) -> DenoiseTrainResult:
    """Train the denoiser on the events stored in ``run_dir``; CLI: ``rarefy train CONFIG --run RUN_DIR``.

    Writes ``RUN_DIR/denoise/`` (see the module docstring) and the ``split`` column of
    ``RUN_DIR/rates.parquet``. Re-running resumes an interrupted training. Raises
    :class:`InputError` (before any training) for a run directory without events of the
    training fidelities, missing φ columns or a config that does not fit the run directory.
    The run directory's lock is held throughout (a second process on it fails at once).

    Parameters
    ----------
    config:
        Run config (path or :class:`RunConfig`); its ``denoise`` section drives training
        (missing: :class:`DenoiseConfig` defaults).
    run_dir:
        A run directory written by ``rarefy simulate`` (catalog + event shards).
    seed:
        Overrides ``denoise.seed`` (default: the config's ``seed``).
    progress:
        Called as ``progress(epochs_done, epochs_total)`` after each epoch; when given,
        the trainer's own per-batch progress bar is switched off.
    overrides:
        ``KEY=VALUE`` config overrides (``--set``), see :mod:`rarefy.config.load`.
    """
    t0 = time.perf_counter()
    cfg, source = as_config(config, overrides)
    with run_dir_lock(run_dir, "rarefy train"):
        return _train_denoiser(cfg, source, run_dir, seed=seed, progress=progress, t0=t0)


def _train_denoiser(cfg: RunConfig, source: Path | None, run_dir: str | os.PathLike[str], *,
                    seed: int | None, progress: Progress | None, t0: float) -> DenoiseTrainResult:
    source_name = "<config>" if source is None else str(source)
    dcfg = cfg.denoise or DenoiseConfig()
    run_dir = Path(run_dir).absolute()
    space = cfg.space.build()
    fids = list(dcfg.fidelities or [cfg.fidelity_names[0]])
    seed = int(seed if seed is not None else (dcfg.seed if dcfg.seed is not None else cfg.seed))

    store = _open_store(run_dir)
    try:
        runs = store.runs(states=("done",))
        if runs.empty:
            raise InputError("no events: the run directory has no finished runs", file=run_dir)
        fid_of = dict(zip(runs["run_id"].astype(str), runs["fidelity"].astype(str)))
        held: set[str] = set()
        if dcfg.test_blocks:
            blocks = _block_of(cfg, runs, run_dir)
            held = {r for r, b in blocks.items() if b in set(dcfg.test_blocks)}
        pool = sorted(r for r, f in fid_of.items() if f in fids and r not in held)
        if not pool:
            raise InputError(f"no events to train on: no finished runs of fidelity {', '.join(fids)} "
                             "outside denoise.test_blocks", file=run_dir)
        theta_names, phi = _check_phi(store, pool, dcfg.phi)
        if theta_names != list(space.names):
            raise InputError(f"event θ columns {theta_names} do not match the config's design space {space.names}",
                             file=EventStore.shard_path(run_dir, pool[0]))
        from ..denoise.train import CHECKPOINT, OUTPUT_FILES
        from ..nn.checkpoint import load_checkpoint

        # what is read or written after training must be usable now, not after the work
        read_rates(run_dir)
        for name in (CONFIG, PIPELINE):
            check_output(run_dir / DENOISE_DIR / name, folder=False)
        for member_out in member_dirs(run_dir / DENOISE_DIR, dcfg.ensemble):
            for name in OUTPUT_FILES:
                check_output(member_out / name, folder=False)
            if (member_out / CHECKPOINT).exists():
                load_checkpoint(member_out / CHECKPOINT)

        from ..denoise import split_runs
        from ..denoise import train as train_member

        if dcfg.early_stopping.enabled and not split_runs(pool, dcfg.split, seed)[1]:
            raise InputError(f"early stopping needs validation runs, but denoise.split {dcfg.split} of {len(pool)} "
                             "training run(s) leaves none; add runs or disable denoise.early_stopping", file=run_dir)
        if dcfg.stream:
            def source() -> Iterator["EventData"]:
                for rid in pool:
                    yield _run_events(store, rid, fid_of[rid], phi)
            data: Any = source
            n_events = int(runs.set_index("run_id").loc[pool, "n_produced"].sum())
        else:
            data = _concat([_run_events(store, rid, fid_of[rid], phi) for rid in pool])
            n_events = data.n
        log.info("training the denoiser on %d runs (%d events) of %s, φ = %s; %d runs held out", len(pool), n_events,
                 "/".join(fids), phi, len(held))

        out = run_dir / DENOISE_DIR
        out.mkdir(parents=True, exist_ok=True)
        per_member = sum(p.epochs for p in dcfg.imbalance) if dcfg.imbalance else (dcfg.epochs or 20)
        total = per_member * dcfg.ensemble
        train_cfg = dcfg.model_copy(update={"progress": False}) if progress is not None else dcfg
        results = []
        if progress is not None:
            progress(0, total)
        for i, member_out in enumerate(member_dirs(out, dcfg.ensemble)):
            def on_epoch(row: dict[str, Any], done: int = i * per_member) -> None:
                if progress is not None:
                    progress(done + int(row["epoch"]) + 1, total)

            if dcfg.ensemble > 1:
                log.info("ensemble member %d of %d (seed %d)", i + 1, dcfg.ensemble, seed + i)
            results.append(train_member(data, train_cfg, out=member_out, space=space, seed=seed + i,
                                     on_epoch=on_epoch))
        result = results[0]
        if progress is not None:
            progress(total, total)

        split = {r: "test" for r in fid_of}     # member 0's split (the others differ in train / val only)
        for name, ids in zip(("train", "val", "test"), result.split):
            for r in ids:
                split[r] = name
        write_config(out, cfg)     # the config this model was trained with
        write_json(out / PIPELINE, {"config": source_name, "fidelities": fids, "phi": phi, "seed": seed,
                                     "test_blocks": list(dcfg.test_blocks), "held_out": sorted(held),
                                     "split": split})
        frame = _read_rates(store, space)
        frame[SPLIT_COLUMN] = frame["run_id"].astype(str).map(split).fillna("test")
        rates_path = write_rates(run_dir, frame, space)
    finally:
        store.close()
    log.info("denoiser trained (best epoch %d of %d, val loss %.5g); split %s", result.best_epoch,
             result.epochs_run, result.best_val_loss, pd.Series(split).value_counts().to_dict())
    model_path = member_dirs(out, dcfg.ensemble)[0] / "model.pt"
    return DenoiseTrainResult(run_dir, model_path, rates_path, fids, phi, split, result, n_events,
                              time.perf_counter() - t0)


def member_dirs(out: Path, ensemble: int) -> list[Path]:
    """Training folders of the denoiser's members: ``out`` itself for one, ``out/member-<i>`` for an ensemble."""
    return [out] if ensemble <= 1 else [out / f"member-{i}" for i in range(ensemble)]


# -------------------------------------------------------------------- score
def denoise_run(run_dir: str | os.PathLike[str], *, fidelities: Sequence[str] | None = None,
                progress: Progress | None = None, new_only: bool = False) -> DenoiseRunResult:
    """Score every finished run with the trained denoiser; CLI: ``rarefy denoise RUN_DIR``.

    For each run the denoised rate is the mean per-event probability of its events with the
    variance of :func:`rarefy.denoise.aggregate` (rates per event). Rows of fidelity
    ``<fidelity>-denoised`` (e.g. ``lf-denoised``, ``hf-denoised``) replace any earlier ones in
    ``RUN_DIR/rates.parquet`` (atomically) and carry their run's ``split``.

    The run directory's lock is held throughout (a second process on it fails at once).

    Parameters
    ----------
    run_dir:
        A run directory on which :func:`train_denoiser` has run.
    fidelities:
        Simulated fidelities to score (default: every fidelity with finished runs).
    progress:
        Called as ``progress(runs_done, runs_total)``.
    new_only:
        Score only the runs that ``RUN_DIR/denoise/rates_cnp.parquet`` does not hold yet and
        keep the others' rows (a run's score depends only on its own events and the seed, so
        the result is the same as scoring everything; the closed loop does this every round).
    """
    with run_dir_lock(run_dir, "rarefy denoise"):
        return _denoise_run(run_dir, fidelities=fidelities, progress=progress, new_only=new_only)


def _denoise_run(run_dir: str | os.PathLike[str], *, fidelities: Sequence[str] | None,
                 progress: Progress | None, new_only: bool = False) -> DenoiseRunResult:
    t0 = time.perf_counter()
    run_dir = Path(run_dir).absolute()
    store = _open_store(run_dir)
    try:
        out = run_dir / DENOISE_DIR
        if not (out / PIPELINE).exists() or not (out / CONFIG).exists():
            raise InputError("no trained denoiser here; run 'rarefy train CONFIG --run RUN_DIR' first", file=run_dir)
        cfg = load_config(out / CONFIG)
        meta = read_json(out / PIPELINE)
        space = cfg.space.build()
        runs = store.runs(states=("done",))
        if runs.empty:
            raise InputError("no events: the run directory has no finished runs", file=run_dir)
        fid_of = dict(zip(runs["run_id"].astype(str), runs["fidelity"].astype(str)))
        wanted = list(fidelities) if fidelities is not None else list(dict.fromkeys(fid_of.values()))
        unknown = [f for f in wanted if f not in set(fid_of.values())]
        if unknown:
            raise InputError(f"no finished runs of fidelity {unknown} (has: {sorted(set(fid_of.values()))})",
                             file=run_dir)
        todo = sorted(r for r, f in fid_of.items() if f in wanted)
        names = {f"{f}{SUFFIX}" for f in wanted}
        kept = None
        if new_only and (out / DENOISED_RATES).exists():
            kept = read_parquet(out / DENOISED_RATES)
            kept = kept[kept["fidelity"].astype(str).isin(names) & kept["run_id"].astype(str).isin(todo)]
            done_ids = set(kept["run_id"].astype(str))
            todo = [r for r in todo if r not in done_ids]
        phi = list(meta["phi"])
        _check_phi(store, todo, phi)
        read_rates(run_dir)  # written after scoring: must be readable and writable now, not after the work
        check_output(out / DENOISED_RATES, folder=False)

        from ..denoise import aggregate_frame, average_scores, load_model, score
        from ..denoise.train import resolve_device

        ensemble = (cfg.denoise or DenoiseConfig()).ensemble
        paths = [d / "model.pt" for d in member_dirs(out, ensemble)]
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise InputError("no trained denoiser here; run 'rarefy train CONFIG --run RUN_DIR' first", file=missing[0])
        members = [load_model(p) for p in paths]
        dcfg = members[0][2]
        device = str(resolve_device(dcfg.device))
        seed = int(meta["seed"])
        frames, n_events = [], 0
        if progress is not None:
            progress(0, len(todo))
        for i, rid in enumerate(todo):
            data = _run_events(store, rid, fid_of[rid], phi)
            scores = average_scores([score(model, data, norm, context_size=dcfg.context_size, folds=dcfg.score_folds,
                                           seed=seed, device=device) for model, norm, _ in members])
            frames.append(aggregate_frame(scores, suffix=SUFFIX))
            n_events += data.n
            if progress is not None:
                progress(i + 1, len(todo))
        split = meta.get("split", {})
        new = pd.concat(frames, ignore_index=True) if frames else None
        if new is not None:
            new[SPLIT_COLUMN] = new["run_id"].astype(str).map(split).fillna("test")
        if kept is not None and len(kept):
            new = kept.reset_index(drop=True) if new is None else pd.concat([kept, new], ignore_index=True)
        if new is None:
            raise InputError(f"no runs of fidelity {wanted} to score", file=run_dir)
        table = RateTable(new, space, source=str(out / DENOISED_RATES))
        table.to_parquet(out / DENOISED_RATES)

        frame = _read_rates(store, space)
        names = {f"{f}{s}" for f in wanted for s in (SUFFIX, *[o for o in LEGACY_NAMES if o.startswith("-")])}
        keep = frame[~frame["fidelity"].astype(str).isin(names)]
        split_of = keep["run_id"].astype(str).map(split).fillna("test")   # runs simulated after training: test
        keep = keep.assign(**{SPLIT_COLUMN: keep[SPLIT_COLUMN].fillna(split_of) if SPLIT_COLUMN in keep else split_of})
        rates_path = write_rates(run_dir, pd.concat([keep, new], ignore_index=True), space, drop_fidelities=names)
    finally:
        store.close()
    wall = time.perf_counter() - t0
    log.info("denoised %d runs (%d events) of %s in %.1f s -> %s", len(todo), n_events, "/".join(wanted), wall,
             rates_path)
    return DenoiseRunResult(run_dir, rates_path, table, [f"{f}{SUFFIX}" for f in wanted], n_events, wall)
