"""The ``rarefy`` command line (typer). Every command calls a public Python function.

==========================================  =====================================
command                                     Python equivalent
==========================================  =====================================
``rarefy fit CONFIG --out RUN_DIR [--cv K]``  :func:`rarefy.fit`
``rarefy validate RUN_DIR DATA --json OUT``   :func:`rarefy.validate`
``rarefy simulate CONFIG --out RUN_DIR``      :func:`rarefy.simulate`
``rarefy train CONFIG --run RUN_DIR``         :func:`rarefy.train_denoiser`
``rarefy denoise RUN_DIR``                    :func:`rarefy.denoise_run`
``rarefy infer CONFIG --out RUN_DIR``         :func:`rarefy.infer`
``rarefy run CONFIG --out RUN_DIR``           :func:`rarefy.run`
``rarefy suggest RUN_DIR --n K``              :func:`rarefy.suggest`
``rarefy ingest RUN_DIR FILES...``            :func:`rarefy.ingest`
``rarefy optimize RUN_DIR``                   :func:`rarefy.optimize_run`
``rarefy report RUN_DIR``                     :func:`rarefy.loop_report`
``rarefy bench CONFIG --out DIR``             :func:`rarefy.bench`
==========================================  =====================================

Bad input (a missing column, a NaN, an unknown fidelity, ...) prints one line naming
the file, column and row to stderr and exits with code 2.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="rarefy: surrogates for expensive rare-event simulations.")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _main(verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v, -vv).")) -> None:
    # rarefy's own INFO messages by default, DEBUG with -v; other libraries' (dask, ...) only with -vv
    logging.basicConfig(level=logging.DEBUG if verbose >= 2 else logging.WARNING, format="%(message)s",
                        datefmt="[%X]", handlers=[RichHandler(console=err_console, show_path=False)], force=True)
    logging.getLogger("rarefy").setLevel(logging.DEBUG if verbose >= 1 else logging.INFO)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`InputError` into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


def progress_bar() -> Progress:
    """The rich progress bar used by long commands."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=False)


def metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, (int, float)):
            table.add_row(key, f"{value:d}" if isinstance(value, int) else f"{value:.4g}")
    return table


@app.command()
@handle_errors
def fit(
    config: Path = typer.Argument(..., help="Run config (YAML)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write."),
    cv: Optional[int] = typer.Option(None, "--cv", help="Also run K-fold cross-validation over the target runs."),
) -> None:
    """Fit the multi-fidelity surrogate and save it with the resolved config."""
    from .jobs.fit import fit as fit_run

    with progress_bar() as bar:
        task = bar.add_task("cross-validation folds", total=cv or 0, visible=cv is not None)
        result = fit_run(config, out, cv=cv, progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"fitted {result.surrogate.fidelities} in {result.surrogate.info.seconds:.1f} s -> {out}")
    if result.cv is not None:
        console.print(metrics_table(f"{cv}-fold cross-validation of {result.surrogate.fidelities[-1]!r}", result.cv.metrics))


@app.command()
@handle_errors
def validate(
    run_dir: Path = typer.Argument(..., help="Run directory written by 'rarefy fit'."),
    data: Path = typer.Argument(..., help="Rate file (CSV/Parquet) with target-fidelity runs."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the metrics as JSON here."),
) -> None:
    """Score the surrogate's target-fidelity predictions on held-out runs."""
    from .jobs.fit import validate as validate_run

    result = validate_run(run_dir, data, json_out)
    console.print(metrics_table(f"validation on {data.name}", result.metrics))
    console.print(f"calibration plot: {result.plot}")


@app.command()
@handle_errors
def simulate(
    config: Path = typer.Argument(..., help="Config (YAML) with 'simulator' and 'campaign' sections."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory; re-running on it resumes the campaign."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also redo runs that failed for good before."),
) -> None:
    """Run (or resume) a simulation campaign and write RUN_DIR/rates.parquet."""
    from .jobs.simulate import simulate as simulate_run

    result = simulate_run(config, out, retry_failed=retry_failed, progress=True)
    console.print(f"{result.n_done} runs done, {result.n_failed} failed of {result.n_runs} "
                  f"({result.n_executed} executed now) in {result.wall_s:.1f} s -> {result.rates_path}")


def _lazy_progress(description: str) -> tuple[Progress, Callable[[int, int], None]]:
    """A progress bar that appears with the first update, so input errors print alone."""
    bar = progress_bar()
    task: list[Any] = []

    def update(done: int, total: int) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(description, total=total))
        bar.update(task[0], completed=done, total=total)

    return bar, update


