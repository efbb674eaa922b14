"""Adapter for an external simulator program, run once per request without a shell.

The config gives an argument list whose items are ``str.format`` templates::

    command: [python, "{config_dir}/sim.py", --events, "{n}", --seed, "{seed}",
              --radius, "{theta[radius]}", --out, "{output}"]

Placeholders: ``{n}``, ``{seed}``, ``{fidelity}``, ``{run_id}``, ``{output}`` (the file
the program must write), ``{workdir}`` (a fresh scratch folder, also the working
directory), ``{config_dir}`` and ``{theta[NAME]}``. The program runs with a wall-clock
timeout in its own process group (killed as a group on timeout); its stderr is kept;
its CPU time is taken from the kernel's accounting of the child (``os.wait4``). The
output file (CSV, Parquet, HDF5 or ROOT, chosen by suffix) is read back as events.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..data.event_readers import read_events
from ..data.events import EventTable
from ..errors import InputError

__all__ = ["CommandSimulator", "SimulatorError", "SimulatorTimeout"]

log = logging.getLogger(__name__)

STDERR_KEEP = 20_000  # characters of stderr kept per request


class SimulatorError(RuntimeError):
    """A simulator request failed (non-zero exit, no output, unreadable output)."""


class SimulatorTimeout(SimulatorError):
    """A simulator request ran past its wall-clock limit."""


class CommandSimulator:
    """Run an external command per request and read the file it writes (see module docstring)."""

    def __init__(
        self,
        command: Sequence[str],
        output: str = "events.parquet",
        *,
        timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
        events: Mapping[str, Any] | None = None,
        config_dir: str | os.PathLike[str] = ".",
        scratch_dir: str | os.PathLike[str] | None = None,
        keep_scratch: bool = False,
    ) -> None:
        if not command:
            raise InputError("the simulator command is empty")
        self.command = [str(c) for c in command]
        self.output = output
        self.timeout_s = timeout_s
        self.env = dict(env or {})
        self.events = dict(events or {})
        self.config_dir = str(Path(config_dir).absolute())
        self.scratch_dir = None if scratch_dir is None else str(scratch_dir)
        self.keep_scratch = keep_scratch

    def _args(self, theta: Mapping[str, float], n: int, fidelity: str, seed: int, run_id: str,
              output: Path, workdir: Path) -> list[str]:
        values = dict(n=n, seed=seed, fidelity=fidelity, run_id=run_id, output=str(output), workdir=str(workdir),
                      config_dir=self.config_dir, theta=_ThetaView(theta))
        args = []
        for item in self.command:
            try:
                args.append(item.format(**values))
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                raise InputError(f"simulator command item {item!r}: bad placeholder ({exc!r}); known: "
                                 f"{', '.join(sorted(values))}, theta[NAME]") from None
        return args

    def simulate(self, theta: dict[str, float], n: int, fidelity: str, seed: int) -> EventTable:
        """Run the command for one request and return its events."""
        return self.simulate_detailed(theta, n, fidelity, seed)[0]

    def simulate_detailed(self, theta: dict[str, float], n: int, fidelity: str, seed: int,
                          run_id: str = "") -> tuple[EventTable, dict[str, Any]]:
        """Like :meth:`simulate`, also returning ``{"cpu_s": child CPU seconds, "stderr": text}``."""
        if self.scratch_dir is not None:
            Path(self.scratch_dir).mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"rarefy-{run_id or 'run'}-", dir=self.scratch_dir))
        try:
            output = workdir / self.output
            args = self._args(theta, n, fidelity, seed, run_id, output, workdir)
            cpu_s, stderr = self._run(args, workdir)
            if not output.exists():
                raise SimulatorError(f"command wrote no output file {self.output!r}; stderr: {_tail(stderr)}")
            spec = self.events
            try:
                events = read_events(output, columns=spec.get("columns"), theta=list(theta), phi=spec.get("phi"),
                                     outcome=spec.get("outcome", "outcome"), weight=spec.get("weight"),
                                     key=spec.get("key"), fidelity=fidelity, theta_values=theta)
            except InputError as exc:
                raise SimulatorError(f"output of {Path(args[0]).name}: {exc.reason}"
                                     + (f" (column {exc.column!r})" if exc.column else "")) from None
            events = events.with_run(theta=theta)
            return events, {"cpu_s": cpu_s, "stderr": stderr}
        finally:
            if not self.keep_scratch:
                shutil.rmtree(workdir, ignore_errors=True)

    def _run(self, args: list[str], workdir: Path) -> tuple[float, str]:
        env = {**os.environ, **self.env}
        err_path = workdir / ".stderr"
        with open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                        cwd=workdir, env=env, start_new_session=True)
            except OSError as exc:
                raise SimulatorError(f"cannot start {args[0]!r}: {exc}") from None
            start = time.monotonic()
            delay = 0.001
            status = rusage = None
            while True:
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if self.timeout_s is not None and time.monotonic() - start > self.timeout_s:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    _, status, rusage = os.wait4(proc.pid, 0)
                    proc.returncode = -9
                    stderr = _read_text(err_path)
                    raise SimulatorTimeout(f"command timed out after {self.timeout_s:g} s; stderr: {_tail(stderr)}")
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            proc.returncode = os.waitstatus_to_exitcode(status)
        stderr = _read_text(err_path)
        if proc.returncode != 0:
            raise SimulatorError(f"command exited with status {proc.returncode}; stderr: {_tail(stderr)}")
        cpu_s = float(rusage.ru_utime + rusage.ru_stime) if rusage is not None else float("nan")
        return cpu_s, stderr

    def __repr__(self) -> str:
        return f"CommandSimulator({self.command!r})"


class _ThetaView(dict):
    """θ for ``{theta[NAME]}`` templates: a KeyError names the unknown parameter."""


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-STDERR_KEEP:].decode("utf-8", errors="replace")


def _tail(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return (text[-limit:] if len(text) > limit else text) or "(empty)"
