"""The ``rarefy unfold`` job: each configured method on events from files or on a known-truth case.

:func:`run_unfold` builds the :class:`~rarefy.unfold.base.Problem` (from the ``data``
files, checked column by column, or from a ``case``), runs every method of ``methods``
(:mod:`~rarefy.unfold.registry`) with the config's seed, and writes, atomically and only
after every method has finished, into ``out``:

* ``histograms.csv``: per method and gen column, each bin's ``low`` and ``high`` edge, the
  unfolded probability ``mean`` and its 1σ uncertainty ``sd`` (the members' sd, or the ensemble
  mean's error for a method with replicated members, :meth:`~rarefy.unfold.base.Unfolded.histogram`), and the exact
  ``truth`` probability for a case (empty for files); a ``prior`` row set holds the
  simulation's own gen histogram;
* ``metrics.json``: sizes, the simulation's efficiency, and per method its wall time (s),
  ``info`` figures (``n_true``, ...) and per column the unfolded mean and width; for a
  case also the Wasserstein-1 distance to 10⁵ fresh draws of the case's truth (column
  unit; not to the measured events' hidden values, which passed the detector and so follow
  ε·p_true), per-bin coverage at 1 σ, χ²/ndf against the exact truth and the relative
  mean and width errors (:mod:`~rarefy.unfold.metrics`);
* ``unfold_<column>.png`` (``plots``): every method's histogram with ±1 sd error bars
  against the truth (for a case) and the simulation prior.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..config.load import load_unfold_config
from ..config.unfold import UnfoldConfig
from ..data.rundir import run_dir_lock
from ..errors import InputError, fmt_value
from ..io import atomic_path, check_output, write_json
from . import metrics as M
from .base import Problem, Unfolded
from .registry import build_method

__all__ = ["run_unfold", "UnfoldResult", "read_unfold_problem", "case_of", "plot_unfolded"]

log = logging.getLogger(__name__)
TRUTH_DRAWS = 100_000   # fresh truth draws per case run, for the Wasserstein-1 distance

#: unit of a column, from its name's suffix (``energy_kev`` -> keV)
_SUFFIX_UNITS = {"kev": "keV", "mev": "MeV", "gev": "GeV", "phd": "phd", "mm": "mm", "cm": "cm", "ns": "ns",
                 "us": "µs", "s": "s"}


@dataclass
class UnfoldResult:
    """What :func:`run_unfold` wrote: the output folder, the metrics (also in ``metrics.json``) and the results."""

    out: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Unfolded] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """A few lines for the terminal."""
        out = []
        for name, m in self.metrics["methods"].items():
            parts = [f"{name:>10}: {m['wall_s']:.1f} s"]
            for col, c in m["columns"].items():
                text = f"{col} mean {c['mean']:.4g} width {c['width']:.4g}"
                if "wasserstein" in c:
                    text += f", W1 {c['wasserstein']:.3g}, coverage {c['coverage']:.2f}, χ²/ndf {c['chi2_ndf']:.2f}"
                parts.append(text)
            out.append("; ".join(parts))
        out.append(f"-> {self.out}")
        return out


def case_of(cfg: UnfoldConfig) -> Any:
    """The known-truth case object of ``cfg.case`` (:class:`GaussianToy` or :class:`XLZDCase`)."""
    assert cfg.case is not None
    params = cfg.case.model_dump(exclude={"kind", "n_sim", "n_data"})
    if cfg.case.kind == "gaussian":
        from .toy import GaussianToy

        return GaussianToy(**params)
    from .xlzd import XLZDCase

    return XLZDCase(**params)


def _column(frame: Any, name: str, path: Path, what: str) -> np.ndarray:
    if name not in frame.columns:
        raise InputError(f"missing {what} column (has {', '.join(sorted(frame.columns)[:8])})", file=path,
                         column=name)
    try:
        return frame[name].to_numpy(np.float64)
    except (TypeError, ValueError):
        raise InputError("is not numeric", file=path, column=name) from None


def _weights(frame: Any, name: str, path: Path) -> np.ndarray:
    w = _column(frame, name, path, "weight")
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        raise InputError(f"weight {fmt_value(w[bad[0]])} is not a finite non-negative number", file=path,
                         column=name, row=int(bad[0]))
    if not np.any(w > 0):
        raise InputError("all weights are zero", file=path, column=name)
    return w


def read_unfold_problem(cfg: UnfoldConfig) -> Problem:
    """The :class:`Problem` of ``cfg.data``: every column present, numeric and finite where it must be."""
    from ..data.readers import read_frame

    assert cfg.data is not None
    d = cfg.data
    sim, data = read_frame(d.simulation), read_frame(d.data)
    if len(sim) == 0:
        raise InputError("the simulation file has no events", file=d.simulation)
    if len(data) == 0:
        raise InputError("the data file has no events", file=d.data)
    for c in d.rec + ([d.weight] if d.weight else []):
        if c in sim.columns and c not in data.columns:
            raise InputError(f"column is in the simulation ({d.simulation.name}) but not in the data "
                             f"(has {', '.join(sorted(data.columns)[:8])})", file=d.data, column=c)
    gen = np.column_stack([_column(sim, c, d.simulation, "gen") for c in d.gen])
    for j, c in enumerate(d.gen):
        bad = np.flatnonzero(~np.isfinite(gen[:, j]))
        if bad.size:
            raise InputError(f"value {fmt_value(gen[bad[0], j])} is not finite", file=d.simulation, column=c,
                             row=int(bad[0]))
    rec = np.column_stack([_column(sim, c, d.simulation, "rec") for c in d.rec])
    drec = np.column_stack([_column(data, c, d.data, "rec") for c in d.rec])
    for j, c in enumerate(d.rec):
        bad = np.flatnonzero(~np.isfinite(drec[:, j]))
        if bad.size:
            raise InputError(f"value {fmt_value(drec[bad[0], j])} is not finite (measured events all passed)",
                             file=d.data, column=c, row=int(bad[0]))
    passed = None
    if d.pass_:
        p = _column(sim, d.pass_, d.simulation, "pass")
        bad = np.flatnonzero(~np.isin(p, (0, 1)))
        if bad.size:
            raise InputError(f"pass flag must be 0 or 1, got {fmt_value(p[bad[0]])}", file=d.simulation,
                             column=d.pass_, row=int(bad[0]))
        passed = p.astype(bool)
        for j, c in enumerate(d.rec):
            bad = np.flatnonzero(passed & ~np.isfinite(rec[:, j]))
            if bad.size:
                raise InputError(f"value {fmt_value(rec[bad[0], j])} of a passed event is not finite",
                                 file=d.simulation, column=c, row=int(bad[0]))
    sw = _weights(sim, d.weight, d.simulation) if d.weight else None
    dw = _weights(data, d.weight, d.data) if d.weight else None
    return Problem.build(d.gen, d.rec, gen, rec, drec, sim_pass=passed, sim_weight=sw, data_weight=dw,
                         source=str(d.simulation), data_source=str(d.data))


def _edges(cfg: UnfoldConfig, problem: Problem, case: Any) -> dict[str, np.ndarray]:
    out = {}
    for j, col in enumerate(problem.gen_names):
        if col in cfg.edges:
            out[col] = np.asarray(cfg.edges[col], dtype=float)
        elif case is not None:
            out[col] = case.default_edges(cfg.bins) if cfg.bins else case.default_edges()
        else:
            lo, hi = np.quantile(problem.sim_gen[:, j], [0.005, 0.995])
            out[col] = np.linspace(lo, hi if hi > lo else lo + 1.0, (cfg.bins or 20) + 1)
    return out


def _unit(col: str, case_kind: str | None) -> str:
    if case_kind == "gaussian":
        return "a.u."
    suffix = col.rsplit("_", 1)[-1].lower() if "_" in col else ""
    return _SUFFIX_UNITS.get(suffix, "")


def plot_unfolded(column: str, edges: np.ndarray, hists: dict[str, tuple[np.ndarray, np.ndarray]],
                  path: Path, truth: np.ndarray | None = None, prior: np.ndarray | None = None,
                  unit: str = "", title: str = "") -> Path:
    """Each method's probability per bin with ±1 sd error bars, the truth and the prior as steps; PNG, atomic."""
    from ..report.figures import save_figure
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    centres = 0.5 * (edges[1:] + edges[:-1])
    width = np.diff(edges)
    if prior is not None:
        ax.stairs(prior, edges, color="0.6", ls="--", label="simulation prior")
    if truth is not None:
        ax.stairs(truth, edges, color="k", lw=1.6, label="truth")
    n = max(len(hists), 1)
    for k, (name, (mean, sd)) in enumerate(hists.items()):
        shift = (k - (n - 1) / 2) * 0.12 * width
        ax.errorbar(centres + shift, mean, yerr=sd, fmt="o", ms=3.5, capsize=2, label=name)
    ax.set_xlabel(f"{column} [{unit}]" if unit else column)
    ax.set_ylabel("probability per bin")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120, tight=False)


