"""``rarefy bench CONFIG --out DIR``: train and compare event-level backends on one by-run split.

:func:`bench` (the Python equivalent) reads a run config with a ``bench`` section
(:class:`rarefy.config.BenchConfig`) and

1. **checks everything first**: every backend name is registered, every ``custom``
   import path imports, every backend is built with its options (so bad options fail
   here too), the run directory exists — one-line :class:`InputError` before any
   simulation or training;
2. **gets the events**: the finished runs of ``bench.fidelities`` in ``bench.run_dir``,
   or, without a run directory, simulates the config's ``campaign`` into ``DIR/events``
   (resumable) and uses those;
3. **splits by run** (:func:`rarefy.denoise.split_runs`, seeded): every backend gets
   the same train / val / test events; with ``bench.imbalance`` positives are dropped
   at random to the requested rate (see :class:`rarefy.config.BenchImbalanceConfig`);
4. for each backend: ``fit(train, val, workdir=DIR/backends/<label>/work)`` and
   ``score(test)`` (and ``score(val)`` for backends whose scores are not probabilities),
   timed (wall seconds ``train_s`` / ``score_s``; CPU seconds in ``bench_meta.json``);
   the model is saved to ``DIR/backends/<label>/model`` (``save_models``);
5. writes (atomically) ``DIR/bench.json`` — one entry per backend label with exactly
   ``pr_auc``, ``roc_auc``, ``precision_at_recall_0.40``, ``precision_at_recall_0.48``,
   ``ece``, ``train_s``, ``score_s`` (NaN written as ``null``) — after every backend,
   ``DIR/bench_meta.json`` (data sizes and rates per split, runs, per-backend CPU times,
   how the ECE was computed, failures) and ``DIR/pr_curves.png``.

**Metrics** are computed on the test events (:mod:`rarefy.zoo.metrics`). The ECE needs
probabilities: a backend with ``probabilistic = True`` is taken as is; the scores of
the others (isolation forest, reconstruction errors) are first mapped to probabilities
by Platt scaling — a logistic regression of the label on the standardised score,
fitted on the *validation* events (never the test events); without validation
positives their ECE is ``null``.

A backend that raises while training or scoring is logged, recorded under
``failed`` in ``bench_meta.json`` and left out of ``bench.json``; the other backends
still run, and :class:`BenchResult` lists the failures.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..io import check_output, write_json
from ..config import BenchConfig, RunConfig, as_config
from ..data.rundir import check_out_dir, run_dir_lock
from ..errors import InputError
from ..zoo.base import EventBatch
from ..zoo.metrics import bench_metrics

__all__ = ["bench", "BenchResult", "load_bench_events", "split_events", "apply_imbalance", "METRIC_KEYS"]

log = logging.getLogger(__name__)

METRIC_KEYS = ("pr_auc", "roc_auc", "precision_at_recall_0.40", "precision_at_recall_0.48", "ece", "train_s",
               "score_s")

Progress = Callable[[str, int, int], None]


@dataclass
class BenchResult:
    """What :func:`bench` did: ``metrics`` (label -> the bench.json entry), ``meta`` (bench_meta.json),
    ``failed`` (label -> error text), total ``wall_s`` / ``cpu_s`` of the call."""

    out: Path
    metrics: dict[str, dict[str, float | None]]
    meta: dict[str, Any] = field(repr=False)
    failed: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    cpu_s: float = 0.0


# ------------------------------------------------------------------- data
def load_bench_events(run_dir: Path, fidelities: list[str], phi: list[str] | None
                      ) -> tuple[EventBatch, list[str]]:
    """All events of the finished runs of ``fidelities`` in ``run_dir`` as one :class:`EventBatch`.

    ``run`` holds the position of each event's run in the returned (sorted) run-id list.
    """
    from ..data.store import EventStore

    if not run_dir.is_dir() or not (run_dir / "catalog.sqlite").exists():
        raise InputError("not a run directory written by 'rarefy simulate' (no catalog.sqlite)", file=run_dir)
    with EventStore(run_dir) as store:
        runs = store.runs(states=("done",))
        runs = runs[runs["fidelity"].astype(str).isin(fidelities)]
        if runs.empty:
            raise InputError(f"no finished runs of fidelity {', '.join(fidelities)}", file=run_dir)
        ids = sorted(runs["run_id"].astype(str))
        xs, ys, rs = [], [], []
        names: tuple[str, ...] | None = None
        n_theta = 0
        for i, rid in enumerate(ids):
            table = store.events(rid)
            cols = table.table.column_names
            use = list(phi) if phi is not None else list(table.phi_names)
            missing = [c for c in use if c not in cols]
            if missing:
                raise InputError(f"events lack the φ column(s) {missing} named in bench.phi (has: {', '.join(cols)})",
                                 file=EventStore.shard_path(run_dir, rid))
            if not use:
                raise InputError("the events have no φ columns; name some with bench.phi",
                                 file=EventStore.shard_path(run_dir, rid))
            these = (*table.theta_names, *use)
            if names is None:
                names, n_theta = these, len(table.theta_names)
            elif these != names:
                raise InputError(f"run {rid} has columns {these}, the first run {names}",
                                 file=EventStore.shard_path(run_dir, rid))
            th = np.asarray(table.theta(), np.float32).reshape(table.n, -1)
            ph = np.column_stack([table.table.column(c).to_numpy(zero_copy_only=False).astype(np.float32)
                                  for c in use])
            xs.append(np.concatenate([th, ph], axis=1))
            ys.append(np.asarray(table.outcome, np.uint8))
            rs.append(np.full(table.n, i, np.int64))
    assert names is not None
    x = np.concatenate(xs)
    if not np.isfinite(x).all():
        raise InputError("events hold NaN or infinite feature values", file=run_dir)
    return EventBatch(x, np.concatenate(ys), np.concatenate(rs), names, n_theta), ids


def split_events(events: EventBatch, run_ids: list[str], fractions: list[float], seed: int
                 ) -> tuple[dict[str, EventBatch], dict[str, list[str]]]:
    """Train / val / test by run (:func:`rarefy.denoise.split_runs`); returns batches and run ids per part."""
    from ..denoise import split_runs

    parts = dict(zip(("train", "val", "test"), split_runs(run_ids, fractions, seed)))
    code = {r: i for i, r in enumerate(run_ids)}
    out = {}
    for name, ids in parts.items():
        mask = np.zeros(len(run_ids), bool)
        mask[[code[r] for r in ids]] = True
        out[name] = events.subset(mask[events.run])
    return out, parts


def apply_imbalance(parts: dict[str, EventBatch], rate: float, min_positives: list[int], seed: int
                    ) -> dict[str, EventBatch]:
    """Keep max(min, round(rate · n)) positives per part (at most all), drop the others; background kept."""
    out = {}
    for j, (name, b) in enumerate(parts.items()):
        pos = np.flatnonzero(b.y == 1)
        want = min(len(pos), max(int(min_positives[j]), int(round(rate * len(b)))))
        keep = np.ones(len(b), bool)
        if want < len(pos):
            drop = np.random.default_rng([seed, 17, j]).choice(pos, len(pos) - want, replace=False)
            keep[drop] = False
        out[name] = b.subset(keep)
    return out


# ------------------------------------------------------------------ helpers
def _json_num(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _platt(val_score: np.ndarray, val_y: np.ndarray, score: np.ndarray) -> np.ndarray | None:
    """Probabilities from scores by a logistic fit on the validation events (None without both classes)."""
    from sklearn.linear_model import LogisticRegression

    if not (val_y == 1).any() or not (val_y == 0).any():
        return None
    mu, sd = float(np.mean(val_score)), float(np.std(val_score)) or 1.0
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(((val_score - mu) / sd)[:, None], val_y)
    return lr.predict_proba(((score - mu) / sd)[:, None])[:, 1]


def _plot(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], prevalence: float, path: Path) -> None:
    from ..report.figures import save_figure, subplots

    fig, ax = subplots(figsize=(7, 5))
    for label, (rec, prec, ap) in curves.items():
        ax.step(rec, prec, where="post", label=f"{label} (PR-AUC {ap:.3g})")
    if prevalence > 0:
        ax.axhline(prevalence, color="grey", ls=":", lw=1, label=f"prevalence {prevalence:.2g}")
    for r in (0.40, 0.48):
        ax.axvline(r, color="grey", ls="--", lw=0.6)
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("test events: precision–recall")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    save_figure(fig, path, dpi=120, tight=False)


def _prepare(cfg: RunConfig, source: str) -> tuple[BenchConfig, list[tuple[str, Any, dict[str, Any]]]]:
    """Validate the bench section and build every backend (untrained) — before any data or training."""
    from ..zoo.registry import make_backend

    if cfg.bench is None:
        raise InputError("the config has no 'bench' section", file=source)
    bc = cfg.bench
    seed = int(bc.seed if bc.seed is not None else cfg.seed)
    built = []
    for i, spec in enumerate(bc.backends):
        try:
            backend = make_backend(spec.name, spec.options, seed=seed, import_path=spec.import_path)
        except InputError as exc:
            raise InputError(f"bench.backends.{i} ({spec.label}): {exc.reason}", file=source) from None
        except (ValueError, TypeError) as exc:
            raise InputError(f"bench.backends.{i} ({spec.label}): bad options: {exc}", file=source) from None
        built.append((str(spec.label), backend, {"name": spec.name, "import_path": spec.import_path,
                                                  "options": spec.options}))
    if bc.run_dir is None and (cfg.simulator is None or cfg.campaign is None):
        raise InputError("bench needs 'bench.run_dir' or the config's 'simulator' and 'campaign' sections "
                         "(to simulate the events)", file=source)
    if bc.run_dir is not None and not (Path(bc.run_dir) / "catalog.sqlite").exists():
        raise InputError("bench.run_dir is not a run directory written by 'rarefy simulate' (no catalog.sqlite)",
                         file=bc.run_dir)
    return bc, built


# -------------------------------------------------------------------- bench
def bench(config: RunConfig | str | os.PathLike[str], out: str | os.PathLike[str], *,
          progress: Progress | None = None, overrides: Sequence[str] = ()) -> BenchResult:
    """Train and score the config's ``bench.backends`` on one by-run split; CLI ``rarefy bench CONFIG --out DIR``.

    Raises :class:`InputError` (before any training) for an unknown backend, an import
    path that does not import, bad backend options, a missing run directory, or an output
    folder that is neither new, empty nor a ``rarefy bench`` folder
    (:func:`rarefy.data.rundir.check_out_dir`). ``DIR`` is locked for the whole job (a second
    process on it fails at once).

    Parameters
    ----------
    config:
        Run config (path or :class:`RunConfig`) with a ``bench`` section.
    out:
        Output folder: ``bench.json``, ``bench_meta.json``, ``pr_curves.png``,
        ``backends/<label>/`` (and ``events/`` when the events are simulated here).
    progress:
        Called as ``progress(stage, done, total)`` (stage: ``simulate`` / a backend label).
    overrides:
        ``KEY=VALUE`` config overrides (``--set``), see :mod:`rarefy.config.load`.
    """
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    cfg, path = as_config(config, overrides)
    source = "<config>" if path is None else str(path)
    out = Path(out).absolute()
    check_output(out, folder=True)
    check_out_dir(out, "bench")
    bc, built = _prepare(cfg, source)
    with run_dir_lock(out, "rarefy bench", kind="bench"):
        return _bench(cfg, path, source, bc, built, out, progress, t_wall, t_cpu, tuple(overrides))


def _bench(cfg: RunConfig, path: Path | None, source: str, bc: BenchConfig, built: list[tuple[str, Any, dict[str, Any]]],
           out: Path, progress: Progress | None, t_wall: float, t_cpu: float,
           overrides: tuple[str, ...] = ()) -> BenchResult:
    """The work of :func:`bench` (its input checked, ``out`` locked; ``overrides`` re-applied when the
    campaign is simulated from the config file)."""
    from ..threads import torch_threads

    seed = int(bc.seed if bc.seed is not None else cfg.seed)
    fids = list(bc.fidelities or [cfg.fidelity_names[0]])

    run_dir = Path(bc.run_dir) if bc.run_dir is not None else out / "events"
    if bc.run_dir is None:
        from .simulate import simulate

        log.info("bench: simulating the campaign into %s", run_dir)
        if progress is not None:
            progress("simulate", 0, 1)
        simulate(cfg if path is None else path, run_dir, progress=progress is None, overrides=overrides)
        if progress is not None:
            progress("simulate", 1, 1)
    events, run_ids = load_bench_events(run_dir, fids, bc.phi)
    parts, split_ids = split_events(events, run_ids, list(bc.split), seed)
    del events
    if bc.imbalance is not None:
        parts = apply_imbalance(parts, bc.imbalance.rate, list(bc.imbalance.min_positives), seed)
    for name in ("train", "test"):
        if not (parts[name].y == 1).any():
            raise InputError(f"the {name} runs hold no signal events; simulate more events or change bench.split",
                             file=run_dir)
    train, val, test = parts["train"], parts["val"], parts["test"]
    data_meta = {name: {"events": len(b), "positives": int(b.y.sum()), "rate": float(b.y.mean()) if len(b) else None,
                        "runs": len(split_ids[name])} for name, b in parts.items()}
    log.info("bench data: %s", data_meta)
    meta: dict[str, Any] = {"config": source, "seed": seed, "run_dir": str(run_dir), "fidelities": fids,
                            "features": list(train.feature_names), "n_theta": train.n_theta, "split": split_ids,
                            "data": data_meta, "imbalance": None if bc.imbalance is None else
                            bc.imbalance.model_dump(), "ece": {"bins": bc.ece_bins, "binning": bc.ece_binning},
                            "torch_threads": bc.threads, "backends": {}, "failed": {}}

    metrics: dict[str, dict[str, float | None]] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    failed: dict[str, str] = {}
    with torch_threads(bc.threads):
        for k, (label, backend, spec) in enumerate(built):
            if progress is not None:
                progress(label, k, len(built))
            folder = out / "backends" / label
            try:
                folder.mkdir(parents=True, exist_ok=True)
                log.info("bench: training %s", label)
                w0, c0 = time.perf_counter(), time.process_time()
                backend.fit(train, val if len(val) else None, workdir=folder / "work")
                train_s, train_cpu = time.perf_counter() - w0, time.process_time() - c0
                w0, c0 = time.perf_counter(), time.process_time()
                s_test = np.asarray(backend.score(test), np.float64)
                score_s, score_cpu = time.perf_counter() - w0, time.process_time() - c0
                if s_test.shape != (len(test),) or not np.isfinite(s_test).all():
                    raise ValueError(f"score() returned shape {s_test.shape} with "
                                     f"{int((~np.isfinite(s_test)).sum())} non-finite values for {len(test)} events")
                probabilistic = bool(getattr(backend, "probabilistic", False))
                if probabilistic:
                    prob, ece_on = s_test, "probability"
                elif len(val):
                    prob = _platt(np.asarray(backend.score(val), np.float64), val.y, s_test)
                    ece_on = "platt(val)" if prob is not None else "none (no validation positives)"
                else:
                    prob, ece_on = None, "none (no validation events)"
                m = bench_metrics(test.y, s_test, prob, bins=bc.ece_bins, binning=bc.ece_binning)
                m.update(train_s=train_s, score_s=score_s)
                metrics[label] = {key: _json_num(float(m[key])) for key in METRIC_KEYS}
                from sklearn.metrics import precision_recall_curve

                prec, rec, _ = precision_recall_curve(test.y == 1, s_test)
                curves[label] = (rec, prec, m["pr_auc"])
                meta["backends"][label] = {**spec, "probabilistic": probabilistic, "ece_on": ece_on,
                                           "train_cpu_s": train_cpu, "score_cpu_s": score_cpu,
                                           "class": f"{type(backend).__module__}.{type(backend).__qualname__}"}
                if bc.save_models:
                    backend.save(folder / "model")
                log.info("bench: %s PR-AUC %.4g ROC-AUC %.4g (train %.1f s, score %.1f s)", label, m["pr_auc"],
                         m["roc_auc"], train_s, score_s)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one backend's failure must not lose the others
                log.error("bench: backend %s failed: %s", label, exc)
                log.debug("%s", traceback.format_exc())
                failed[label] = f"{type(exc).__name__}: {exc}"
                meta["failed"][label] = failed[label]
            write_json(out / "bench.json", metrics)
            write_json(out / "bench_meta.json", meta)
    if progress is not None:
        progress("done", len(built), len(built))
    wall, cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
    meta["wall_s"], meta["cpu_s"] = wall, cpu
    write_json(out / "bench.json", metrics)
    write_json(out / "bench_meta.json", meta)
    if curves:
        _plot(curves, float(test.y.mean()), out / "pr_curves.png")
    return BenchResult(out, metrics, meta, failed, wall, cpu)
