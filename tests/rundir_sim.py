"""A simulator for the run-directory tests: it logs every execution and can wait for a gate file.

Imported by path (``rundir_sim:logged``) by campaigns that run in the test process and in
the subprocesses the tests start (with ``tests/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import time
from typing import Mapping

import pandas as pd

from rarefy.simulators.testing import toy


def logged(theta: Mapping[str, float], n: int, fidelity: str, seed: int, log: str, gate: str = "",
           sleep_s: float = 0.0) -> pd.DataFrame:
    """:func:`rarefy.simulators.testing.toy`, after appending ``seed`` to the file ``log``.

    With ``gate`` it then waits (at most 120 s) until that file exists; ``sleep_s`` seconds
    of sleep follow.
    """
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{seed}\n".encode())
    finally:
        os.close(fd)
    deadline = time.monotonic() + 120.0
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    if sleep_s > 0:
        time.sleep(sleep_s)
    return toy(theta, n, fidelity, seed)
