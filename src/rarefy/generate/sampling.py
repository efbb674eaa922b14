"""Fast sampling of a conditional masked-autoregressive zuko flow (NSF or MAF) at one fixed context.

A generator draws many events at one design θ, so the flow's context c is the same for
every event of a call. :class:`FlowSampler` inverts the flow x = T₁⁻¹ ∘ … ∘ T_K⁻¹(z),
z ~ N(0, 1), exactly as zuko does, with the work that a fixed context and the masks make
redundant left out:

* **the context part of the first layer** of each conditioner, ``W_c c + b``, is one
  constant bias, computed once per call;
* **the inverse pass by pass.** A transform's φ columns fall into groups g = 0 … G-1
  (G = ``passes``: the number of columns when fully autoregressive, 2 for coupling);
  the parameters of group g depend on the context and on groups < g only. zuko's inverse
  runs the whole conditioner G times and inverts every column each time. Here pass g
  computes only group g's parameters, through only the hidden units that reach them (read
  off the masked weights), and inverts only group g's columns; group 0 depends on the
  context alone, so its parameters are computed once, on one row;
* **the spline** (:class:`zuko.transforms.MonotonicRQSTransform`, K bins on [-B, B],
  identity outside) is rebuilt with the same formulas, laid out parameters × draws so that
  every reduction over the K bins is a few operations across contiguous rows (torch's
  softmax, cumsum and comparisons over a short last dimension are slow on CPU). With
  zuko's squashing u ↦ u / (1 + |2u / ln s|) the exponent is bounded, so
  e = exp(squashed u) needs no max subtraction, and with c the cumulative sums of e over
  the heights (c_{K-1} = Σ) the bin of y is b = #{i < K - 1 : c_i < (y + B) Σ / 2B}, counted
  as (K - 1 + Σ_i sign(t - c_i)) / 2 in float arithmetic. Only the knots and derivatives at
  b and b + 1 are normalised; then the closed-form inverse of the rational-quadratic segment
  (Durkan et al. 2019, as in zuko). For a θ-only group the knots are computed once.

The result equals zuko's ``flow(c).sample()`` for the same base draws up to float32
rounding (the test suite checks both flow kinds, both pass counts, 2, 3 and 5 columns and
draws beyond the spline's bound, to 2e-4). The weights are read from the flow when the sampler is built, so a
sampler must be rebuilt after the flow's parameters change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import zuko
from torch import Tensor

__all__ = ["FlowSampler"]


@dataclass
class _Layer:
    weight: Tensor      # (out, in), masked, restricted to the units a pass needs
    bias: Tensor        # (out,)


@dataclass
class _Pass:
    columns: Tensor     # the φ columns this pass inverts (group g of the transform)
    rows: slice | Tensor  # the same as a slice when they are adjacent (a view, no copy)
    inputs: Tensor      # the φ columns the first layer reads (groups < g); empty for group 0
    layers: list[_Layer]


class FlowSampler:
    """Draws from a masked-autoregressive zuko flow at one context (see the module docstring).

    Parameters
    ----------
    flow:
        A :class:`zuko.flows.NSF` or :class:`zuko.flows.MAF` (ReLU conditioners, as
        :func:`rarefy.generate.model.build_flow` builds them).
    context:
        The context c (1-D tensor) every draw is conditioned on.
    """

    def __init__(self, flow: zuko.flows.Flow, context: Tensor) -> None:
        base = flow.base(None)
        self.loc = base.base_dist.loc.detach().to(torch.float32)
        self.scale = base.base_dist.scale.detach().to(torch.float32)
        self.features = int(self.loc.shape[-1])
        c = context.detach().to(torch.float32).reshape(-1)
        self.transforms = []
        with torch.inference_mode():
            for t in flow.transform.transforms:
                self.transforms.append(self._compile(t, c))

    # ------------------------------------------------------------------ setup
    def _compile(self, t: torch.nn.Module, c: Tensor) -> dict:
        p = self.features
        if not isinstance(t, zuko.flows.autoregressive.MaskedAutoregressiveTransform):
            raise TypeError(f"FlowSampler handles masked autoregressive transforms only, got {type(t).__name__}")
        linears = [m for m in t.hyper if isinstance(m, torch.nn.Linear)]
        acts = [m for m in t.hyper if not isinstance(m, torch.nn.Linear)]
        if any(not isinstance(a, torch.nn.ReLU) for a in acts) or len(acts) != len(linears) - 1:
            raise TypeError("FlowSampler handles ReLU conditioners without residual blocks only")
        weights = [(m.mask * m.weight).detach().float() if hasattr(m, "mask") else m.weight.detach().float()
                   for m in linears]
        biases = [m.bias.detach().float() for m in linears]
        # the context enters the first layer only: fold it into the bias
        if c.numel():
            biases[0] = biases[0] + weights[0][:, p:] @ c
        weights[0] = weights[0][:, :p]
        total = int(t.total)
        order = t.order.long()
        kind = "rqs" if t.univariate is not zuko.transforms.MonotonicAffineTransform else "affine"
        slope = getattr(t.univariate, "keywords", {}).get("slope", 1e-3)
        if kind == "rqs" and getattr(t.univariate, "func", None) is not zuko.transforms.MonotonicRQSTransform:
            raise TypeError("FlowSampler handles NSF (rational-quadratic splines) and MAF (affine) transforms only")
        passes = []
        for g in sorted(set(order.tolist())):
            cols = torch.nonzero(order == g).flatten()
            inputs = torch.nonzero(order < g).flatten()
            rows = (cols[:, None] * total + torch.arange(total)).flatten()   # outputs of group g, column-major
            # walk back through the layers keeping only the units that reach these outputs
            keep = [rows]
            for w in reversed(weights[1:]):
                need = torch.nonzero((w[keep[0]] != 0).any(dim=0)).flatten()
                keep.insert(0, need)
            layers = []
            for i, (w, b) in enumerate(zip(weights, biases)):
                out = keep[i]
                w_i = w[out] if i == 0 else w[out][:, keep[i - 1]]
                if i == 0:
                    w_i = w_i[:, inputs]
                layers.append(_Layer(w_i.contiguous(), b[out].contiguous()))
            consts = None
            if len(inputs) == 0:   # depends on the context alone: the same for every draw
                h = layers[0].bias[None]
                for layer in layers[1:]:
                    h = torch.addmm(layer.bias, torch.relu(h), layer.weight.t())
                params = h[0].reshape(len(cols), total)
                consts = _ConstantAffine(params, slope) if kind == "affine" else _ConstantRQS(params, slope)
            passes.append((_Pass(cols, _rows(cols), inputs, layers), consts))
        return {"kind": kind, "slope": float(slope), "passes": passes, "total": total}

    # --------------------------------------------------------------- sampling
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws (n, p), float32, from the flow at the sampler's context."""
        z = torch.randn((int(n), self.features), generator=generator, dtype=torch.float32)
        return self.inverse(self.loc + self.scale * z)

    def inverse(self, z: Tensor) -> Tensor:
        """The flow's inverse of base values ``z`` (n, p): x = T₁⁻¹ ∘ … ∘ T_K⁻¹(z)."""
        with torch.inference_mode():
            y = z.to(torch.float32).t().contiguous()   # (p, n): every column contiguous, the layers' input too
            for t in reversed(self.transforms):
                y = self._invert(t, y)
            return y.t()

    def _invert(self, t: dict, y: Tensor) -> Tensor:
        """One transform's inverse, column-major: y, x (p, n); the conditioner runs as W h + b on (units, n)."""
        x = torch.empty_like(y)
        total = t["total"]
        for ps, consts in t["passes"]:
            if consts is None:
                layers = ps.layers
                h = torch.addmm(layers[0].bias[:, None], layers[0].weight, x[ps.inputs])
                for layer in layers[1:]:
                    h = torch.addmm(layer.bias[:, None], layer.weight, torch.relu_(h))
                params = h                                   # (columns × parameters, n)
            if consts is not None:
                x[ps.rows] = consts(y[ps.rows])
                continue
            for j, col in enumerate(ps.columns.tolist()):
                if t["kind"] == "affine":
                    x[col] = _affine_inverse(params[j * total:(j + 1) * total], y[col], t["slope"])
                else:
                    x[col] = _rqs_inverse(params[j * total:(j + 1) * total], y[col], t["slope"])
        return x