def run_unfold(config: UnfoldConfig | str | os.PathLike[str], out: str | os.PathLike[str],
               overrides: Sequence[str] = (), progress: Callable[[int, int], None] | None = None) -> UnfoldResult:
    """Run every method of the config and write ``out`` (see the module docstring); CLI ``rarefy unfold``.

    ``out`` must be new, empty or an earlier ``rarefy unfold`` folder, and is locked for
    the whole job. Bad input raises a one-line :class:`InputError` before any method runs;
    nothing is written until every method has finished. ``progress(done, total)`` is
    called after each method.
    """
    if isinstance(config, UnfoldConfig):
        cfg = config
        if overrides:
            from ..config.load import unfold_config_from_dict

            cfg = unfold_config_from_dict(config.model_dump(mode="json", by_alias=True), overrides=overrides)
    else:
        cfg = load_unfold_config(config, overrides)
    out = Path(out).absolute()
    check_output(out, folder=True)
    methods = {name: build_method(name, settings) for name, settings in cfg.methods.items()}
    with run_dir_lock(out, "rarefy unfold", kind="unfold"):
        return _run(cfg, out, methods, progress)


def _run(cfg: UnfoldConfig, out: Path, methods: dict[str, Any], progress: Callable[[int, int], None] | None
         ) -> UnfoldResult:
    t0 = time.perf_counter()
    case, hidden = None, None
    if cfg.case is not None:
        case = case_of(cfg)
        problem, _ = case.problem(cfg.case.n_sim, cfg.case.n_data, cfg.seed)
        hidden = case.sample_truth(TRUTH_DRAWS, np.random.default_rng([int(cfg.seed), 97]))
    else:
        problem = read_unfold_problem(cfg)
    edges = _edges(cfg, problem, case)
    summary: dict[str, Any] = {"seed": cfg.seed, "n_sim": problem.n_sim, "n_data": problem.n_data,
                               "sim_efficiency": problem.efficiency(), "gen": list(problem.gen_names),
                               "rec": list(problem.rec_names), "edges": {k: v.tolist() for k, v in edges.items()},
                               "setup_s": time.perf_counter() - t0}
    if cfg.case is not None:
        summary["case"] = cfg.case.model_dump()
        summary["truth"] = case.moments()
    results: dict[str, Unfolded] = {}
    report: dict[str, Any] = {}
    if progress is not None:
        progress(0, len(methods))
    for k, (name, method) in enumerate(methods.items()):
        if name == "ibu" and not any(key in (cfg.methods[name] or {}) for key in ("edges", "range", "bins")):
            from dataclasses import replace

            col = method.column or problem.gen_names[0]
            if col in edges:
                method = replace(method, edges=edges[col].tolist())
        log.info("unfold: %s on %d simulated and %d measured events", name, problem.n_sim, problem.n_data)
        t = time.perf_counter()
        res = method.unfold(problem, cfg.seed)
        wall = time.perf_counter() - t
        results[name] = res
        report[name] = _method_report(res, wall, edges, case, hidden)
        if progress is not None:
            progress(k + 1, len(methods))
    summary["methods"] = report
    summary["wall_s"] = time.perf_counter() - t0
    # everything is computed: now write
    rows = []
    for col, e in edges.items():
        j = problem.gen_names.index(col)
        prior, _ = np.histogram(problem.sim_gen[:, j], bins=e, weights=problem.sim_weight)
        prior = prior / problem.sim_weight.sum()
        truth = case.bin_probabilities(e) if case is not None else None
        rows += _rows("prior", col, e, prior, np.zeros_like(prior), truth)
        hists = {}
        for name, res in results.items():
            if col in res.names:
                hists[name] = res.histogram(col, e)
                rows += _rows(name, col, e, *hists[name], truth)
        if cfg.plots:
            where = f"{cfg.case.kind} case, " if cfg.case is not None else ""
            plot_unfolded(col, e, hists, out / f"unfold_{col}.png", truth=truth, prior=prior,
                          unit=_unit(col, cfg.case.kind if cfg.case is not None else None),
                          title=f"{where}{problem.n_data} measured events, seed {cfg.seed}")
    import pandas as pd

    with atomic_path(out / "histograms.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    write_json(out / "metrics.json", summary)
    return UnfoldResult(out, summary, results)


def _rows(method: str, col: str, e: np.ndarray, mean: np.ndarray, sd: np.ndarray,
          truth: np.ndarray | None) -> list[dict[str, Any]]:
    return [{"method": method, "column": col, "low": float(e[b]), "high": float(e[b + 1]), "mean": float(mean[b]),
             "sd": float(sd[b]), "truth": float(truth[b]) if truth is not None else None}
            for b in range(len(e) - 1)]


def _method_report(res: Unfolded, wall: float, edges: dict[str, np.ndarray], case: Any,
                   hidden: np.ndarray | None) -> dict[str, Any]:
    info = {k: v for k, v in res.info.items() if isinstance(v, (int, float, str, bool))}
    cols: dict[str, Any] = {}
    for j, col in enumerate(res.names):
        if col not in edges:
            continue
        if case is not None and hidden is not None:
            truth = case.moments()
            c = M.moment_errors(res, col, truth["mean"], truth["width"])
            mean, sd = res.histogram(col, edges[col])
            p = case.bin_probabilities(edges[col])
            x = hidden if hidden.ndim == 1 else hidden[:, j]
            c.update(wasserstein=M.wasserstein(res, col, x), coverage=M.coverage(mean, sd, p),
                     chi2_ndf=M.chi2_per_ndf(mean, sd, p))
        else:
            c = res.moments(col)
        cols[col] = c
    return {"wall_s": wall, "members": len(res.members), "info": info, "columns": cols}
