"""Adapter for an external simulator program, run once per request without a shell.

The config gives an argument list whose items are ``str.format`` templates::

    command: [python, "{config_dir}/sim.py", --events, "{n}", --seed, "{seed}",
              --radius, "{theta[radius]}", --out, "{output}"]

Placeholders: ``{n}``, ``{seed}``, ``{fidelity}``, ``{run_id}``, ``{output}`` (the file
the program must write), ``{workdir}`` (a fresh scratch folder, also the working
directory), ``{config_dir}`` and ``{theta[NAME]}``. The program runs in its own process
group; its stderr is kept; its CPU time is taken from the kernel's accounting of the child
(``os.wait4``). The output file (CSV, Parquet, HDF5 or ROOT, chosen by suffix) is read
back as events; a file without events is an error.

The process group is killed (SIGKILL) when the request's wall-clock limit ``timeout_s``
passes, when the caller sets the request's ``cancel`` event (the campaign engine does when
its own per-run timer fires first), when the waiting thread is interrupted (Ctrl-C), and
by :func:`kill_running_commands`, which ends every command this process still runs (the
campaign engine calls it when a dask worker closes or restarts). A process killed with
SIGKILL cannot kill its commands: those of a ``kill -9``-ed worker or driver live on.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..data.event_readers import read_events
from ..data.events import EventTable
from ..errors import InputError

__all__ = ["CommandSimulator", "SimulatorError", "SimulatorTimeout", "kill_running_commands"]

log = logging.getLogger(__name__)

STDERR_KEEP = 20_000  # characters of stderr kept per request

# Process groups (= pids of their leaders) of the commands this process runs. A leader leaves the set before it
# is reaped, so a pid in the set still names our group and killing it can never hit a reused pid.
_LIVE: set[int] = set()
_LIVE_LOCK = threading.Lock()


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

    def simulate_detailed(self, theta: dict[str, float], n: int, fidelity: str, seed: int, run_id: str = "",
                          cancel: threading.Event | None = None) -> tuple[EventTable, dict[str, Any]]:
        """Like :meth:`simulate`, also returning ``{"cpu_s": child CPU seconds, "stderr": text}``.

        Setting ``cancel`` (from another thread) kills the command's process group within
        about 50 ms and raises :class:`SimulatorTimeout`.
        """
        if self.scratch_dir is not None:
            Path(self.scratch_dir).mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"rarefy-{run_id or 'run'}-", dir=self.scratch_dir))
        try:
            output = workdir / self.output
            args = self._args(theta, n, fidelity, seed, run_id, output, workdir)
            cpu_s, stderr = self._run(args, workdir, cancel)
            if not output.exists():
                raise SimulatorError(f"command wrote no output file {self.output!r}; stderr: {_tail(stderr)}")
            no_events = SimulatorError(f"command wrote no events to {self.output!r} (asked for {n}); "
                                       f"stderr: {_tail(stderr)}")
            if output.stat().st_size == 0:
                raise no_events
            spec = self.events
            try:
                events = read_events(output, columns=spec.get("columns"), theta=list(theta), phi=spec.get("phi"),
                                     outcome=spec.get("outcome", "outcome"), weight=spec.get("weight"),
                                     key=spec.get("key"), fidelity=fidelity, theta_values=theta)
            except InputError as exc:
                raise SimulatorError(f"output of {Path(args[0]).name}: {exc.reason}"
                                     + (f" (column {exc.column!r})" if exc.column else "")) from None
            if events.n == 0:
                raise no_events
            events = events.with_run(theta=theta)
            return events, {"cpu_s": cpu_s, "stderr": stderr}
        finally:
            if not self.keep_scratch:
                shutil.rmtree(workdir, ignore_errors=True)

    def _run(self, args: list[str], workdir: Path, cancel: threading.Event | None = None) -> tuple[float, str]:
        env = {**os.environ, **self.env}
        err_path = workdir / ".stderr"
        with open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                        cwd=workdir, env=env, start_new_session=True)
            except OSError as exc:
                raise SimulatorError(f"cannot start {args[0]!r}: {exc}") from None
            with _LIVE_LOCK:
                _LIVE.add(proc.pid)
            start = time.monotonic()
            delay = 0.001
            stopped = ""
            try:
                while not _exited(proc.pid):
                    if cancel is not None and cancel.is_set():
                        stopped = "command killed"
                    elif self.timeout_s is not None and time.monotonic() - start > self.timeout_s:
                        stopped = f"command timed out after {self.timeout_s:g} s"
                    if stopped:
                        _kill_group(proc.pid)
                        break
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            except BaseException:  # interrupted while waiting (Ctrl-C): the command must not outlive us
                _kill_group(proc.pid)
                _reap(proc.pid)
                raise
            status, rusage = _reap(proc.pid)
            proc.returncode = os.waitstatus_to_exitcode(status)
        stderr = _read_text(err_path)
        if stopped:
            raise SimulatorTimeout(f"{stopped}; stderr: {_tail(stderr)}")
        if proc.returncode != 0:
            raise SimulatorError(f"command exited with status {proc.returncode}; stderr: {_tail(stderr)}")
        cpu_s = float(rusage.ru_utime + rusage.ru_stime)
        return cpu_s, stderr

    def __repr__(self) -> str:
        return f"CommandSimulator({self.command!r})"


def kill_running_commands() -> int:
    """Kill (SIGKILL) the process group of every command this process runs; returns how many.

    The waiting :meth:`CommandSimulator.simulate_detailed` calls then fail with the
    commands' exit status. Safe to call from any thread or at any time.
    """
    with _LIVE_LOCK:
        pids = sorted(_LIVE)
        for pid in pids:
            _signal_group(pid)
    if pids:
        log.warning("killed %d running simulator command(s) with their process groups", len(pids))
    return len(pids)


def _signal_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass


def _kill_group(pid: int) -> None:
    """Kill the process group led by our un-reaped child ``pid``."""
    with _LIVE_LOCK:
        if pid in _LIVE:
            _signal_group(pid)


def _exited(pid: int) -> bool:
    """True once our child ``pid`` has ended (it is left un-reaped, so its pid stays ours)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _reap(pid: int) -> tuple[int, Any]:
    """Wait for our child ``pid`` to end and reap it: (wait status, resource usage)."""
    with _LIVE_LOCK:
        _LIVE.discard(pid)
    _, status, rusage = os.wait4(pid, 0)
    return status, rusage


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