def _rows(cols: Tensor) -> slice | Tensor:
    """``cols`` as a slice when they are adjacent (indexing then gives a view), else as they are."""
    c = cols.tolist()
    return slice(c[0], c[-1] + 1) if c == list(range(c[0], c[0] + len(c))) else cols


def _affine_inverse(params: Tensor, y: Tensor, slope: float) -> Tensor:
    """zuko's MonotonicAffineTransform inverse, parameters (2, n) = (shift, raw scale a):
    (y - shift) / exp(a / (1 + |a / log slope|))."""
    shift, scale = params[0], params[1]
    log_scale = scale / (1 + torch.abs(scale / math.log(slope)))
    return (y - shift) * torch.exp(-log_scale)


def _knots(u: Tensor, slope: float, bound: float) -> Tensor:
    """Knots (K + 1, n) B (2 cumsum(softmax(u)) - 1), from -B to B, of the unconstrained bin sizes u (K, n).

    zuko first squashes u ↦ u / (1 + |2u / log slope|), so |u| < |log slope| / 2 and exp(u)
    cannot overflow: the softmax needs no max subtraction.
    """
    u = u / (1 + torch.abs(u * (2 / math.log(slope))))
    cum = torch.nn.functional.pad(torch.cumsum(torch.exp(u), dim=0), (0, 0, 1, 0))
    return cum * (2 * bound / cum[-1:]) - bound


