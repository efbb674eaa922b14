"""Discrete φ columns modelled exactly: one categorical classifier head per column.

A flow models a density on ℝ^p. Integer columns reach it dequantised (``x + u``,
``u ~ U[0, 1)``, :mod:`~rarefy.generate.features`): the flow must then learn a density made
of flat steps whose heights are the probabilities P(x = k | θ), and the steps' edges are
exactly what a smooth spline or affine flow draws worst. For a few-valued column whose
probabilities depend on θ and on the other columns (a 0/1 flag that decides the outcome,
a count of crossings) small errors in those heights are errors in the rate a campaign on
the generator measures.

**The factorisation.** Split φ into its continuous part φ_c (the flow's columns, including
integer columns with many values, which stay dequantised) and its discrete columns
d_1, …, d_m (in φ's column order), and write the generator as

    p(φ | θ) = q(φ_c | θ) · Π_k P(d_k | φ_c, d_<k, θ),

with q the conditional flow and each factor a categorical distribution over the values
d_k took in the training events: a multi-layer perceptron ("head") with input
(c, z_c, onehot(d_1), …, onehot(d_{k-1})) and a softmax over the column's K_k values,
where c is the flow's context (θ in the unit cube [, y]) and z_c = F(φ_c) is φ_c in the
flow's standardised logit space at the mid-point of each integer bin (a fixed function
of φ, :meth:`FeatureMap.forward` with ``rng=None``). This is exact for any joint
distribution (the chain rule), puts no mass between or outside the observed values, and
the discrete log-likelihood is the cross-entropy

    log P(d | φ_c, θ) = Σ_k log softmax(h_k(c, z_c, d_<k))[d_k],

so maximising the joint log-likelihood log q + Σ_k log P_k trains the flow and the heads
together (the sum separates: each part's gradient reaches its own parameters only).

**Sampling.** Draw φ_c from the flow, then each d_k from its categorical in column order
by inverting its cumulative probabilities with u_k ~ U[0, 1) from
``numpy.random.default_rng([seed, 0xD15C])``: deterministic for a seed, and the same
events whatever the chunk size.

**Files** (no pickle): ``discrete.pt``, the heads' ``state_dict`` (read with
``weights_only=True``), next to the flow's ``model.pt``; the columns, their values and the
head widths in ``generator.json`` under ``discrete`` (:meth:`DiscreteHeads.state`).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..nn.classifier import mlp

__all__ = ["HEADS_FILE", "DiscreteHeads", "FlowWithHeads", "select_discrete"]

log = logging.getLogger(__name__)

HEADS_FILE = "discrete.pt"
_CHUNK = 65536
_SAMPLE_STREAM = 0xD15C


def select_discrete(phi: np.ndarray, names: Sequence[str], integer: Sequence[bool], mode: str,
                    max_categories: int) -> list[int]:
    """Indices of the φ columns to model with a categorical head.

    ``mode`` ``dequantise``: none. ``auto``: the integer columns with at most
    ``max_categories`` distinct values in ``phi`` (n, p), as long as one column is left for
    the flow (when every column qualifies, all stay dequantised in the flow).
    """
    if mode == "dequantise":
        return []
    if mode != "auto":
        raise ValueError(f"discrete must be 'auto' or 'dequantise', got {mode!r}")
    pick = [j for j in range(len(names)) if integer[j] and len(np.unique(phi[:, j])) <= max_categories]
    if len(pick) == len(names):
        log.info("generate: every φ column is a few-valued integer; all stay dequantised in the flow")
        return []
    return pick


class DiscreteHeads(torch.nn.Module):
    """The categorical factors P(d_k | φ_c, d_<k, θ) of the generator (see the module docstring).

    Parameters
    ----------
    names:
        Every generated φ column, in order (continuous and discrete).
    columns:
        The discrete columns, a subsequence of ``names``.
    values:
        Per discrete column, its sorted values (the categories), in φ's units.
    continuous:
        Number of continuous columns (the flow's features).
    context:
        Width of the flow's context (θ in the unit cube [, y]).
    hidden:
        Hidden widths of each head's MLP (SiLU activations).

    Parameters are drawn from torch's global generator: build it inside
    :func:`rarefy.nn.seeding.seeded`.
    """

    def __init__(self, names: Sequence[str], columns: Sequence[str], values: Sequence[Sequence[float]],
                 continuous: int, context: int, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        self.names = list(names)
        self.columns = list(columns)
        self.values = [np.asarray(v, dtype=float) for v in values]
        self.continuous = int(continuous)
        self.context = int(context)
        self.hidden = [int(h) for h in hidden]
        if len(self.values) != len(self.columns) or any(c not in self.names for c in self.columns):
            raise ValueError("discrete columns must be φ columns, each with its values")
        self.discrete_index = [self.names.index(c) for c in self.columns]
        self.continuous_index = [j for j in range(len(self.names)) if j not in self.discrete_index]
        if len(self.continuous_index) != self.continuous:
            raise ValueError(f"{len(self.continuous_index)} continuous columns, expected {self.continuous}")
        sizes = [len(v) for v in self.values]
        self.heads = torch.nn.ModuleList(
            mlp(self.context + self.continuous + sum(sizes[:k]), tuple(self.hidden), sizes[k], "silu")
            for k in range(len(sizes)))

    @property
    def continuous_names(self) -> list[str]:
        """The flow's columns, in order."""
        return [self.names[j] for j in self.continuous_index]

    # ----------------------------------------------------------- columns
    def split(self, phi: np.ndarray, source: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """φ (n, p) in its units -> (φ_c (n, p_c), category indices (n, m) int64).

        A discrete value outside the column's categories gets index -1 (probability 0).
        """
        phi = np.asarray(phi, dtype=float)
        if phi.ndim != 2 or phi.shape[1] != len(self.names):
            raise InputError(f"φ must have the {len(self.names)} columns {self.names}, got shape {phi.shape}",
                             file=source)
        idx = np.empty((len(phi), len(self.columns)), dtype=np.int64)
        for k, (j, vals) in enumerate(zip(self.discrete_index, self.values)):
            pos = np.clip(np.searchsorted(vals, phi[:, j]), 0, len(vals) - 1)
            idx[:, k] = np.where(vals[pos] == phi[:, j], pos, -1)
        return phi[:, self.continuous_index], idx

    def join(self, phi_c: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """(φ_c, category indices) -> φ (n, p) in its units, columns in order."""
        out = np.empty((len(phi_c), len(self.names)))
        out[:, self.continuous_index] = phi_c
        for k, (j, vals) in enumerate(zip(self.discrete_index, self.values)):
            out[:, j] = vals[idx[:, k]]
        return out

    # ------------------------------------------------------------- model
    def _inputs(self, k: int, z: torch.Tensor, ctx: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        parts = [ctx, z] + [torch.nn.functional.one_hot(idx[:, j], len(self.values[j])).to(z.dtype)
                            for j in range(k)]
        return torch.cat(parts, dim=1)

    def log_prob(self, z: torch.Tensor, ctx: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Σ_k log P(d_k | φ_c, d_<k, θ) per event (n,): ``z`` (n, p_c) the mid-point flow-space φ_c, ``ctx``
        (n, c) the context, ``idx`` (n, m) the category indices (-1: a value never seen, log probability -inf)."""
        out = torch.zeros(len(z), dtype=z.dtype)
        unseen = (idx < 0).any(dim=1)
        safe = idx.clamp(min=0)
        for k, head in enumerate(self.heads):
            logp = torch.log_softmax(head(self._inputs(k, z, ctx, safe)), dim=1)
            out = out + logp.gather(1, safe[:, k:k + 1]).squeeze(1)
        return torch.where(unseen, torch.full_like(out, -torch.inf), out)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, ctx: torch.Tensor, u: np.ndarray) -> np.ndarray:
        """Category indices (n, m) drawn column after column, by inverting each categorical's cumulative
        probabilities with the uniforms ``u`` (n, m)."""
        idx = torch.zeros((len(z), len(self.columns)), dtype=torch.int64)
        ut = torch.from_numpy(np.asarray(u, dtype=np.float64))
        for k, head in enumerate(self.heads):
            p = torch.softmax(head(self._inputs(k, z, ctx, idx)).double(), dim=1)
            cdf = torch.cumsum(p, dim=1)
            pick = torch.searchsorted(cdf, (ut[:, k:k + 1] * cdf[:, -1:]).contiguous(), right=True).squeeze(1)
            idx[:, k] = pick.clamp(max=len(self.values[k]) - 1)
        return idx.numpy()

    def complete(self, phi_c: np.ndarray, z: np.ndarray, ctx: torch.Tensor, seed: int) -> np.ndarray:
        """The full φ (n, p): the flow's draws ``phi_c`` (n, p_c), ``z`` = F(φ_c) at mid-points, with the discrete
        columns drawn given them at context ``ctx`` ((c,) or (n, c)); deterministic for ``seed``."""
        n = len(phi_c)
        u = np.random.default_rng([int(seed), _SAMPLE_STREAM]).random((n, len(self.columns)))
        ctx = ctx.reshape(1, -1).expand(n, -1) if ctx.dim() == 1 else ctx
        zt = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
        was = self.training
        self.eval()
        try:
            idx = [self.sample(zt[i:i + _CHUNK], ctx[i:i + _CHUNK], u[i:i + _CHUNK]) for i in range(0, n, _CHUNK)]
        finally:
            self.train(was)
        return self.join(phi_c, np.concatenate(idx) if idx else np.zeros((0, len(self.columns)), np.int64))

    # ------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        """JSON-ready description (the weights go to ``discrete.pt``)."""
        return {"names": self.names, "columns": self.columns, "values": [v.tolist() for v in self.values],
                "continuous": self.continuous, "context": self.context, "hidden": self.hidden}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "DiscreteHeads":
        """An untrained module of the shape :meth:`state` describes (load the weights into it)."""
        return cls(s["names"], s["columns"], s["values"], s["continuous"], s["context"], s["hidden"])


class FlowWithHeads(torch.nn.Module):
    """The flow and the heads as one module, so one trainer fits the joint likelihood (one checkpoint,
    one early stopping on the joint validation NLL)."""

    def __init__(self, flow: torch.nn.Module, heads: DiscreteHeads) -> None:
        super().__init__()
        self.flow = flow
        self.heads = heads

    def nll(self, z: torch.Tensor, ctx: torch.Tensor, zm: torch.Tensor, idx: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-event negative log-likelihoods (flow part, discrete part): ``z`` the dequantised flow-space φ_c,
        ``zm`` its mid-point version (the heads' input), ``idx`` the category indices."""
        return -self.flow(ctx).log_prob(z), -self.heads.log_prob(zm, ctx, idx)
