"""Simulators that misbehave on purpose, for the campaign tests (imported by path, also in worker processes)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from rarefy import simulators
from rarefy.simulators.testing import toy

# An external command for the timeout tests: it starts a grandchild (``sleep``), writes both pids into the
# folder argv[1] and sleeps far past any timeout of the tests.
PID_SCRIPT = """
import os, subprocess, sys, time
child = subprocess.Popen(["sleep", "120"])
for pid in (os.getpid(), child.pid):
    with open(os.path.join(sys.argv[1], f"{pid}.tmp"), "w"):
        pass
    os.replace(os.path.join(sys.argv[1], f"{pid}.tmp"), os.path.join(sys.argv[1], str(pid)))
time.sleep(120)
"""


def no_events(theta: Mapping[str, float], n: int, fidelity: str, seed: int) -> pd.DataFrame:
    """Zero rows with the right columns."""
    return toy(theta, n, fidelity, seed).iloc[:0]


def killer(theta: Mapping[str, float], n: int, fidelity: str, seed: int, marker_dir: str,
           when_x_above: float = 0.6) -> pd.DataFrame:
    """Like ``toy``; but the first attempt of a run with ``x > when_x_above`` kills its own process (SIGKILL).

    The marker file ``marker_dir/<seed>`` remembers the attempt, so the next one succeeds.
    """
    if theta["x"] > when_x_above:
        marker = Path(marker_dir) / str(seed)
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
    return toy(theta, n, fidelity, seed)


class LoggedModerator:
    """The built-in moderator, ``sleep_s`` seconds slower per run; each finished simulation appends
    ``seed fidelity n k unix_time`` to the file ``log``."""

    def __init__(self, log: str, sleep_s: float = 0.0) -> None:
        self.log = log
        self.sleep_s = sleep_s
        self.impl = simulators.get("moderator")
        self.space = self.impl.space
        self.fidelities = self.impl.fidelities
        self.expected_rate = self.impl.expected_rate

    def simulate(self, theta: dict[str, float], n: int, fidelity: str, seed: int) -> Any:
        time.sleep(self.sleep_s)
        events = self.impl.simulate(theta, n, fidelity, seed)
        with open(self.log, "a") as fh:  # one short line per write: appends do not interleave
            fh.write(f"{seed} {fidelity} {events.n} {events.k} {time.time():.3f}\n")
        return events