def _rqs_inverse(params: Tensor, y: Tensor, slope: float, bound: float = 5.0) -> Tensor:
    """zuko's MonotonicRQSTransform inverse; ``params`` (3K - 1, n) = (widths K, heights K, derivatives K - 1),
    y (n,); identity outside (-B, B].

    Only what the draw's bin needs is normalised: with c the cumulative sums of exp(squashed
    heights) (c_{K-1} = Σ), y lies in bin b = #{i < K - 1 : c_i < (y + B) Σ / 2B}, and the knots
    and derivatives at b and b + 1 are taken from the unnormalised sums.
    """
    k = (params.shape[0] + 1) // 3
    n = y.shape[0]
    ln = math.log(slope)
    e = _squash_exp(params[:2 * k], 2 / ln).view(2, k, n)               # widths, heights
    # buf[0], buf[1]: 0, c_0, …, c_{K-1} of the widths and heights; buf[2]: the raw derivatives at the K + 1
    # knots (0 at both ends: derivative 1)
    buf = torch.empty((3, k + 1, n), dtype=y.dtype)
    buf[:, 0] = 0
    buf[:2, 1] = e[:, 0]
    for i in range(1, k):
        torch.add(buf[:2, i], e[:, i], out=buf[:2, i + 1])
    buf[2, k] = 0
    buf[2, 1:k] = params[2 * k:]
    cw, ch = buf[0], buf[1]
    t = (y + bound) * (ch[k] / (2 * bound))
    b = _count_below(ch[1:k], t)                                         # (n,) in [0, K - 1]
    ends = buf.gather(1, torch.stack([b, b + 1])[None].expand(3, 2, n))  # (3, 2, n): values at b and b + 1
    xs = ends[0] * ((2 * bound) / cw[k]) - bound
    ys = ends[1] * ((2 * bound) / ch[k]) - bound
    ds = _squash_exp(ends[2], 1 / ln)
    return _segment_inverse(xs[0], xs[1], ys[0], ys[1], ds[0], ds[1], y, _inside(y, bound))


def _squash_exp(u: Tensor, c: float) -> Tensor:
    """exp(u / (1 + |c u|)): zuko's bounded parameterisation of a positive quantity."""
    return torch.exp_(u / (1 + torch.abs(u * c)))


def _cumexp(u: Tensor, c: float) -> Tensor:
    """(K + 1, n): 0 then the cumulative sums of exp(u / (1 + |c u|)) over the K rows of u (zuko's squashing
    bounds the exponent by 1 / |c|, so no max subtraction is needed). Row by row: torch's cumsum over a short
    leading dimension is several times slower on CPU."""
    e = _squash_exp(u, c)
    out = torch.empty((u.shape[0] + 1, u.shape[1]), dtype=u.dtype)
    out[0] = 0
    out[1] = e[0]
    for i in range(1, u.shape[0]):
        torch.add(out[i], e[i], out=out[i + 1])
    return out


