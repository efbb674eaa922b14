"""The ``rarefy`` command line (typer). Every command calls a public Python function.

==============================================  =====================================
command                                         Python equivalent
==============================================  =====================================
``rarefy fit CONFIG --out RUN_DIR [--cv K]``    :func:`rarefy.fit`
``rarefy validate RUN_DIR DATA --json OUT``     :func:`rarefy.validate`
``rarefy simulate CONFIG --out RUN_DIR``        :func:`rarefy.simulate`
``rarefy train CONFIG --run RUN_DIR``           :func:`rarefy.train_denoiser`
``rarefy denoise RUN_DIR``                      :func:`rarefy.denoise_run`
``rarefy infer CONFIG --out RUN_DIR``           :func:`rarefy.infer`
``rarefy run CONFIG --out RUN_DIR``             :func:`rarefy.run`
``rarefy suggest RUN_DIR --n K``                :func:`rarefy.suggest`
``rarefy ingest RUN_DIR FILES...``              :func:`rarefy.ingest`
``rarefy optimize RUN_DIR``                     :func:`rarefy.optimize_run`
``rarefy report RUN_DIR``                       :func:`rarefy.loop_report`
``rarefy bench CONFIG --out DIR``               :func:`rarefy.bench`
``rarefy generate train CONFIG --run RUN_DIR``  :func:`rarefy.train_generator`
``rarefy generate sample RUN_DIR ...``          :func:`rarefy.sample_generator`
``rarefy anomaly CONFIG --out DIR``             :func:`rarefy.run_anomaly`
``rarefy unfold CONFIG --out DIR``              :func:`rarefy.run_unfold`
==============================================  =====================================

Every command that reads a CONFIG takes ``--set KEY=VALUE`` (repeatable): dotted keys
(``surrogate.kind=pce``, ``space.parameters.radius.high=200``, ``campaign.runs.0.events=1000``,
``fidelities.hf.cost_cpu_h=170``) with YAML values, applied to the YAML before it is
validated (:mod:`rarefy.config.load`; Python: the jobs' ``overrides=[...]``).

Bad input (a missing column, a NaN, an unknown fidelity, ...) prints one line naming
the file, column and row to stderr and exits with code 2. As a last resort, a file-system
error that no reader turned into such a line (it names its path) and running out of
memory end the same way; any other exception is a bug and shows its traceback.

Logging: rarefy's INFO messages by default; ``-v`` adds rarefy's DEBUG messages and the
INFO messages of other libraries (dask's scheduler and workers, ...), ``-vv`` everything.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import click
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from .errors import InputError

console = Console()
err_console = Console(stderr=True)


class Commands(TyperGroup):
    """rarefy's commands: an :class:`InputError` becomes one line on stderr and exit code 2.

    So do, as a backstop behind the readers' own checks, an ``OSError`` that names a path
    (missing, unreadable or unwritable file or folder) and a ``MemoryError``.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as exc:
            message = str(exc)
        except OSError as exc:
            if exc.filename is None:  # not about a path: a bug or the system, keep the traceback
                raise
            where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
            message = f"{where}: {exc.strerror or exc}"
        except MemoryError:
            message = "out of memory: the config or options ask for more than this machine has; lower the sizes"
        err_console.print(f"error: {' '.join(message.split())}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2)


app = typer.Typer(cls=Commands, add_completion=False, no_args_is_help=True,
                  help="rarefy: surrogates for expensive rare-event simulations.")


class OtherLibraries(logging.Filter):
    """Pass rarefy's records, and other libraries' from ``level`` up.

    Libraries that set their own loggers' levels (dask's ``distributed`` sets INFO when it
    is imported, whatever the root level) would otherwise flood the terminal.
    """

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "rarefy" or record.name.startswith("rarefy.") or record.levelno >= self.level


def setup_logging(verbose: int) -> None:
    """Log to stderr: rarefy's INFO (DEBUG with ``-v``), other libraries' WARNING (INFO with ``-v``, DEBUG with ``-vv``)."""
    others = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    handler = RichHandler(console=err_console, show_path=False)
    handler.addFilter(OtherLibraries(others))
    logging.basicConfig(level=others, format="%(message)s", datefmt="[%X]", handlers=[handler], force=True)
    logging.getLogger("rarefy").setLevel(logging.DEBUG if verbose >= 1 else logging.INFO)


def version_callback(value: bool) -> None:
    """``--version``: print ``rarefy X.Y.Z`` and exit."""
    if value:
        from . import __version__

        console.print(f"rarefy {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True,
                                help="More log output: -v adds DEBUG and other libraries' INFO (dask), -vv all."),
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                 help="Print rarefy's version and exit."),
) -> None:
    setup_logging(verbose)


