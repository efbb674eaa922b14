"""φ to the flow's unbounded space and back: dequantisation, min–max scaling, logit, standardisation.

A normalizing flow models a density on ℝ^p, but event features are bounded (a birth
radius lies in a shell, an azimuth in [0, 2π)) and some are integers (a count of panels
crossed). Each φ column j goes through

1. **dequantisation** (integer columns only): ``x ← x + u`` with ``u ~ U[0, 1)``, so the
   integer probability mass P(x = k) becomes a density on [k, k + 1) whose integral is
   that mass; sampling inverts with ``floor``;
2. **min–max scaling** to ``s = (x - lo) / (hi - lo)`` in (0, 1), with ``lo``/``hi`` the
   training minimum/maximum (``max + 1`` for integers) widened by ``margin`` of the range
   on each side, so no training value sits on the boundary;
3. **logit** ``z = log(s / (1 - s))``, mapping (0, 1) onto ℝ: a sample of the flow always
   maps back inside [lo, hi];
4. **standardisation** ``(z - mean) / std`` with the training mean and std, so the flow's
   N(0, 1) base starts close to the data.

The inverse is ``x = lo + (hi - lo) · sigmoid(z · std + mean)``, then ``floor`` for
integers, and clipping to the training range [min, max] (the margin keeps training values
off the logit's infinities; a draw that lands in it is put on the nearest training
bound, so a physical bound such as t ≥ 0 met by the training data is kept). The state
is plain numbers (JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["FeatureMap"]

_EPS = 1e-6


def _logit(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, _EPS, 1.0 - _EPS)
    return np.log(s) - np.log1p(-s)


@dataclass
class FeatureMap:
    """Per-column bounds, integer flags and standardisation of the logit values (see the module docstring)."""

    names: list[str]
    lo: np.ndarray
    hi: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    integer: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, phi: np.ndarray, names: Sequence[str], integer: Sequence[bool], margin: float,
            rng: np.random.Generator) -> "FeatureMap":
        """Bounds and standardisation from training φ (n, p); ``rng`` draws the dequantisation used for mean/std."""
        phi = np.asarray(phi, dtype=float)
        integer = np.asarray(integer, dtype=bool)
        vmin, vmax = phi.min(axis=0), phi.max(axis=0)
        top = vmax + integer.astype(float)
        span = np.where(top > vmin, top - vmin, 1.0)
        fm = cls(list(names), vmin - margin * span, top + margin * span, vmin, vmax, integer,
                 np.zeros(len(names)), np.ones(len(names)))
        z = fm._logits(phi, rng)
        std = z.std(axis=0)
        fm.mean, fm.std = z.mean(axis=0), np.where(std > 0, std, 1.0)
        return fm

    def _logits(self, phi: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        x = np.asarray(phi, dtype=float)
        if self.integer.any():
            x = x.copy()
            u = rng.random((len(x), int(self.integer.sum()))) if rng is not None else 0.5
            x[:, self.integer] = x[:, self.integer] + u
        return _logit((x - self.lo) / (self.hi - self.lo))

    def forward(self, phi: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """φ (n, p) in its units -> the flow's space (float32); ``rng`` dequantises (None: mid-point ``u = 0.5``)."""
        return ((self._logits(phi, rng) - self.mean) / self.std).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """The flow's space (n, p) -> φ in its units (float64); integers floored, all clipped to the training range."""
        # x = lo + (hi - lo) / (1 + exp(-(z std + mean))), in place on one float64 array
        x = np.multiply(np.asarray(z, dtype=float), -self.std)
        x -= self.mean
        np.exp(x, out=x)
        x += 1.0
        np.divide(self.hi - self.lo, x, out=x)
        x += self.lo
        if self.integer.any():
            x[:, self.integer] = np.floor(x[:, self.integer])
        np.maximum(x, self.vmin, out=x)
        return np.minimum(x, self.vmax, out=x)

    def state(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {"names": self.names, "lo": self.lo.tolist(), "hi": self.hi.tolist(), "vmin": self.vmin.tolist(),
                "vmax": self.vmax.tolist(), "integer": self.integer.tolist(), "mean": self.mean.tolist(),
                "std": self.std.tolist()}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "FeatureMap":
        """Rebuild from :meth:`state`."""
        arr = {k: np.asarray(s[k], dtype=float) for k in ("lo", "hi", "vmin", "vmax", "mean", "std")}
        return cls(list(s["names"]), integer=np.asarray(s["integer"], dtype=bool), **arr)