def _count_below(rows: Tensor, t: Tensor) -> Tensor:
    """#{i : rows_i < t} (int64), for rows (m, n) against t (n,), or knots (f, m, 1) against t (f, n), counted
    in float arithmetic, (m + Σ sign(t - rows_i)) / 2, which is faster than comparisons on CPU; a tie, of
    probability zero, counts ½ and is floored."""
    diff = (t - rows) if rows.dim() == 2 else (t[:, None] - rows)      # (m, n) or (f, m, n)
    m = diff.shape[-2]
    diff.sign_()
    acc = diff[..., 0, :]
    for i in range(1, m):
        acc += diff[..., i, :]
    return ((acc + m) * 0.5).long()


def _inside(y: Tensor, bound: float) -> Tensor:
    """1.0 where -B < y ≤ B (the spline's domain), else 0.0."""
    return torch.logical_and(y > -bound, y <= bound).to(y.dtype)


def _segment_inverse(x0: Tensor, x1: Tensor, y0: Tensor, y1: Tensor, d0: Tensor, d1: Tensor, y: Tensor,
                     inside: Tensor) -> Tensor:
    """Inverse of one rational-quadratic segment from (x0, y0) to (x1, y1) with end slopes d0, d1 (zuko's
    formulas: the root of a z² + b z + c = 0 in the stable form 2c / (-b - √(b² - 4ac))); y where ``inside``
    (1.0 / 0.0) is 0. Outside, y - y0 is replaced by 0, so the segment's branch is finite (x0) there."""
    dx, dy = x1 - x0, y1 - y0
    s = dy / dx
    y_ = (y - y0).mul_(inside)
    q = torch.add(d0 + d1, s, alpha=-2.0)
    yq = y_ * q
    a = torch.addcmul(yq, dy, s - d0)
    bb = (dy * d0).sub_(yq)
    sy = s * y_                                          # -c
    z = (sy + sy).div_(torch.addcmul(bb * bb, a, sy, value=4.0).sqrt_().add_(bb))
    return torch.lerp(y, torch.addcmul(x0, z, dx), inside)


class _ConstantRQS:
    """The inverse of the splines of f columns whose parameters (f, 3K - 1) depend on the context only: the
    segments' constants are computed once, the bin found by counting the inner knots below y (f, n)."""

    def __init__(self, params: Tensor, slope: float, bound: float = 5.0) -> None:
        f, k = params.shape[0], (params.shape[1] + 1) // 3
        p = params.t()                                                   # (3K - 1, f)
        self.k, self.bound = k, bound
        hz = _knots(p[:k], slope, bound).t()                             # (f, K + 1)
        vt = _knots(p[k:2 * k], slope, bound).t()
        self.inner = vt[:, 1:k, None].contiguous()                       # (f, K - 1, 1)
        der = torch.nn.functional.pad(_squash_exp(p[2 * k:].t(), 1 / math.log(slope)), (1, 1), value=1.0)
        table = torch.stack([hz[:, :-1], hz[:, 1:], vt[:, :-1], vt[:, 1:], der[:, :-1], der[:, 1:]])
        self.table = table.reshape(6, f * k)                              # (6, f K): column j's bins at j K …
        self.offset = (torch.arange(f) * k)[:, None]

    def __call__(self, y: Tensor) -> Tensor:
        f, n = y.shape
        b = _count_below(self.inner, y) + self.offset                    # vt[b] < y <= vt[b + 1]
        seg = self.table.index_select(1, b.view(-1)).view(6, f, n)
        return _segment_inverse(*seg, y, _inside(y, self.bound))


class _ConstantAffine:
    """The inverse of the affine maps of f columns whose parameters (f, 2) depend on the context only."""

    def __init__(self, params: Tensor, slope: float) -> None:
        self.shift, scale = params[:, :1], params[:, 1:]
        self.inv_scale = torch.exp(-scale / (1 + torch.abs(scale / math.log(slope))))

    def __call__(self, y: Tensor) -> Tensor:
        return (y - self.shift) * self.inv_scale
