"""The trained generator: a conditional zuko flow over the transformed φ, its feature map and its space.

A :class:`Generator` draws events from p(φ | θ) (or p(φ | θ, y) when trained with
``condition_on_outcome``). The flow's context is θ mapped to the design space's unit
cube, ``u = (θ - low) / (high - low)`` (so every parameter counts alike whatever its
unit), with the outcome y ∈ {0, 1} appended when conditioned on it. φ lives in the
unbounded space of :class:`~rarefy.generate.features.FeatureMap`.

With discrete heads (:mod:`~rarefy.generate.discrete`) the flow models the continuous
columns φ_c only and each few-valued integer column is drawn from a categorical given φ_c,
the earlier discrete columns and θ: p(φ | θ) = q(φ_c | θ) · Π_k P(d_k | φ_c, d_<k, θ).

**Files** (no pickle): ``model.pt``, the flow's ``state_dict`` (read with
``weights_only=True``), and ``generator.json``: φ names, θ space, feature map, flow
options, fidelity, seed, training summary; with discrete heads also ``discrete.pt`` (their
``state_dict``) and their columns and categories under ``discrete`` in ``generator.json``
(a file without that key is a flow over every column).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
import zuko

from ..errors import InputError, fmt_value
from ..io import atomic_path
from ..nn.seeding import seeded
from ..space import DesignSpace
from .discrete import HEADS_FILE, DiscreteHeads
from .features import FeatureMap
from .sampling import FlowSampler

__all__ = ["Generator", "build_flow", "MODEL_FILE", "META_FILE"]

MODEL_FILE = "model.pt"
META_FILE = "generator.json"
_CHUNK = 16384
_SAMPLE_CHUNK = 8192   # draws per pass of the sampler: its activations stay in the CPU's cache


def build_flow(features: int, context: int, kind: str = "nsf", transforms: int = 3,
               hidden: tuple[int, ...] | list[int] = (64, 64), bins: int = 8, passes: int | None = None
               ) -> zuko.flows.Flow:
    """A conditional zuko flow over ``features`` dimensions with a ``context``-dimensional condition.

    ``nsf``: neural spline flow (rational-quadratic splines, ``bins`` per feature, on [-5, 5],
    identity outside); ``maf``: masked affine autoregressive flow. ``passes``: None for fully
    autoregressive transforms (sampling inverts one φ column after the other), 2 for coupling
    transforms (two passes, faster sampling). Parameters are drawn from
    torch's global generator: build it inside :func:`rarefy.nn.seeding.seeded`.
    """
    if kind == "nsf":
        return zuko.flows.NSF(features=features, context=context, transforms=transforms, bins=bins,
                              hidden_features=tuple(hidden), passes=passes)
    if kind == "maf":
        return zuko.flows.MAF(features=features, context=context, transforms=transforms,
                              hidden_features=tuple(hidden), passes=passes)
    raise ValueError(f"flow kind must be 'nsf' or 'maf', got {kind!r}")


class Generator:
    """A trained conditional event generator (see the module docstring).

    Parameters
    ----------
    flow:
        The conditional zuko flow (context: θ in the unit cube, then y when ``condition_on_outcome``).
    features:
        The φ feature map (bounds, integer columns, standardisation).
    space:
        The design space θ lives in; sampling outside its bounds is refused.
    options:
        The flow options it was built with (``kind``, ``transforms``, ``hidden``, ``bins``).
    fidelity:
        The fidelity whose events it learnt.
    condition_on_outcome:
        Whether the flow is conditioned on the outcome y as well.
    info:
        Training summary (seed, events, runs, epochs, validation NLL), kept in ``generator.json``.
    discrete:
        The categorical heads of the discrete columns (None: the flow models every column,
        ``features`` then covers them all; else ``features`` covers the continuous ones).
    """

    def __init__(self, flow: zuko.flows.Flow, features: FeatureMap, space: DesignSpace, options: Mapping[str, Any],
                 fidelity: str, condition_on_outcome: bool = False, info: Mapping[str, Any] | None = None,
                 discrete: DiscreteHeads | None = None) -> None:
        self.flow = flow.eval()
        self.features = features
        self.space = space
        self.options = dict(options)
        self.fidelity = fidelity
        self.condition_on_outcome = bool(condition_on_outcome)
        self.info = dict(info or {})
        self.discrete = discrete.eval() if discrete is not None else None

    @property
    def phi_names(self) -> list[str]:
        """The generated φ columns, in order."""
        return list(self.features.names) if self.discrete is None else list(self.discrete.names)

    @property
    def theta_names(self) -> list[str]:
        """The θ parameters, in the space's order."""
        return self.space.names

    # ------------------------------------------------------------- context
    def check_theta(self, theta: Mapping[str, Any]) -> dict[str, float]:
        """θ as floats in the space's order; a missing, unknown, non-finite, out-of-bounds or non-integer (for an
        integer parameter) value, or a design that violates the space's constraints, raises InputError: the flow
        learnt p(φ | θ) on feasible designs only."""
        names = self.space.names
        missing = [k for k in names if k not in theta]
        if missing:
            raise InputError(f"θ lacks the parameters {missing}; the generator was trained on {names}",
                             column=missing[0])
        unknown = [k for k in theta if k not in names]
        if unknown:
            raise InputError(f"θ has unknown parameters {unknown}; the generator was trained on {names}",
                             column=unknown[0])
        out = {}
        for p in self.space.parameters:
            try:
                v = float(theta[p.name])
            except (TypeError, ValueError):
                raise InputError(f"θ value {fmt_value(theta[p.name])} is not a number", column=p.name) from None
            if not math.isfinite(v) or not p.low - 1e-9 * (p.high - p.low) <= v <= p.high + 1e-9 * (p.high - p.low):
                raise InputError(f"θ value {fmt_value(v)} is outside the trained space [{fmt_value(p.low)}, "
                                 f"{fmt_value(p.high)}]", column=p.name)
            if p.integer and v != round(v):
                raise InputError(f"θ value {fmt_value(v)} must be an integer", column=p.name)
            out[p.name] = v
        if self.space.constraints and not self.space.is_feasible(out)[0]:
            raise InputError(f"θ {out} violates a constraint of the trained space "
                             f"({'; '.join(self.space.constraints)})")
        return out

    def context(self, theta_unit: np.ndarray, outcome: np.ndarray | None = None) -> torch.Tensor:
        """The flow's context (n, d [+1]): θ in the unit cube, then y when conditioned on the outcome."""
        ctx = np.asarray(theta_unit, dtype=np.float32)
        if self.condition_on_outcome:
            if outcome is None:
                raise InputError("this generator is conditioned on the outcome: give outcome=0 or 1")
            ctx = np.column_stack([ctx, np.broadcast_to(np.asarray(outcome, np.float32), (len(ctx),))])
        return torch.from_numpy(np.ascontiguousarray(ctx, dtype=np.float32))

    # ------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_array(self, theta: Mapping[str, Any], n: int, seed: int = 0, outcome: int | None = None) -> np.ndarray:
        """``n`` draws of φ (n, p) at design ``theta``, in φ's units; deterministic for ``seed``.

        The flow is inverted by :class:`rarefy.generate.sampling.FlowSampler` (zuko's inverse with
        the work a fixed θ makes redundant left out; the same draws up to float32 rounding), in
        chunks of 8,192 draws, then mapped back by the feature map.
        """
        th = self.check_theta(theta)
        if n < 0:
            raise InputError(f"number of events must be >= 0, got {n}")
        if outcome is not None and outcome not in (0, 1):
            raise InputError(f"outcome must be 0 or 1, got {fmt_value(outcome)}")
        if outcome is not None and not self.condition_on_outcome:
            raise InputError("this generator models p(φ | θ) only (trained without condition_on_outcome); "
                             "give no outcome")
        u = self.space.to_unit(np.array([[th[k] for k in self.space.names]]))
        ctx = self.context(u, None if outcome is None else np.array([outcome]))[0]
        self.flow.eval()
        z = np.empty((int(n), len(self.features.names)))
        with seeded(int(seed)):
            try:
                draw = FlowSampler(self.flow, ctx).sample
            except TypeError:   # a flow it does not handle (one φ column: zuko's element-wise flow)
                dist = self.flow(ctx)

                def draw(m: int) -> torch.Tensor:
                    with torch.inference_mode():
                        return dist.sample((m,))
            for start in range(0, int(n), _SAMPLE_CHUNK):
                stop = min(start + _SAMPLE_CHUNK, int(n))
                z[start:stop] = draw(stop - start).numpy()
        if self.discrete is not None:
            phi_c = self.features.inverse(z)
            return self.discrete.complete(phi_c, self.features.forward(phi_c, None), ctx, seed)
        return self.features.inverse(z)

    def sample(self, theta: Mapping[str, Any], n: int, seed: int = 0, outcome: int | None = None) -> pd.DataFrame:
        """``n`` events at design ``theta``: the θ columns (constant) and the φ columns, in their units."""
        th = self.check_theta(theta)
        phi = self.sample_array(th, n, seed, outcome)
        columns = {k: np.full(len(phi), v) for k, v in th.items()}
        columns.update({name: phi[:, j] for j, name in enumerate(self.phi_names)})
        return pd.DataFrame(columns)

    @torch.no_grad()
    def log_prob(self, theta_unit: np.ndarray, phi: np.ndarray, outcome: np.ndarray | None = None) -> np.ndarray:
        """log density of φ (n, p) given θ (n, d, unit cube) in the flow's space (integers at mid-bin ``u = 0.5``).

        A relative score (e.g. a validation NLL); it omits the Jacobian of the feature map,
        which does not depend on the flow. With discrete heads it adds their exact log probability.
        """
        idx = None
        if self.discrete is not None:
            phi, idx = self.discrete.split(phi)
        z = torch.from_numpy(self.features.forward(phi, None))
        ctx = self.context(theta_unit, outcome)
        out = [self.flow(ctx[i:i + _CHUNK]).log_prob(z[i:i + _CHUNK]).double().numpy() for i in range(0, len(z), _CHUNK)]
        if idx is not None:
            it = torch.from_numpy(idx)
            out = [o + self.discrete.log_prob(z[i:i + _CHUNK], ctx[i:i + _CHUNK], it[i:i + _CHUNK]).double().numpy()
                   for o, i in zip(out, range(0, len(z), _CHUNK))]
        return np.concatenate(out) if out else np.zeros(0)

    # ----------------------------------------------------------------- I/O
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``model.pt`` (state_dict) and ``generator.json`` into ``folder``, atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / MODEL_FILE) as tmp:
            torch.save(self.flow.state_dict(), tmp)
        meta = {"fidelity": self.fidelity, "condition_on_outcome": self.condition_on_outcome,
                "flow": self.options, "features": self.features.state(), "space": self.space.to_dict(),
                "info": self.info}
        if self.discrete is not None:
            with atomic_path(folder / HEADS_FILE) as tmp:
                torch.save(self.discrete.state_dict(), tmp)
            meta["discrete"] = self.discrete.state()
        with atomic_path(folder / META_FILE) as tmp:
            tmp.write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> "Generator":
        """Read what :meth:`save` wrote (``weights_only=True``: no pickle)."""
        folder = Path(folder)
        for name in (META_FILE, MODEL_FILE):
            if not (folder / name).exists():
                raise InputError(f"no trained generator here (missing {name}; run 'rarefy generate train' first)",
                                 file=folder)
        try:
            meta = json.loads((folder / META_FILE).read_text())
            features = FeatureMap.from_state(meta["features"])
            space = DesignSpace.from_dict(meta["space"])
            heads = DiscreteHeads.from_state(meta["discrete"]) if meta.get("discrete") else None
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"cannot read the generator: {exc}", file=folder / META_FILE) from None
        o = meta["flow"]
        ctx = space.dim + int(bool(meta["condition_on_outcome"]))
        flow = build_flow(len(features.names), ctx, o["kind"], o["transforms"], o["hidden"], o["bins"],
                          o.get("passes"))
        try:
            flow.load_state_dict(torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True))
        except Exception as exc:  # corrupt or foreign file
            raise InputError(f"cannot read the generator's weights: {exc}", file=folder / MODEL_FILE) from None
        if heads is not None:
            try:
                heads.load_state_dict(torch.load(folder / HEADS_FILE, map_location="cpu", weights_only=True))
            except Exception as exc:  # missing, corrupt or foreign file
                raise InputError(f"cannot read the discrete heads' weights: {exc}", file=folder / HEADS_FILE) from None
        return cls(flow, features, space, o, meta["fidelity"], meta["condition_on_outcome"], meta.get("info"), heads)

    def __repr__(self) -> str:
        y = ", y" if self.condition_on_outcome else ""
        d = f", categorical: {', '.join(self.discrete.columns)}" if self.discrete is not None else ""
        return (f"Generator(p({', '.join(self.phi_names)} | θ{y}), fidelity={self.fidelity!r}, "
                f"flow={self.options['kind']}{d})")
