"""The ``rarefy`` command line (typer). Every command calls a public Python function.

==========================================  =====================================
command                                     Python equivalent
==========================================  =====================================
``rarefy fit CONFIG --out RUN_DIR [--cv K]``  :func:`rarefy.fit`
``rarefy validate RUN_DIR DATA --json OUT``   :func:`rarefy.validate`
``rarefy simulate CONFIG --out RUN_DIR``      :func:`rarefy.simulate`
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
    from .fitting import fit as fit_run

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
    from .fitting import validate as validate_run

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
    from .campaign import simulate as simulate_run

    result = simulate_run(config, out, retry_failed=retry_failed, progress=True)
    console.print(f"{result.n_done} runs done, {result.n_failed} failed of {result.n_runs} "
                  f"({result.n_executed} executed now) in {result.wall_s:.1f} s -> {result.rates_path}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
