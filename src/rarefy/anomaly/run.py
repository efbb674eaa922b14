"""The ``rarefy anomaly`` job: CATHODE on a file of events or on a synthetic bump hunt.

:func:`run_anomaly` reads and checks the events (columns present, values finite, the signal
region inside the data's m range with events on both sides), runs
:class:`~rarefy.anomaly.cathode.Cathode` and writes, atomically, into ``out``:

* ``scores.parquet``: the SR events (m, features, label if any), their out-of-fold
  CATHODE ``score`` and ``fold``;
* ``summary.json``: sizes, timings, the excess test (:func:`~rarefy.anomaly.cathode.null_test`:
  SR events above the 99th percentile of the background model's held-out scores, vs the
  1 % expected without signal), and SIC metrics where labels are known;
* for ``synthetic`` with ``compare``: every method's SIC on a labelled SR test set
  (:func:`~rarefy.anomaly.compare.run_methods`) and ``sic.png``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config.anomaly import AnomalyConfig
from ..config.load import load_anomaly_config
from ..data.rundir import check_out_dir, run_dir_lock
from ..errors import InputError, fmt_value
from ..io import atomic_path, check_output, write_json
from .cathode import Cathode, ClassifierSettings, FlowSettings, null_test, sic_metrics
from .data import BumpHunt, Events

__all__ = ["run_anomaly", "AnomalyResult", "read_anomaly_events", "plot_sic"]

log = logging.getLogger(__name__)


@dataclass
class AnomalyResult:
    """What :func:`run_anomaly` wrote: the output folder and the summary (also in ``summary.json``)."""

    out: Path
    summary: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """A few lines for the terminal."""
        s = self.summary
        n = s["excess"]
        out = [f"signal region {s['signal_region']}: {s['sr_events']} events, {s['sb_events']} in the sidebands",
               f"above the background model's 99th percentile: {n['above']} (expected {n['expected']:.1f}, "
               f"p-value {n['p_value']:.3g})"]
        for name, m in s.get("methods", {}).items():
            if isinstance(m, dict) and "max_sic" in m:
                out.append(f"{name:>10}: SIC(eps_S=0.2) {m['sic_at_0.2']:.2f}, max SIC {m['max_sic']:.2f}")
        out.append(f"-> {self.out}")
        return out


def read_anomaly_events(cfg: AnomalyConfig) -> tuple[Events, list[str]]:
    """The events of ``cfg.data`` (labels −1 where there is no label column) and the feature names; checked."""
    from ..data.readers import read_frame

    assert cfg.data is not None
    d = cfg.data
    frame = read_frame(d.path)
    cols = [d.mass, *d.features] + ([d.label] if d.label else [])
    for c in cols:
        if c not in frame.columns:
            raise InputError(f"missing column (has {sorted(frame.columns)[:8]})", file=d.path, column=c)
    arrays = {}
    for c in cols:
        try:
            v = frame[c].to_numpy(np.float64)
        except (TypeError, ValueError):
            raise InputError("is not numeric", file=d.path, column=c) from None
        bad = np.flatnonzero(~np.isfinite(v))
        if len(bad):
            raise InputError(f"value {fmt_value(v[bad[0]])} is not finite", file=d.path, column=c, row=int(bad[0]))
        arrays[c] = v
    y = arrays[d.label].astype(np.int8) if d.label else np.full(len(frame), -1, np.int8)
    if d.label and not np.isin(arrays[d.label], (0, 1)).all():
        row = int(np.flatnonzero(~np.isin(arrays[d.label], (0, 1)))[0])
        raise InputError(f"labels must be 0 or 1, got {fmt_value(arrays[d.label][row])}", file=d.path,
                         column=d.label, row=row)
    x = np.stack([arrays[c] for c in d.features], axis=1)
    return Events(arrays[d.mass], x, y), list(d.features)


def _check_region(ev: Events, sr: tuple[float, float], where: str, column: str, folds: int) -> None:
    lo, hi = float(ev.m.min()), float(ev.m.max())
    if not (lo < sr[0] and sr[1] <= hi):
        raise InputError(f"signal_region {list(sr)} is not inside the data's m range [{lo:.6g}, {hi:.6g}]",
                         file=where, column=column)
    n_sr = int(((ev.m >= sr[0]) & (ev.m < sr[1])).sum())
    if n_sr < 10 * folds:
        raise InputError(f"signal_region {list(sr)} holds {n_sr} events; need at least {10 * folds}", file=where,
                         column=column)


def plot_sic(methods: dict[str, Any], path: Path, title: str = "") -> Path:
    """SIC = ε_S/√ε_B against ε_S for each method with a ``curve``; written atomically to ``path`` (PNG)."""
    from ..report.figures import save_figure
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    for name, m in methods.items():
        if isinstance(m, dict) and "curve" in m:
            ax.plot(m["curve"]["eps_s"], m["curve"]["sic"], label=name, ls="--" if name == "optimal" else "-")
    ax.set_xlabel("signal efficiency ε_S (SR test events)")
    ax.set_ylabel("SIC = ε_S / √ε_B")
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120, tight=False)


def _settings(cfg: AnomalyConfig) -> tuple[FlowSettings, ClassifierSettings]:
    f, c = cfg.flow, cfg.classifier
    return (FlowSettings(transforms=f.transforms, hidden=tuple(f.hidden), epochs=f.epochs, batch_size=f.batch_size,
                         lr=f.lr, patience=f.patience, schedule=f.schedule, ensemble=f.ensemble),
            ClassifierSettings(hidden=tuple(c.hidden), epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
                               weight_decay=c.weight_decay, folds=c.folds, ensemble=c.ensemble))


def run_anomaly(config: AnomalyConfig | str | os.PathLike[str], out: str | os.PathLike[str],
            overrides: Sequence[str] = ()) -> AnomalyResult:
    """Run CATHODE as the config says and write ``out`` (see the module docstring); CLI ``rarefy anomaly``.

    ``out`` must be new, empty or an earlier ``rarefy anomaly`` folder, and is locked for
    the whole job. Bad input raises :class:`InputError` before any training.
    """
    if isinstance(config, AnomalyConfig):
        cfg, where = config, "<config>"
        if overrides:
            from ..config.load import anomaly_config_from_dict

            cfg = anomaly_config_from_dict(config.model_dump(mode="json"), overrides=overrides)
    else:
        cfg, where = load_anomaly_config(config, overrides), str(config)
    out = Path(out).absolute()
    check_output(out, folder=True)
    check_out_dir(out, "anomaly")
    with run_dir_lock(out, "rarefy anomaly", kind="anomaly"):
        return _run(cfg, where, out)


def _run(cfg: AnomalyConfig, where: str, out: Path) -> AnomalyResult:
    sr = (float(cfg.signal_region[0]), float(cfg.signal_region[1]))
    flow, clf = _settings(cfg)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"signal_region": list(sr), "seed": cfg.seed}
    if cfg.synthetic is not None:
        syn = cfg.synthetic
        try:
            hunt = BumpHunt(n_features=syn.n_features, sr=sr)
        except InputError as exc:
            raise InputError(exc.reason, file=where) from None
        events = hunt.sample(syn.n_background, syn.signal_fraction, np.random.default_rng([cfg.seed, 0]))
        names = [f"x{i + 1}" for i in range(syn.n_features)]
        where_m, col = where, "m"
        summary["synthetic"] = syn.model_dump()
    else:
        assert cfg.data is not None
        events, names = read_anomaly_events(cfg)
        where_m, col = str(cfg.data.path), cfg.data.mass
    _check_region(events, sr, where_m, col, clf.folds)
    sr_mask = (events.m >= sr[0]) & (events.m < sr[1])
    summary.update(events=len(events), sr_events=int(sr_mask.sum()), sb_events=int((~sr_mask).sum()))
    if cfg.synthetic is not None and cfg.synthetic.compare:
        from .compare import CompareSettings, run_methods

        comp = run_methods(hunt, events, cfg.seed, flow=flow, classifier=clf, oversample=cfg.oversample,
                           settings=CompareSettings(curves=True), keep_scores=True)
        k = comp.pop("cathode_oof")
        scores, fold, s_scores, s_fold = k.scores1, k.fold1, k.scores0, k.fold0
        summary["methods"] = {key: v for key, v in comp.items() if key not in ("sr", "null")}
        summary["sr_truth"] = comp["sr"]
    else:
        res = Cathode(sr, flow=flow, classifier=clf, oversample=cfg.oversample, seed=cfg.seed).run(events.m, events.x)
        scores, fold, s_scores, s_fold = res.scores, res.fold, res.sample_scores, res.sample_fold
        summary["timings_s"] = res.timings
    summary["excess"] = null_test(scores, fold, s_scores, s_fold)
    d_sr = events.select(sr_mask)
    if (d_sr.y >= 0).all() and 0 < d_sr.y.sum() < len(d_sr):
        summary["sr_data_sic"] = sic_metrics(scores[d_sr.y == 1], scores[d_sr.y == 0], 50)
    summary["wall_s"] = time.perf_counter() - t0
    import pandas as pd

    frame = pd.DataFrame({"m": d_sr.m, **{n: d_sr.x[:, i] for i, n in enumerate(names)}})
    if (d_sr.y >= 0).all():
        frame["label"] = d_sr.y
    frame["score"] = scores
    frame["fold"] = fold
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "scores.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    if "methods" in summary:
        plot_sic(summary["methods"], out / "sic.png", f"seed {cfg.seed}, S/B {cfg.synthetic.signal_fraction:g}")
        for m in summary["methods"].values():
            m.pop("curve", None)
    write_json(out / "summary.json", summary)
    return AnomalyResult(out, summary)
