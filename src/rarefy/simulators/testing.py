"""Small simulators for exercising campaigns: they sleep, fail, hang or misbehave on purpose.

They are real simulators (deterministic Bernoulli events with a known rate) with a
controllable run time, used by rarefy's tests and benchmarks and handy for checking a
cluster set-up before pointing it at an expensive simulator. Refer to them by import
path, e.g. ``target: rarefy.simulators.testing:toy``.
"""

from __future__ import annotations

import math
import time
from typing import Mapping

import numpy as np
import pandas as pd

from ..space import DesignSpace, Parameter

__all__ = ["toy", "toy_rate", "toy_space", "failing", "hanging", "missing_columns", "busy"]


def toy_space() -> DesignSpace:
    """Two parameters ``x`` and ``y`` in [0, 1]."""
    return DesignSpace([Parameter("x", 0.0, 1.0), Parameter("y", 0.0, 1.0)])


def toy_rate(theta: Mapping[str, float]) -> float:
    """Mean outcome probability per event of :func:`toy` at ``theta`` (about 0.01 to 0.06)."""
    return 0.01 + 0.05 * math.exp(-((theta["x"] - 0.3) ** 2 + (theta["y"] - 0.6) ** 2) / 0.1)


def toy(theta: Mapping[str, float], n: int, fidelity: str, seed: int, sleep_s: float = 0.0) -> pd.DataFrame:
    """Events with one φ column ``u`` (uniform); outcome probability ``2 * toy_rate * u``.

    Sleeps ``sleep_s`` seconds first (to mimic an expensive simulator).
    """
    if sleep_s > 0:
        time.sleep(sleep_s)
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    outcome = (rng.random(n) < 2.0 * toy_rate(theta) * u).astype(np.int8)
    return pd.DataFrame({"u": u, "outcome": outcome})


def busy(theta: Mapping[str, float], n: int, fidelity: str, seed: int, cpu_s: float = 1.0) -> pd.DataFrame:
    """Like :func:`toy` but burns ``cpu_s`` seconds of CPU first (a compute-bound simulator)."""
    end = time.thread_time() + cpu_s
    x = 0.0
    while time.thread_time() < end:
        for i in range(2000):
            x += math.sqrt(i)
    return toy(theta, n, fidelity, seed)


def failing(theta: Mapping[str, float], n: int, fidelity: str, seed: int, when_x_above: float = 0.5) -> pd.DataFrame:
    """Raise for designs with ``x > when_x_above``; behave like :func:`toy` otherwise."""
    if theta["x"] > when_x_above:
        raise RuntimeError(f"simulated crash at x={theta['x']:.3f}")
    return toy(theta, n, fidelity, seed)


def hanging(theta: Mapping[str, float], n: int, fidelity: str, seed: int, when_x_above: float = 0.5,
            hang_s: float = 30.0) -> pd.DataFrame:
    """Sleep ``hang_s`` seconds for designs with ``x > when_x_above`` (past any sensible timeout)."""
    if theta["x"] > when_x_above:
        time.sleep(hang_s)
    return toy(theta, n, fidelity, seed)


def missing_columns(theta: Mapping[str, float], n: int, fidelity: str, seed: int,
                    when_x_above: float = 0.5) -> pd.DataFrame:
    """Drop the ``outcome`` column for designs with ``x > when_x_above``."""
    frame = toy(theta, n, fidelity, seed)
    return frame.drop(columns=["outcome"]) if theta["x"] > when_x_above else frame