def set_option() -> Any:
    """The ``--set KEY=VALUE`` option of the commands that read a config."""
    return typer.Option(None, "--set", metavar="KEY=VALUE",
                        help="Override a config value before validation (repeatable): dotted keys, YAML values, "
                             "e.g. --set surrogate.kind=pce --set campaign.runs.0.events=1000.")


def progress_bar() -> Progress:
    """The rich progress bar used by long commands."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=False)


def metrics_table(title: str, metrics: dict[str, float]) -> Table:
    """A two-column table of named numbers (integers as they are, floats to 4 significant digits)."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, (int, float)):
            table.add_row(key, f"{value:d}" if isinstance(value, int) else f"{value:.4g}")
    return table


def theta_table(rows: list[tuple[str, str, str]], title: str = "θ*") -> Table:
    """θ as a table: parameter, value (already formatted), unit."""
    table = Table(title=title)
    table.add_column("parameter")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for row in rows:
        table.add_row(*row)
    return table


@app.command()
def fit(
    config: Path = typer.Argument(..., help="Run config (YAML)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write."),
    cv: Optional[int] = typer.Option(None, "--cv", help="Also run K-fold cross-validation over the target runs."),
    overrides: Optional[list[str]] = set_option(),
) -> None:
    """Fit the multi-fidelity surrogate and save it with the resolved config."""
    from .jobs.fit import fit as fit_run

    with lazy_progress("cross-validation folds") as update:
        result = fit_run(config, out, cv=cv, progress=update, overrides=overrides or ())
    console.print(f"fitted {result.surrogate.fidelities} in {result.surrogate.info.seconds:.1f} s -> {out}")
    if result.cv is not None:
        console.print(metrics_table(f"{cv}-fold cross-validation of {result.surrogate.fidelities[-1]!r}", result.cv.metrics))


@app.command()
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
def simulate(
    config: Path = typer.Argument(..., help="Config (YAML) with 'simulator' and 'campaign' sections."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory; re-running on it resumes the campaign."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also redo runs that failed for good before."),
    overrides: Optional[list[str]] = set_option(),
) -> None:
    """Run (or resume) a simulation campaign and write RUN_DIR/rates.parquet."""
    from .jobs.simulate import simulate as simulate_run

    result = simulate_run(config, out, retry_failed=retry_failed, progress=True, overrides=overrides or ())
    console.print(result.summary())


@contextlib.contextmanager
def lazy_progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """Yield ``update(done, total)`` of a progress bar that appears with the first update (so input
    errors print alone) and stops on exit."""
    bar = progress_bar()
    task: list[Any] = []

    def update(done: int, total: int) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(description, total=total))
        bar.update(task[0], completed=done, total=total)

    try:
        yield update
    finally:
        bar.stop()