@app.command()
@handle_errors
def train(
    config: Path = typer.Argument(..., help="Config (YAML) whose 'denoise' section drives the training."),
    run_dir: Path = typer.Option(..., "--run", "-r", help="Run directory written by 'rarefy simulate'."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the denoiser's seed."),
) -> None:
    """Train the CNP denoiser on the events in RUN_DIR (resumes); write RUN_DIR/denoise and the split column."""
    from .jobs.denoise import train_denoiser

    bar, update = _lazy_progress("denoiser epochs")
    try:
        result = train_denoiser(config, run_dir, seed=seed, progress=update)
    finally:
        bar.stop()
    tr = result.train
    counts = {s: list(result.split.values()).count(s) for s in ("train", "val", "test")}
    console.print(f"trained on {result.n_events} events of {'/'.join(result.fidelities)}: best epoch {tr.best_epoch} "
                  f"of {tr.epochs_run}, val loss {tr.best_val_loss:.5g}; runs {counts} in {result.wall_s:.1f} s "
                  f"-> {result.model_path}")


@app.command()
@handle_errors
def denoise(
    run_dir: Path = typer.Argument(..., help="Run directory with a trained denoiser ('rarefy train')."),
) -> None:
    """Score the events of every run and add the '<fidelity>-cnp' rows to RUN_DIR/rates.parquet."""
    from .jobs.denoise import denoise_run

    bar, update = _lazy_progress("runs scored")
    try:
        result = denoise_run(run_dir, progress=update)
    finally:
        bar.stop()
    console.print(f"{', '.join(result.fidelities)}: {len(result.table)} runs, {result.n_events} events in "
                  f"{result.wall_s:.1f} s ({result.events_per_s:.3g} events/s) -> {result.rates_path}")


@app.command()
@handle_errors
def run(
    config: Path = typer.Argument(..., help="Config (YAML) with 'simulator', 'campaign' (initial design) and 'loop'."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory; re-running on it resumes the loop."),
) -> None:
    """Closed loop: initial design, then fit -> acquire -> simulate rounds, optimum, HF verification."""
    from .config import load_config
    from .jobs.loop import run as run_loop

    cfg = load_config(config)
    total = cfg.loop.iterations if cfg.loop is not None else 0
    with progress_bar() as bar:
        task = bar.add_task("loop iterations", total=total)
        result = run_loop(config, out, progress=False,
                          on_iteration=lambda i, n: bar.update(task, completed=i, total=n))
        bar.update(task, completed=total)
    r = result.result
    if "pareto_set" in r:  # multi-objective run
        console.print(f"estimated Pareto set: {len(r['pareto_set'])} designs, hypervolume {r['hypervolume']:.4g} "
                      f"(reference {r['reference_point']})")
        console.print(f"{result.iterations} iterations, {r['cost_cpu_h']['total']:.4g} CPU-h nominal, "
                      f"{result.wall_s:.1f} s -> {Path(out) / 'result.json'}, {Path(out) / 'report'}")
        return
    verified = "-" if r["verified_rate"] is None else f"{r['verified_rate']:.4g} ± {r['verified_sigma']:.2g}"
    console.print(f"θ* = {r['optimum']}")
    console.print(f"{r['target']} rate: predicted {r['predicted_rate']:.4g} ± {r['predicted_sigma']:.2g}, "
                  f"verified {verified}")
    if r["reduction"] is not None:
        console.print(f"reduction vs baseline {r['baseline_rate']:.4g}: {100 * r['reduction']:.1f}% "
                      f"± {100 * r['reduction_sigma']:.1f}%")
    console.print(f"{result.iterations} iterations, {r['cost_cpu_h']['total']:.4g} CPU-h nominal, "
                  f"{result.wall_s:.1f} s -> {Path(out) / 'result.json'}")
    console.print(f"report: {Path(out) / 'report' / 'index.html'}")


@app.command()
@handle_errors
def suggest(
    run_dir: Path = typer.Argument(..., help="Run directory (from 'rarefy simulate', 'run' or 'fit')."),
    n: int = typer.Option(1, "--n", "-n", help="Number of runs to propose."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="CSV to write (default RUN_DIR/suggestions.csv)."),
    kind: Optional[str] = typer.Option(None, "--kind", help="Acquisition: ivr, maxvar, ei or lcb (default: config)."),
    cost_aware: Optional[bool] = typer.Option(None, "--cost-aware/--target-only",
                                              help="Choose the fidelity by value per CPU-hour (default: config)."),
) -> None:
    """Propose the next runs (θ, fidelity, events) as CSV."""
    from .jobs.suggest import suggest as suggest_runs

    frame = suggest_runs(run_dir, n, out=out, kind=kind, cost_aware=cost_aware)
    table = Table(title=f"{len(frame)} suggested runs")
    for col in frame.columns:
        table.add_column(col, justify="left" if col == "fidelity" else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    console.print(f"-> {out or Path(run_dir) / 'suggestions.csv'}")


@app.command()
@handle_errors
def ingest(
    run_dir: Path = typer.Argument(..., help="Run directory to add runs to."),
    files: list[Path] = typer.Argument(..., help="CSV/Parquet files: runs (θ, fidelity, k, n) or events (θ, fidelity, outcome)."),
) -> None:
    """Add runs simulated elsewhere to RUN_DIR/ingested.parquet."""
    from .jobs.ingest import ingest as ingest_runs

    result = ingest_runs(run_dir, files)
    console.print(f"{result.n_new} new runs ingested ({result.n_total} in all) -> {result.path}")


@app.command()
@handle_errors
def optimize(
    run_dir: Path = typer.Argument(..., help="Run directory with a fitted surrogate ('rarefy fit' or 'rarefy run')."),
    objective: Optional[str] = typer.Option(None, "--objective", help="mean or ucb (default: config)."),
    kappa: Optional[float] = typer.Option(None, "--kappa", help="UCB: mean + kappa * std (default: config)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result here."),
) -> None:
    """Minimise the predicted target rate over the feasible designs; writes RUN_DIR/optimum.json."""
    from .jobs.optimize import optimize_run

    r = optimize_run(run_dir, objective=objective, kappa=kappa, json_out=json_out)
    console.print(f"θ* = {r.theta}")
    console.print(f"{r.target} rate ({r.objective}): {r.rate:.4g} ± {r.sigma:.2g}")
    if r.reduction is not None:
        console.print(f"reduction vs baseline {r.baseline_rate:.4g} ({r.baseline_source}): "
                      f"{100 * r.reduction:.1f}% ± {100 * r.reduction_sigma:.1f}%")


@app.command()
@handle_errors
def infer(
    config: Path = typer.Argument(..., help="Config (YAML) with an 'infer' section."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write."),
) -> None:
    """Sample the posterior of θ given an observed merger rate, with the surrogate as forward model."""
    from .inference.run import infer as infer_run

    result = infer_run(config, out)
    s = result.summary
    table = Table(title=f"posterior ({s['walkers']} walkers x {s['steps']} steps, max R-hat {s['max_rhat']:.4f})")
    for col in ("parameter", "median", "68% interval", "95% interval", "R-hat"):
        table.add_column(col)
    for name, q in s["parameters"].items():
        table.add_row(name, f"{q['median']:.4g}", f"[{q['ci68'][0]:.4g}, {q['ci68'][1]:.4g}]",
                      f"[{q['ci95'][0]:.4g}, {q['ci95'][1]:.4g}]", f"{s['rhat'].get(name, float('nan')):.4f}")
    console.print(table)
    console.print(f"done in {s['wall_seconds']:.1f} s -> {out} (posterior.nc, corner.png, summary.json)")


@app.command()
@handle_errors
def report(run_dir: Path = typer.Argument(..., help="Run directory of a finished 'rarefy run'.")) -> None:
    """Write RUN_DIR/report/ (index.html + PNG plots) for a closed-loop run."""
    from .report.loop_report import loop_report

    console.print(f"report -> {loop_report(run_dir)}")


@app.command()
@handle_errors
def bench(
    config: Path = typer.Argument(..., help="Config (YAML) with a 'bench' section."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: bench.json, bench_meta.json, pr_curves.png."),
) -> None:
    """Train and compare the config's event-level backends on one by-run split (model zoo)."""
    from .zoo.bench import bench as run_bench

    bar, update = _lazy_progress("bench")

    def step(stage: str, done: int, total: int) -> None:
        update(done, total)

    try:
        result = run_bench(config, out, progress=step)
    finally:
        bar.stop()
    table = Table(title=f"bench: test events {result.meta['data']['test']['events']}, "
                        f"positives {result.meta['data']['test']['positives']}")
    table.add_column("backend")
    for key in ("PR-AUC", "ROC-AUC", "P@R0.40", "P@R0.48", "ECE", "train s", "score s"):
        table.add_column(key, justify="right")
    for label, m in result.metrics.items():
        table.add_row(label, *("-" if m[k] is None else f"{m[k]:.4g}" for k in m))
    for label, err in result.failed.items():
        table.add_row(f"[red]{label}[/red]", "failed", err[:60], "", "", "", "", "")
    console.print(table)
    console.print(f"done in {result.wall_s:.1f} s (CPU {result.cpu_s:.1f} s) -> {result.out} "
                  "(bench.json, bench_meta.json, pr_curves.png)")
    if result.failed:
        raise typer.Exit(code=1)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
