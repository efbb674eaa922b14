"""A trained generator as a campaign simulator (``simulator: {kind: flow, run: DIR, outcome: ...}``).

:class:`FlowSimulator` meets the :class:`rarefy.simulators.Simulator` protocol: it draws
``n`` events at θ from the generator in ``RUN_DIR/generate/`` (deterministic for the
seed) and returns an :class:`~rarefy.data.events.EventTable`.

**The outcome.** An event table needs a 0/1 outcome per event, and a generator of
p(φ | θ) does not produce one: the rare outcome is what a surrogate campaign measures,
and learning it from the same few positives would only replay them. So the outcome comes
from a per-event probability model ``t(θ, φ)`` named by ``outcome`` (an import path),
and each event's outcome is Bernoulli(t). This is the fast-simulation split: the flow
replaces the expensive part that produces φ (e.g. the particle shower), a cheap response
``t`` (e.g. the moderator's capture probability,
``rarefy.simulators.moderator:Moderator``) decides the outcome. Without such a model
there is no honest outcome, so the simulator kind requires it.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..data.events import EventTable
from ..data.rundir import GENERATE_DIR
from ..errors import InputError
from .model import META_FILE, Generator

__all__ = ["FlowSimulator", "outcome_model"]


def outcome_model(target: str | Callable[..., Any]) -> Callable[[Mapping[str, float], Mapping[str, np.ndarray]], np.ndarray]:
    """``t(theta, phi) -> probability per event`` from an import path (or a callable).

    The target may be a function ``t(theta, phi)``, an object with ``capture_probability``,
    or a class instantiated without arguments whose instances have it.
    """
    if isinstance(target, str):
        from ..simulators.python import import_object

        obj: Any = import_object(target)
    else:
        obj = target
    if inspect.isclass(obj):
        obj = obj()
    if hasattr(obj, "capture_probability"):
        return obj.capture_probability
    if callable(obj):
        return obj
    raise InputError(f"outcome model {target!r} is neither callable nor has 'capture_probability'")


class FlowSimulator:
    """Events from a trained generator, outcomes from ``t(θ, φ)`` (see the module docstring).

    Parameters
    ----------
    run:
        Run directory with ``generate/`` (or the generator folder itself).
    outcome:
        Import path (or callable) of the per-event outcome probability ``t(theta, phi)``.
    """

    def __init__(self, run: str | os.PathLike[str], outcome: str | Callable[..., Any]) -> None:
        self.run = Path(run)
        folder = self.run if (self.run / META_FILE).exists() else self.run / GENERATE_DIR
        if not self.run.exists():
            raise InputError("run directory of the flow simulator not found", file=self.run)
        self.generator = Generator.load(folder)
        if self.generator.condition_on_outcome:
            raise InputError("the flow simulator needs a generator of p(φ | θ); this one is conditioned on the "
                             "outcome (generate.condition_on_outcome: true)", file=folder)
        self.space = self.generator.space
        self._t = outcome_model(outcome)
        self.outcome = outcome

    def simulate(self, theta: Mapping[str, float], n: int, fidelity: str, seed: int) -> EventTable:
        """``n`` generated events at ``theta``; ``fidelity`` must be the one the generator learnt."""
        gen = self.generator
        if gen.fidelity and fidelity != gen.fidelity:
            raise InputError(f"the generator in {self.run} learnt fidelity {gen.fidelity!r}, not {fidelity!r}")
        th = gen.check_theta(theta)
        phi_arr = gen.sample_array(th, int(n), seed=int(seed))
        phi = {name: phi_arr[:, j] for j, name in enumerate(gen.phi_names)}
        try:
            t = np.asarray(self._t(th, phi), dtype=float)
        except KeyError as exc:
            raise InputError(f"outcome model {self.outcome!r} needs the φ column {exc.args[0]!r}, which the generator "
                             f"does not generate (it generates {gen.phi_names})", column=str(exc.args[0])) from None
        if t.shape != (int(n),) or not np.all((t >= 0) & (t <= 1)):
            raise InputError(f"outcome model {self.outcome!r} must return one probability in [0, 1] per event")
        rng = np.random.default_rng([int(seed), 7])
        y = (rng.random(int(n)) < t).astype(np.int8)
        return EventTable.from_arrays(th, phi, y, fidelity=fidelity)

    def __repr__(self) -> str:
        return f"FlowSimulator({str(self.run)!r}, outcome={self.outcome!r})"