@app.command()
def train(
    config: Path = typer.Argument(..., help="Config (YAML) whose 'denoise' section drives the training."),
    run_dir: Path = typer.Option(..., "--run", "-r", help="Run directory written by 'rarefy simulate'."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the denoiser's seed."),
    overrides: Optional[list[str]] = set_option(),
) -> None:
    """Train the denoiser on the events in RUN_DIR (resumes); write RUN_DIR/denoise and the split column."""
    from .jobs.denoise import train_denoiser

    with lazy_progress("denoiser epochs") as update:
        result = train_denoiser(config, run_dir, seed=seed, progress=update, overrides=overrides or ())
    console.print(result.summary())


@app.command()
def denoise(
    run_dir: Path = typer.Argument(..., help="Run directory with a trained denoiser ('rarefy train')."),
) -> None:
    """Score the events of every run and add the '<fidelity>-denoised' rows to RUN_DIR/rates.parquet."""
    from .jobs.denoise import denoise_run

    with lazy_progress("runs scored") as update:
        result = denoise_run(run_dir, progress=update)
    console.print(result.summary())


@app.command()
def run(
    config: Path = typer.Argument(..., help="Config (YAML) with 'simulator', 'campaign' (initial design) and 'loop'."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory; re-running on it resumes the loop."),
    overrides: Optional[list[str]] = set_option(),
) -> None:
    """Closed loop: initial design, then fit -> acquire -> simulate rounds, optimum, HF verification."""
    from .jobs.loop import run as run_loop

    with lazy_progress("loop iterations") as update:
        result = run_loop(config, out, progress=False, on_iteration=update, overrides=overrides or ())
    rows = result.theta_rows()
    if rows:
        console.print(theta_table(rows))
    for line in result.summary(theta=False):
        console.print(line)


@app.command()
def suggest(
    run_dir: Path = typer.Argument(..., help="Run directory (from 'rarefy simulate', 'run' or 'fit')."),
    n: int = typer.Option(1, "--n", "-n", help="Number of runs to propose."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="CSV to write (default RUN_DIR/suggestions.csv)."),
    kind: Optional[str] = typer.Option(None, "--kind", help="Acquisition: ivr, maxvar, ei or lcb (default: config)."),
    cost_aware: Optional[bool] = typer.Option(None, "--cost-aware/--target-only",
                                              help="Choose the fidelity by value per CPU-hour (default: config)."),
    events: Optional[list[str]] = typer.Option(
        None, "--events", metavar="[FIDELITY=]N",
        help="Events per proposed run (repeatable): N for every fidelity or FIDELITY=N (default: the config's, "
             "else the runs so far)."),
) -> None:
    """Propose the next runs (θ, fidelity, events) as CSV."""
    from .jobs.suggest import suggest as suggest_runs

    frame = suggest_runs(run_dir, n, out=out, kind=kind, cost_aware=cost_aware, events=events or None)
    table = Table(title=f"{len(frame)} suggested runs")
    for col in frame.columns:
        table.add_column(col, justify="left" if col == "fidelity" else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    console.print(f"-> {out or Path(run_dir) / 'suggestions.csv'}")


@app.command()
def ingest(
    run_dir: Path = typer.Argument(..., help="Run directory to add runs to."),
    files: list[Path] = typer.Argument(..., help="CSV/Parquet files: runs (θ, fidelity, k, n) or events (θ, fidelity, outcome)."),
) -> None:
    """Add runs simulated elsewhere to RUN_DIR/ingested.parquet."""
    from .jobs.ingest import ingest as ingest_runs

    console.print(ingest_runs(run_dir, files).summary())


@app.command()
def optimize(
    run_dir: Path = typer.Argument(..., help="Run directory with a fitted surrogate ('rarefy fit' or 'rarefy run')."),
    objective: Optional[str] = typer.Option(None, "--objective", help="mean or ucb (default: config)."),
    kappa: Optional[float] = typer.Option(None, "--kappa", help="UCB: mean + kappa * std (default: config)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result here."),
) -> None:
    """Minimise the predicted target rate over the feasible designs; writes RUN_DIR/optimum.json."""
    from .jobs.optimize import optimize_run

    result = optimize_run(run_dir, objective=objective, kappa=kappa, json_out=json_out)
    console.print(theta_table(result.theta_rows()))
    for line in result.summary(theta=False):
        console.print(line)


@app.command()
def infer(
    config: Path = typer.Argument(..., help="Config (YAML) with an 'infer' section."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write."),
    overrides: Optional[list[str]] = set_option(),
) -> None:
    """Sample the posterior of θ given an observed merger rate, with the surrogate as forward model."""
    from .inference.run import infer as infer_run

    result = infer_run(config, out, overrides=overrides or ())
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
def report(run_dir: Path = typer.Argument(..., help="Run directory of a finished 'rarefy run'.")) -> None:
    """Write RUN_DIR/report/ (index.html + PNG plots) for a closed-loop run."""
    from .report.loop_report import loop_report

    console.print(f"report -> {loop_report(run_dir)}")


@app.command()
def bench(
    config: Path = typer.Argument(..., help="Config (YAML) with a 'bench' section."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: bench.json, bench_meta.json, pr_curves.png."),
    overrides: Optional[list[str]] = set_option(),
) -> None:
    """Train and compare the config's event-level backends on one by-run split (model zoo)."""
    from .jobs.bench import bench as run_bench

    with lazy_progress("bench") as update:
        result = run_bench(config, out, progress=lambda stage, done, total: update(done, total),
                           overrides=overrides or ())
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


generate_app = typer.Typer(cls=Commands, add_completion=False, no_args_is_help=True,
                           help="Conditional normalizing-flow event generator p(φ | θ).")
app.add_typer(generate_app, name="generate")


@generate_app.command("train")
def generate_train(
    config: Path = typer.Argument(..., help="Config (YAML) whose 'generate' section drives the training."),
    run_dir: Path = typer.Option(..., "--run", "-r", help="Run directory written by 'rarefy simulate'."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the generator's seed."),
    restart: bool = typer.Option(False, "--restart", help="Discard an earlier training's checkpoint first."),
    overrides: Optional[list[str]] = set_option(),
) -> None:
    """Train p(φ | θ) on one fidelity's events in RUN_DIR (resumes); write RUN_DIR/generate."""
    from .jobs.generate import train_generator

    with lazy_progress("generator epochs") as update:
        result = train_generator(config, run_dir, seed=seed, progress=update, overrides=overrides or (),
                                 restart=restart)
    last = result.history[-1] if result.history else {}
    console.print(f"generator of p({', '.join(result.phi)} | θ) on {result.fidelity}: {len(result.history)} epochs, "
                  f"validation NLL {last.get('val_nll', float('nan')):.4g}, {result.wall_s:.1f} s -> {result.folder}")


@generate_app.command("sample")
def generate_sample(
    run_dir: Path = typer.Argument(..., help="Run directory with a trained generator ('rarefy generate train')."),
    theta: list[str] = typer.Option(..., "--theta", metavar="NAME=VALUE", help="Design parameter (repeat for each)."),
    n: int = typer.Option(..., "--n", "-n", help="Number of events."),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    outcome: Optional[int] = typer.Option(None, "--outcome", help="0 or 1: sample p(φ | θ, y) (conditioned generators)."),
) -> None:
    """Draw N events at design θ from the generator in RUN_DIR and write them as Parquet."""
    from .jobs.generate import parse_theta, sample_generator

    frame = sample_generator(run_dir, parse_theta(theta), n, out=out, seed=seed, outcome=outcome)
    console.print(f"{len(frame)} events -> {out}")


@app.command()
def anomaly(
    config: Path = typer.Argument(..., help="Anomaly config (YAML): signal_region, data or synthetic, flow, classifier."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: scores.parquet, summary.json (sic.png)."),
    overrides: Optional[list[str]] = set_option(),
) -> None:
    """CATHODE search for an overdensity in a signal region of m (sideband flow + k-fold classifier)."""
    from .anomaly.run import run_anomaly

    result = run_anomaly(config, out, overrides=overrides or ())
    for line in result.lines():
        console.print(line, markup=False, highlight=False)


@app.command()
def unfold(
    config: Path = typer.Argument(..., help="Unfold config (YAML): data files or a known-truth case, methods, bins."),
    out: Path = typer.Option(..., "--out", "-o",
                             help="Output folder: histograms.csv, metrics.json, unfold_<column>.png."),
    overrides: Optional[list[str]] = set_option(),
) -> None:
    """Unfold measured events to the generation level with each configured method (IBU, OmniFold, ...)."""
    from .unfold.run import run_unfold

    with lazy_progress("unfolding methods") as update:
        result = run_unfold(config, out, overrides=overrides or (), progress=update)
    for line in result.lines():
        console.print(line, markup=False, highlight=False)


def main() -> None:
    """Console-script entry point.

    SIGTERM (a batch system's or ``kill``'s stop) unwinds as Ctrl-C does: the running simulator
    commands are killed with their process groups on the way out and staged run directories stay
    unpublished; the exit status is then 128 + the signal's number (143).
    """
    terminated: list[int] = []

    def on_sigterm(signum: int, frame: Any) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        app()
    except SystemExit:
        if terminated:
            raise SystemExit(128 + terminated[0]) from None
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
