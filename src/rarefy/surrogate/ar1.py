"""Autoregressive (Kennedy–O'Hagan AR1) multi-fidelity Gaussian process with per-point noise.

Model, for an ordered chain of fidelities f = 0 (cheapest) … F (target)::

    y_0(x) = δ_0(x)
    y_f(x) = ρ_f(x) · y_{f-1}(x) + δ_f(x),      δ_f ~ GP(c_f, k_f),  independent

so that ``cov(y_f(x), y_g(x')) = Σ_{j ≤ min(f,g)} a_{f,j}(x) a_{g,j}(x') k_j(x, x')`` with
``a_{f,j}(x) = Π_{i=j+1..f} ρ_i(x)``. ρ_f is a constant or linear in x. Each k_j is a scaled
ARD Matérn-5/2 or RBF kernel (GPyTorch) with BoTorch's dimension-scaled lengthscale prior.
An observation of fidelity f at run i is ``y_f(x_i) + ε_i`` with ε_i ~ N(0, v_i + τ_f): v_i is the
run's *known* noise variance (from counts or an error column) and τ_f an optional learned
nugget per fidelity.

**Joint fit.** All hyperparameters of all levels are fitted together by maximising the
log marginal likelihood of the stacked data (plus weak priors) with L-BFGS from several
starts. Joint rather than recursive because (i) it is exact when high-fidelity designs are
not nested in low-fidelity ones (the recursive scheme must plug in the lower level's
posterior mean and ignore its correlations), and (ii) every ρ_f and kernel sees all data.
The cost is one Cholesky of the stacked covariance per step: O(N³) for N runs in all,
a few milliseconds for the hundreds of runs typical of a campaign. The gradient is taken
in closed form, ``∂/∂K = ½ (K⁻¹ − ααᵀ)`` with α = K⁻¹(z − m) (Rasmussen & Williams eq. 5.9),
and chained through each level's kernel with the training inputs' squared differences
cached for the whole fit: the same value and gradient as autograd through the Cholesky
factor and GPyTorch's kernels (tested to 1e-9), about 2.7× less CPU per step.

**Leave-one-out calibration** (``calibrate: loo``, the default). The plug-in posterior
treats the fitted hyperparameters as exact. When the runs' own noise is as large as the
rate's variation over the design space (the moderator's HF runs: 5% precision of a rate
whose spread over the designs is about 6%), the output scale is poorly determined and the
latent σ comes out too small: 2σ intervals of an HF-only GP on 3–310 HF runs cover the
exact HF rate at only 73–89% of random designs on some seeds. The check is closed-form
leave-one-out (Rasmussen & Williams eq. 5.12; with ``mean_uncertainty``, whose
predictions re-estimate the target's mean and ρ, the universal-kriging form): with
P = K⁻¹ (less K⁻¹H(HᵀK⁻¹H)⁻¹HᵀK⁻¹ with ``mean_uncertainty``), row i's LOO residual is
``r_i = [P(z − m)]_i / P_ii`` and its LOO observed variance ``1/P_ii = s_i² + n_i``: the
latent LOO variance s_i² plus the row's noise ``n_i = v_i + τ_f``. For each fidelity with
at least 3 rows, ``ℓ(c) = Σ_i log N(r_i; 0, c² s_i² + n_i)`` (a 1-D function) gives the
factor c_f on its latent posterior std: not its maximiser ĉ but the upper end of its
likelihood interval, the largest c >= ĉ with ``2 (ℓ(ĉ) − ℓ(c)) <= 3.84`` (χ²₁ 95%: the
upper end of the 95% likelihood-ratio interval). Why the bound: the residuals are
dominated by the runs' noise, so ℓ is flat; on the moderator ĉ stays at or near 1 for
3–160 HF runs while the test errors are twice the σ, and the data cannot exclude c = 2.
The bound is wide where the rows say little and tightens to ĉ as runs accrue (measured
on seeds 11–14: coverage >= 0.9 at every size; ĉ alone leaves it at 0.73–0.85 on some
seeds, the bounds at 1.0 and 2.71 (68% and 90% intervals) at 0.85 and 0.895; 3.84 widens
σ by 4–14% more than 2.71 for 10 or more runs).
Why c >= 1: an interval is never narrowed below the fitted model's. Why the latent part
only: the noise is known (v_i) or fitted on all runs (τ_f); the latent σ is what the
plug-in understates. ``predict``'s latent variance is multiplied by c_f², ``joint``'s
covariance becomes D C D with D = diag(c_{f(i)}): positive semi-definite, correlations
between points and fidelities unchanged. Each fidelity has its own c_f: each is
predicted, and checked, on its own rows (a lower fidelity's c_f only changes its own
predictions and its entries of ``joint``). The mean is unchanged. c_f is saved with the model and reported in
``hyperparameters()[f]["calibration"]``; ``benchmarks/calibration_growth.py`` measures it
(docs/method.md).

**Calibration under shift** (``calibrate: loco``). Leave-one-out asks how well the model
predicts a run *inside* the cloud of the others; designs to be predicted later often lie at
its edge or beyond (a validation set leaning towards thicker panels than any training run).
``loco`` also asks how well it predicts a *cluster* of runs from the rest: the target runs'
designs are split into K = ``loco_clusters`` clusters by k-means on the unit cube
(:func:`design_clusters`, initialised at the cloud's extremes), each cluster is held out
with every row at its designs (a paired LF run), the model is refitted on the rest — its
hyperparameters too, which matters with few target runs: with all runs the closed-form
identities above would keep the lengthscales and ρ that the held-out runs helped to fit —
and the cluster's runs are predicted jointly: residual r_B, latent covariance S_B, noise
N_B. The factor maximises the exact likelihood ``ℓ(c) = Σ_B log N(r_B; 0, c² S_B + N_B)``
(:func:`block_scale`; a cluster's residuals move together, so they are not scored as
independent) — or, with ``loco_bound`` > 0, is the upper end of its likelihood interval as
above — and the target's factor is ``max(c_loo, c_loco)``: an interval is never narrower
than leave-one-out asks. Lower fidelities keep ``c_loo``. The mean is unchanged; the cost
is K more fits. K and the bound are chosen by cross-validation under shift
(``benchmarks/calibration_shift.py``, docs/reliability.md).

Inputs are scaled to the unit cube by the DesignSpace bounds; outputs are standardised
per fidelity (optionally after a log transform). Everything is float64 torch, so
predictions are batched and differentiable in x. The surrogate is a BoTorch ``Model``
(:class:`rarefy.surrogate.base.Surrogate`): ``posterior(X)`` is :meth:`AR1Surrogate.joint`
at the target fidelity, so BoTorch's acquisition functions and optimisers apply as they are.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import gpytorch
import torch
from gpytorch.constraints import GreaterThan, Interval
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel
from gpytorch.priors import GammaPrior, LogNormalPrior

from ..data.rates import RateTable
from ..errors import InputError
from ..space import DesignSpace
from .base import DTYPE, Surrogate, standardise
from ..threads import torch_threads
from .linalg import safe_cholesky

log = logging.getLogger(__name__)

__all__ = ["AR1Surrogate", "AR1Settings", "loo_scale", "block_scale", "design_clusters"]

SMALL_N = 2000  # below this many training rows the fit runs single-threaded (faster, see torch_threads)
MIN_LOO_ROWS = 3  # fewer rows of a fidelity than this: its calibration factor stays 1
MAX_CALIBRATION = 100.0  # upper bound of the calibration factor c (a std ratio)
LOO_BOUND = 3.84  # c is the upper end of its likelihood interval 2Δℓ <= 3.84 (χ²₁ 95%)
DESIGN_TOL = 0.01  # a held-out cluster takes every row within this fraction of each range of its designs (rarefy fit --cv's default)
KMEANS_ITER = 100  # Lloyd iterations of design_clusters
OUTPUTSCALE_PRIOR = (2.0, 2.0)  # Gamma(shape, rate) on each level's outputscale
NUGGET_PRIOR = (1.1, 0.05)  # Gamma(shape, rate) on each fidelity's nugget τ_f
# L-BFGS stops when the largest gradient entry or the change of the loss (per training row)
# falls below these
GTOL = 1e-7
FTOL = 1e-10
# largest per-level table of squared input differences (d × n_j × n_j float64 entries) kept
# for a fit (2**23 entries: 64 MiB); above it r² is recomputed each step
GEOMETRY_ENTRIES = 2**23


@dataclass
class AR1Settings:
    """Hyper-settings of :class:`AR1Surrogate` (mirrors the ``surrogate`` config section)."""

    kernel: str = "matern52"
    rho: str = "constant"
    nugget: bool = True
    restarts: int = 5
    max_iter: int = 200
    output: str = "identity"
    rho_prior: float | None = None  # scale s of a Normal(1, s) prior on each constant ρ (standardised units)
    # add the uncertainty of the target level's constant mean and ρ to its predictive
    # variance (universal kriging with a flat prior on them; see AR1Surrogate.predict)
    mean_uncertainty: bool = False
    # widen each fidelity's latent posterior variance by a factor c² >= 1 fitted to its
    # closed-form leave-one-out residuals ("loo"); "loco" also fits the target's factor to
    # leave-one-cluster-out residuals (shifted designs); "none" leaves it as fitted
    calibrate: str = "loo"
    # number of design-space clusters (k-means on the unit cube) of the target runs for "loco"
    loco_clusters: int = 3
    # "loco": the factor is the upper end of its likelihood interval 2Δℓ <= loco_bound (0: the maximiser)
    loco_bound: float = 0.0

    def __post_init__(self) -> None:
        if self.kernel not in ("matern52", "rbf"):
            raise ValueError(f"kernel must be 'matern52' or 'rbf', got {self.kernel!r}")
        if self.rho not in ("constant", "linear"):
            raise ValueError(f"rho must be 'constant' or 'linear', got {self.rho!r}")
        if self.output not in ("identity", "log"):
            raise ValueError(f"output must be 'identity' or 'log', got {self.output!r}")
        if self.calibrate not in ("loo", "loco", "none"):
            raise ValueError(f"calibrate must be 'loo', 'loco' or 'none', got {self.calibrate!r}")
        if not (isinstance(self.loco_clusters, int) and self.loco_clusters >= 2):
            raise ValueError(f"loco_clusters must be an integer >= 2, got {self.loco_clusters!r}")
        if not (self.loco_bound >= 0 and math.isfinite(self.loco_bound)):
            raise ValueError(f"loco_bound must be a finite number >= 0, got {self.loco_bound!r}")
        if self.rho_prior is not None and not self.rho_prior > 0:
            raise ValueError(f"rho_prior must be a positive scale or None, got {self.rho_prior!r}")


class _AR1Module(gpytorch.Module):
    """The torch parameters and covariance algebra of an L-level AR1 GP on the unit cube."""

    def __init__(self, levels: int, dim: int, settings: AR1Settings) -> None:
        super().__init__()
        self.levels = levels
        self.dim = dim
        self.kernels = torch.nn.ModuleList()
        # the priors' parameters (float64 numbers; log_prior writes the densities out)
        self._ls_prior = (math.sqrt(2) + 0.5 * math.log(dim), math.sqrt(3))
        self._os_prior = OUTPUTSCALE_PRIOR
        self._nugget_prior = NUGGET_PRIOR
        for _ in range(levels):
            # BoTorch's dimension-scaled lengthscale prior (Hvarfner et al. 2024), with a
            # softplus-transformed bound so unconstrained L-BFGS keeps lengthscales > 0.025.
            prior = LogNormalPrior(loc=self._ls_prior[0], scale=self._ls_prior[1])
            kw = dict(ard_num_dims=dim, lengthscale_prior=prior, lengthscale_constraint=GreaterThan(2.5e-2))
            base = RBFKernel(**kw) if settings.kernel == "rbf" else MaternKernel(nu=2.5, **kw)
            base.lengthscale = prior.mode
            self.kernels.append(ScaleKernel(base, outputscale_prior=GammaPrior(*OUTPUTSCALE_PRIOR),
                                            outputscale_constraint=GreaterThan(1e-6)))
        self.mean = torch.nn.Parameter(torch.zeros(levels))
        self.rho0 = torch.nn.Parameter(torch.ones(levels))  # entry 0 unused
        self.rho_w = torch.nn.Parameter(torch.zeros(levels, dim), requires_grad=settings.rho == "linear")
        self.use_nugget = settings.nugget
        self.nugget_constraint = Interval(1e-8, 10.0)
        self.raw_nugget = torch.nn.Parameter(torch.full((levels,), -6.0), requires_grad=settings.nugget)
        self.nugget_prior = GammaPrior(*NUGGET_PRIOR)
        self.rho_prior_scale = settings.rho_prior
        self.kernel_kind = settings.kernel
        self.to(DTYPE)

    @property
    def nugget(self) -> torch.Tensor:
        if not self.use_nugget:
            return torch.zeros(self.levels, dtype=DTYPE)
        return self.nugget_constraint.transform(self.raw_nugget)

    def rho(self, x: torch.Tensor) -> torch.Tensor:
        """ρ_i(x) for every level i, shape (..., n, L); column 0 is 1 (unused)."""
        r = self.rho0 + (x - 0.5) @ self.rho_w.T
        return torch.cat([torch.ones_like(r[..., :1]), r[..., 1:]], dim=-1)

    def loadings(self, x: torch.Tensor, fid: torch.Tensor) -> torch.Tensor:
        """a_{f,j}(x) for each point (fidelity index ``fid``) and level j, shape (..., n, L)."""
        r = self.rho(x)
        fid = fid.expand(r.shape[:-1])
        cols = []
        for j in range(self.levels):
            a = torch.ones_like(r[..., 0])
            for i in range(j + 1, self.levels):
                a = a * torch.where(fid >= i, r[..., i], torch.ones_like(a))
            cols.append(torch.where(fid >= j, a, torch.zeros_like(a)))
        return torch.stack(cols, dim=-1)

    def prior_mean(self, x: torch.Tensor, fid: torch.Tensor) -> torch.Tensor:
        return self.loadings(x, fid) @ self.mean

    def covariance(self, x1: torch.Tensor, f1: torch.Tensor, x2: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        a1, a2 = self.loadings(x1, f1), self.loadings(x2, f2)
        # For plain (n, d) inputs with one fidelity per row, level j only touches rows of
        # fidelity >= j: evaluate its kernel on those rows alone (the higher levels usually
        # hold a few runs, so this skips most of the kernel work and its gradient).
        flat = x1.dim() == 2 and x2.dim() == 2 and f1.shape == x1.shape[:1] and f2.shape == x2.shape[:1]
        K = 0.0
        for j in range(self.levels):
            if flat and j > 0:
                i1, i2 = torch.nonzero(f1 >= j).squeeze(-1), torch.nonzero(f2 >= j).squeeze(-1)
                if len(i1) == len(x1) and len(i2) == len(x2):
                    K = K + a1[:, j, None] * a2[None, :, j] * self.kernels[j](x1, x2).to_dense()
                elif len(i1) and len(i2):
                    sub = a1[i1, j, None] * a2[None, i2, j] * self.kernels[j](x1[i1], x2[i2]).to_dense()
                    block = torch.zeros(len(x1), len(x2), dtype=sub.dtype)
                    K = K + block.index_put((i1[:, None], i2[None, :]), sub)
                continue
            kj = self.kernels[j](x1, x2).to_dense()
            K = K + a1[..., :, j, None] * a2[..., None, :, j] * kj
        return K

    def train_loadings(self, geo: "_Geometry", x: torch.Tensor) -> torch.Tensor:
        """:meth:`loadings` of the training rows in one product over the cached chain masks (same maths)."""
        r = self.rho(x)
        return torch.where(geo.chain, r[:, None, :], 1.0).prod(-1) * geo.on

    def log_prior(self, lengthscales: Sequence[torch.Tensor] | None = None,
                  outputscales: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Log density of the hyperparameters' priors (up to the ρ prior's constant).

        LogNormal(√2 + ½ log d, √3) on each lengthscale, Gamma(2, 2) on each outputscale,
        Gamma(1.1, 0.05) on each nugget, Normal(1, s) on each ρ (with ``rho_prior``). The
        densities are written out in float64 (GPyTorch's prior objects keep float32
        parameters) rather than going through ``torch.distributions`` once per prior and
        step. ``lengthscales``/``outputscales``: the levels' transformed values, when the
        caller has them already.
        """
        if lengthscales is None:
            lengthscales = [k.base_kernel.lengthscale for k in self.kernels]
        if outputscales is None:
            outputscales = [k.outputscale for k in self.kernels]
        mu, sigma = self._ls_prior
        alpha, beta = self._os_prior
        ls = torch.cat([t.reshape(-1) for t in lengthscales])
        os_ = torch.stack([t.reshape(()) for t in outputscales])
        log_ls = ls.log()
        lp = (-0.5 * ((log_ls - mu) / sigma) ** 2 - log_ls).sum() - len(ls) * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
        lp = lp + _log_gamma(os_, alpha, beta)
        if self.use_nugget:
            lp = lp + _log_gamma(self.nugget, *self._nugget_prior)
        if self.rho_prior_scale is not None and self.levels > 1:
            z = (self.rho0[1:] - 1.0) / self.rho_prior_scale
            lp = lp - 0.5 * (z**2).sum()
        return lp

    def train_blocks(self, geo: "_Geometry", a: torch.Tensor, lengthscales: Sequence[torch.Tensor],
                     outputscales: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The training rows' prior covariance ``covariance(x, fid, x, fid)`` in two parts (same maths).

        Returns level 0's term on all rows (N, N) and the sum of the higher levels' terms on
        the rows of fidelity >= 1 (``geo.rows[1]``; None with one level): level j's term
        only touches the rows of fidelity >= j, which are nested. ``a``: the rows' loadings
        (N, L); ``lengthscales``/``outputscales``: each level's (transformed) kernel
        hyperparameters. Level j's kernel is a function of ``r² = Σ_k (x_ik − x_jk)² / ℓ_k²``; with the
        per-dimension squared differences cached in ``geo`` (they do not change during a fit),
        r² and its gradient are one contraction with ``ℓ⁻²`` (:class:`_KernelBlock`) instead of
        a GPyTorch kernel call per level and step.
        """
        K0, S = None, None
        for j in range(self.levels):
            inv_ls2 = lengthscales[j].reshape(-1).pow(-2)
            outputscale = outputscales[j]
            aj = a[:, j] if geo.rows[j] is None else a[geo.rows[j], j]
            if geo.sq[j] is not None:
                block = _KernelBlock.apply(inv_ls2, outputscale, aj, geo.sq[j], self.kernel_kind)
            else:
                xs = geo.x[j] * inv_ls2.sqrt()
                nrm = (xs**2).sum(-1)
                r2 = (nrm[:, None] + nrm[None, :] - 2.0 * xs @ xs.T).clamp_min(0.0)
                block = (aj[:, None] * aj[None, :]) * (outputscale * _stationary(r2, self.kernel_kind))
            if j == 0:
                K0 = block
            elif j == 1:
                S = block
            else:
                pos = geo.within[j]
                S = S.index_put((pos[:, None], pos[None, :]), block, accumulate=True)
        return K0, S

    def prior_variance(self, x: torch.Tensor, fid: torch.Tensor) -> torch.Tensor:
        a = self.loadings(x, fid)
        scales = torch.stack([k.outputscale for k in self.kernels])
        return (a**2) @ scales


def _log_gamma(x: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Σ log Gamma(x; shape α, rate β) over the entries of x."""
    return (alpha - 1.0) * x.log().sum() - beta * x.sum() + x.numel() * (alpha * math.log(beta) - math.lgamma(alpha))


def _stationary(r2: torch.Tensor, kind: str) -> torch.Tensor:
    """Unit-variance kernel of the scaled squared distance r²: GPyTorch's Matérn-5/2 or RBF formula."""
    if kind == "rbf":
        return torch.exp(-0.5 * r2)
    s = math.sqrt(5.0) * r2.clamp_min(1e-30).sqrt()
    return (1.0 + s + (5.0 / 3.0) * r2) * torch.exp(-s)


class _KernelBlock(torch.autograd.Function):
    """One level's block ``σ² (a aᵀ) ∘ k(r²)`` with ``r² = Σ_k sq_k ℓ_k⁻²``, and its gradient in one pass.

    Inputs: ``ℓ⁻²`` (d,), the outputscale σ² (scalar), the loadings a (n,), the cached squared
    differences sq (d, n, n) and the kernel kind. The backward pass uses the closed-form
    ``dk/dr²`` (Matérn-5/2: ``−(5/6)(1 + √5 r) e^{−√5 r}``; RBF: ``−k/2``) instead of
    differentiating a dozen elementwise n × n operations one by one.
    """

    @staticmethod
    def forward(ctx: Any, inv_ls2: torch.Tensor, outputscale: torch.Tensor, a: torch.Tensor, sq: torch.Tensor,
                kind: str) -> torch.Tensor:
        n = sq.shape[-1]
        r2 = (inv_ls2 @ sq.reshape(sq.shape[0], -1)).reshape(n, n)
        if kind == "rbf":
            k = r2.mul_(-0.5).exp_()
            dk = k.mul(-0.5)
        else:
            s = r2.sqrt().mul_(math.sqrt(5.0))
            e = s.neg().exp_()
            k = r2.mul_(5.0 / 3.0).add_(s).add_(1.0).mul_(e)
            dk = s.add_(1.0).mul_(e).mul_(-5.0 / 6.0)
        A = torch.outer(a, a)
        ctx.save_for_backward(outputscale, a, sq, k, dk.mul_(A))   # saves k and A ∘ dk/dr²
        return A.mul_(k).mul_(outputscale)

    @staticmethod
    def backward(ctx: Any, G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None, None]:
        outputscale, a, sq, k, Adk = ctx.saved_tensors
        Gk = G * k
        v = Gk @ a
        g_outputscale = v @ a
        g_a = (v + Gk.T @ a) * outputscale
        g_inv_ls2 = (sq.reshape(sq.shape[0], -1) @ Gk.copy_(G).mul_(Adk).reshape(-1)) * outputscale
        return g_inv_ls2, g_outputscale, g_a, None, None


class _Geometry:
    """What a fit's covariance needs of the fixed training inputs: each level's rows and squared differences.

    ``rows[j]``: indices of the rows of fidelity >= j (None for level 0: all rows); ``x[j]``: their inputs;
    ``sq[j]``: their per-dimension squared differences (d, n_j, n_j), or None above
    ``max_entries`` (then r² is recomputed from ``x[j]`` each step); ``within[j]``: the
    positions of ``rows[j]`` among ``rows[1]`` (j >= 2). ``chain`` (N, L, L): whether ρ_i
    enters a_{f,j} (j < i <= f for the row's fidelity f); ``on`` (N, L): f >= j.
    """

    def __init__(self, x: torch.Tensor, fid: torch.Tensor, levels: int, max_entries: int = GEOMETRY_ENTRIES) -> None:
        self.rows: list[torch.Tensor | None] = []
        self.x: list[torch.Tensor] = []
        self.sq: list[torch.Tensor | None] = []
        self.within: list[torch.Tensor | None] = []  # positions of rows[j] among rows[1] (j >= 2)
        idx_1 = torch.arange(len(x))
        lv = torch.arange(levels)
        self.on = (fid[:, None] >= lv).to(DTYPE)
        self.chain = (lv[:, None] < lv[None, :]) & (lv[None, None, :] <= fid[:, None, None])
        for j in range(levels):
            idx = torch.nonzero(fid >= j).squeeze(-1)
            xj = x[idx]
            self.rows.append(None if j == 0 else idx)
            self.x.append(xj)
            fits = x.shape[-1] * len(idx) ** 2 <= max_entries
            self.sq.append((xj.T[:, :, None] - xj.T[:, None, :]) ** 2 if fits else None)
            self.within.append(torch.nonzero(fid[idx_1] >= j).squeeze(-1) if j >= 2 else None)
            if j == 1:
                idx_1 = idx


class _GaussianNLL(torch.autograd.Function):
    """``½ rᵀK⁻¹r + ½ log|K|`` with the closed-form gradient ``∂/∂K = ½ (K⁻¹ − ααᵀ)``, ``∂/∂r = α = K⁻¹r``.

    K = K0 + S (added on the rows ``rows``) + diag(noise), assembled here so that its parts
    need no n × n copies of their own. The same value and gradient as autograd through the Cholesky
    factor, at a fraction of its cost: one ``cholesky_inverse`` (Rasmussen & Williams eq. 5.9)
    instead of the factor's backward pass.
    """

    @staticmethod
    def forward(ctx: Any, K0: torch.Tensor, S: torch.Tensor | None, rows: torch.Tensor | None, noise: torch.Tensor,
                r: torch.Tensor, quiet: bool) -> torch.Tensor:
        K = K0.clone()
        if S is not None:
            K.index_put_((rows[:, None], rows[None, :]), S, accumulate=True)
        K.diagonal().add_(noise)
        L = safe_cholesky(K, quiet=quiet)
        alpha = torch.cholesky_solve(r.unsqueeze(-1), L).squeeze(-1)
        ctx.save_for_backward(L, alpha, rows)
        ctx.has_s = S is not None
        return 0.5 * (r @ alpha) + torch.log(torch.diagonal(L)).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        L, alpha, rows = ctx.saved_tensors
        gK = torch.cholesky_inverse(L).addr_(alpha, alpha, alpha=-1.0).mul_(0.5 * grad)
        gS = gK[rows[:, None], rows[None, :]] if ctx.has_s else None
        return gK, gS, None, gK.diagonal().clone(), grad * alpha, None


@dataclass
class _Data:
    x: torch.Tensor      # (N, d) unit cube
    z: torch.Tensor      # (N,) standardised outputs
    v: torch.Tensor      # (N,) standardised known noise variances
    fid: torch.Tensor    # (N,) fidelity index (long)


@dataclass
class FitInfo:
    """What the last fit did: loss per restart, chosen restart, wall time (s)."""

    losses: list[float] = field(default_factory=list)
    best: int = -1
    seconds: float = 0.0
    n_per_fidelity: dict[str, int] = field(default_factory=dict)


class AR1Surrogate(Surrogate):
    """Multi-fidelity GP surrogate over a :class:`DesignSpace` (scikit-learn style; a BoTorch ``Model``).

    Parameters
    ----------
    space:
        The design space; inputs are scaled by its bounds.
    fidelities:
        Fidelity names, ordered from lowest to highest. One name gives a plain
        single-fidelity GP with per-point noise.
    settings:
        :class:`AR1Settings` (kernel, ρ form, nugget, restarts, L-BFGS iterations, output transform).
    seed:
        Seed of the random restarts; the same seed gives the same fit.

    Example
    -------
    >>> sur = AR1Surrogate(space, ["lf", "hf"]).fit(rate_table)      # doctest: +SKIP
    >>> mean, std = sur.predict(designs, "hf")                        # doctest: +SKIP
    >>> sur.posterior(torch.as_tensor(designs.to_numpy())[:, None])   # doctest: +SKIP
    """

    kind = "ar1"
    settings_class = AR1Settings
    mixed_fidelity = True

    def __init__(self, space: DesignSpace, fidelities: Sequence[str], settings: AR1Settings | None = None,
                 seed: int = 0) -> None:
        super().__init__(space, fidelities, settings, seed)
        self.module: _AR1Module | None = None
        self.info = FitInfo()
        self._y_mean = torch.zeros(len(self.fidelities), dtype=DTYPE)
        self._y_std = torch.ones(len(self.fidelities), dtype=DTYPE)
        self._calibration = torch.ones(len(self.fidelities), dtype=DTYPE)

    # ------------------------------------------------------------ transforms
    def _x(self, x: Any) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            xt = x.to(DTYPE)
        else:
            xt = torch.as_tensor(self.space.as_array(x), dtype=DTYPE)
        return self.space.to_unit(xt)

    def _forward_y(self, y: np.ndarray, v: np.ndarray, fid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.settings.output == "log":
            if np.any(y <= 0):
                raise InputError("surrogate.output: log needs strictly positive rates")
            v = v / y**2  # delta method
            y = np.log(y)
        return y, v

    # ------------------------------------------------------------------- fit
    def fit(self, table: RateTable) -> "AR1Surrogate":
        """Fit hyperparameters by maximum marginal likelihood (MAP with weak priors).

        Rows of fidelities the surrogate does not know are ignored. Every known fidelity
        must have at least one row.
        """
        with torch_threads(1 if len(table) <= SMALL_N else torch.get_num_threads()):
            return self._fit(table)

    def _fit(self, table: RateTable) -> "AR1Surrogate":
        t0 = time.perf_counter()
        frame, fid, counts = self._rows(table)
        y, v = self._forward_y(frame["rate"].to_numpy(float, copy=True), frame["var"].to_numpy(float, copy=True), fid)
        means, stds = standardise(y, fid, len(self.fidelities), v, log_scale=self.settings.output == "log")
        self._y_mean = torch.as_tensor(means, dtype=DTYPE)
        self._y_std = torch.as_tensor(stds, dtype=DTYPE)
        fid_t = torch.as_tensor(fid, dtype=torch.long)
        self._data = _Data(
            x=self._x(frame[self.space.names].to_numpy(float)),
            z=(torch.as_tensor(y, dtype=DTYPE) - self._y_mean[fid_t]) / self._y_std[fid_t],
            v=torch.as_tensor(v, dtype=DTYPE) / self._y_std[fid_t] ** 2,
            fid=fid_t,
        )
        self._geometry = _Geometry(self._data.x, fid_t, len(self.fidelities))
        gen = torch.Generator().manual_seed(self.seed)
        best_state, best_loss, losses = None, math.inf, []
        for r in range(self.settings.restarts):
            module = _AR1Module(len(self.fidelities), self.space.dim, self.settings)
            self._initialise(module, r, gen)
            loss = self._optimise(module)
            losses.append(loss)
            log.debug("restart %d: loss %.5g", r, loss)
            if loss < best_loss:
                best_loss, best_state = loss, {k: v.detach().clone() for k, v in module.state_dict().items()}
        if best_state is None:
            raise RuntimeError("every restart of the GP fit failed (non-finite likelihood)")
        self.module = _AR1Module(len(self.fidelities), self.space.dim, self.settings)
        self.module.load_state_dict(best_state)
        self._condition()
        self._calibration = self._calibration_factors(table)
        self.info = FitInfo(losses=losses, best=int(np.argmin(losses)), seconds=time.perf_counter() - t0,
                            n_per_fidelity=counts)
        log.info("AR1 fit: %d restarts in %.2f s, best loss %.4f", len(losses), self.info.seconds, best_loss)
        return self

    def _initialise(self, module: _AR1Module, restart: int, gen: torch.Generator) -> None:
        with torch.no_grad():
            if restart == 0:
                return  # prior modes / defaults
            for k in module.kernels:
                ls = torch.exp(torch.empty(1, self.space.dim, dtype=DTYPE).uniform_(math.log(0.1), math.log(3.0), generator=gen))
                k.base_kernel.lengthscale = ls.clamp_min(0.03)
                k.outputscale = torch.exp(torch.empty((), dtype=DTYPE).uniform_(math.log(0.05), math.log(2.0), generator=gen))
            module.rho0.copy_(torch.empty(module.levels, dtype=DTYPE).uniform_(0.0, 1.5, generator=gen))
            if module.use_nugget:
                nug = torch.exp(torch.empty(module.levels, dtype=DTYPE).uniform_(math.log(1e-4), math.log(0.3), generator=gen))
                module.raw_nugget.copy_(module.nugget_constraint.inverse_transform(nug))

    def _neg_log_posterior(self, module: _AR1Module, quiet: bool = True) -> torch.Tensor:
        """Negative log posterior of the hyperparameters per training row (the fit's loss)."""
        d, geo = self._data, self._geometry
        a = module.train_loadings(geo, d.x)
        ls = [k.base_kernel.lengthscale for k in module.kernels]
        os_ = [k.outputscale for k in module.kernels]
        K0, S = module.train_blocks(geo, a, ls, os_)
        r = d.z - a @ module.mean
        n = len(d.z)
        nll = _GaussianNLL.apply(K0, S, geo.rows[1] if S is not None else None, d.v + module.nugget[d.fid], r, quiet)
        return (nll + 0.5 * n * math.log(2 * math.pi) - module.log_prior(ls, os_)) / n

    def _optimise(self, module: _AR1Module) -> float:
        params = [p for p in module.parameters() if p.requires_grad]
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=self.settings.max_iter, line_search_fn="strong_wolfe",
                                tolerance_grad=GTOL, tolerance_change=FTOL, history_size=20)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = self._neg_log_posterior(module)
            if not torch.isfinite(loss):
                raise FloatingPointError("non-finite loss")
            loss.backward()
            return loss

        try:
            opt.step(closure)
            with torch.no_grad():
                loss = float(self._neg_log_posterior(module))
        except (FloatingPointError, RuntimeError, ValueError) as exc:  # NotPSDError is a RuntimeError
            log.debug("restart failed: %s", exc)
            return math.inf
        return loss if math.isfinite(loss) else math.inf

    @torch.no_grad()
    def _condition(self) -> None:
        m, d = self.module, self._data
        K = m.covariance(d.x, d.fid, d.x, d.fid) + torch.diag(d.v + m.nugget[d.fid])
        self._L = safe_cholesky(K, quiet=False)
        r = (d.z - m.prior_mean(d.x, d.fid)).unsqueeze(-1)
        self._alpha = torch.cholesky_solve(r, self._L).squeeze(-1)
        self._uk = None
        if self.settings.mean_uncertainty:
            H = self._basis(d.x, d.fid)
            KinvH = torch.cholesky_solve(H, self._L)
            G = H.T @ KinvH
            self._uk = (KinvH, torch.linalg.pinv(G + 1e-10 * torch.eye(G.shape[0], dtype=DTYPE)))

    @torch.no_grad()
    def _precision(self) -> tuple[torch.Tensor, torch.Tensor]:
        """P = K⁻¹ (less K⁻¹H(HᵀK⁻¹H)⁻¹HᵀK⁻¹ with ``mean_uncertainty``) and e = P(z − m), standardised units."""
        m, d = self.module, self._data
        P = torch.cholesky_inverse(self._L)
        if self._uk is not None:
            KinvH, Ginv = self._uk
            P = P - KinvH @ Ginv @ KinvH.T
        return P, P @ (d.z - m.prior_mean(d.x, d.fid))

    @torch.no_grad()
    def _loo(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Closed-form leave-one-out of every training row (standardised units): residual, latent variance, noise.

        With P = K⁻¹ (less K⁻¹H(HᵀK⁻¹H)⁻¹HᵀK⁻¹ with ``mean_uncertainty``), row i's LOO residual
        is r_i = [P(z − m)]_i / P_ii and its LOO observed variance 1/P_ii = s_i² + n_i (latent
        s_i², noise n_i = v_i + τ_f).
        """
        m, d = self.module, self._data
        P, e = self._precision()
        diag = P.diagonal().clamp_min(1e-300)
        resid = e / diag
        noise = d.v + m.nugget[d.fid]
        return resid, (1.0 / diag - noise).clamp_min(0.0), noise

    def _loo_calibration(self) -> torch.Tensor:
        """Per-fidelity factor c_f >= 1 on the latent posterior std: :func:`loo_scale` of the fidelity's LOO rows."""
        resid, latent, noise = self._loo()
        fid = self._data.fid
        out = torch.ones(self.module.levels, dtype=DTYPE)
        for f in range(self.module.levels):
            sel = fid == f
            if int(sel.sum()) >= MIN_LOO_ROWS:
                out[f] = loo_scale(resid[sel].numpy(), latent[sel].numpy(), noise[sel].numpy())
        log.info("AR1 LOO calibration factors: %s", [round(float(c), 3) for c in out])
        return out

    def loco_blocks(self, table: RateTable) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Leave-one-cluster-out cross-validation of the target fidelity, by refits (rate units).

        The target rows of ``table`` are split into ``settings.loco_clusters`` clusters by
        :func:`design_clusters` on the unit cube. Each cluster is held out in turn with every
        row (of any fidelity) whose design lies within ``DESIGN_TOL`` of one of its designs
        (a paired lower-fidelity run), a fresh surrogate with the same settings (uncalibrated,
        same seed) is fitted to the rest, and the cluster's target runs are predicted jointly.
        Returns, per cluster, (r, S, n): the residuals (observed − predicted mean), their
        latent covariance S (``joint``) and noise variances n (own variance + nugget). Clusters
        whose removal leaves a fidelity without rows are skipped.
        """
        from dataclasses import replace

        frame, fid, _ = self._rows(table)
        top = len(self.fidelities) - 1
        u = np.asarray(self.space.to_unit(frame[self.space.names].to_numpy(float)))
        rows = np.flatnonzero(fid == top)
        labels = design_clusters(u[rows], self.settings.loco_clusters)
        inner = replace(self.settings, calibrate="none")
        blocks = []
        for c in np.unique(labels):
            t = rows[labels == c]
            hold = np.any(np.all(np.abs(u[:, None, :] - u[None, t, :]) <= DESIGN_TOL, axis=-1), axis=1)
            if any(not np.any(~hold & (fid == f)) for f in range(len(self.fidelities))):
                continue
            sub = RateTable(frame[~hold].reset_index(drop=True), self.space)
            sur = AR1Surrogate(self.space, self.fidelities, inner, self.seed)._fit(sub)
            test = frame.iloc[t]
            with torch.no_grad():
                m, S = sur.joint(test[self.space.names].to_numpy(float), self.target)
            n = test["var"].to_numpy(float) + sur.noise_variance(self.target)
            blocks.append((test["rate"].to_numpy(float) - m.numpy(), S.numpy(), n))
        return blocks

    def _calibration_factors(self, table: RateTable | None = None) -> torch.Tensor:
        """Per-fidelity factors c_f >= 1 on the latent posterior std, as ``settings.calibrate`` says."""
        out = torch.ones(self.module.levels, dtype=DTYPE)
        if self.settings.calibrate == "none":
            return out
        out = self._loo_calibration()
        if self.settings.calibrate == "loco":
            if table is None:
                raise ValueError("calibrate: loco refits on the training table; pass it")
            top = self.module.levels - 1
            c_loco = block_scale(self.loco_blocks(table), bound=self.settings.loco_bound)
            log.info("AR1 LOCO calibration of the target: %.3f (LOO: %.3f)", c_loco, float(out[top]))
            out[top] = max(float(out[top]), c_loco)
        return out

    def recalibrate(self, calibrate: str, table: RateTable | None = None, **settings: Any) -> "AR1Surrogate":
        """Recompute the σ calibration of a fitted surrogate with another ``calibrate`` setting (no refit).

        The hyperparameters and the mean stay as fitted; only the factors c_f change (and the
        settings, so that :meth:`save` records them). ``calibrate: loco`` refits on ``table``
        (the training table of :meth:`fit`); ``settings``: ``loco_clusters`` or ``loco_bound``.
        Returns self.
        """
        if self.module is None:
            raise RuntimeError("call fit() before recalibrate()")
        from dataclasses import replace

        unknown = set(settings) - {"loco_clusters", "loco_bound"}
        if unknown:
            raise ValueError(f"recalibrate takes loco_clusters and loco_bound, not {sorted(unknown)}")
        self.settings = replace(self.settings, calibrate=calibrate, **settings)
        self._calibration = self._calibration_factors(table)
        return self

    def _basis(self, x: torch.Tensor, fid: torch.Tensor) -> torch.Tensor:
        """Regression basis of the target level, (..., n, p): [1] for one fidelity, else [z_{F-1}(x), 1].

        Rows of lower fidelities are 0: the target level's mean c and ρ act on the target
        only. z_{F-1} is the next-lower level's latent posterior mean (standardised units),
        the direction in which an error in ρ moves the target.
        """
        top = self.module.levels - 1
        fid = fid.expand(x.shape[:-1])
        on = (fid == top).to(DTYPE)
        if top == 0:
            return on.unsqueeze(-1)
        m, d = self.module, self._data
        below = torch.full(x.shape[:-1], top - 1, dtype=torch.long)
        z_below = m.prior_mean(x, below) + m.covariance(x, below, d.x, d.fid) @ self._alpha
        return torch.stack([on * z_below, on], dim=-1)

    def _mean_cov(self, x: torch.Tensor, fid: torch.Tensor, Ks: torch.Tensor) -> torch.Tensor | None:
        """U = h(x) − Ks K⁻¹ H (…, n, p): the part of the posterior that the mean/ρ uncertainty moves."""
        if self._uk is None:
            return None
        KinvH, _ = self._uk
        return self._basis(x, fid) - Ks @ KinvH

    # --------------------------------------------------------------- predict
    def predict(self, x: Any, fidelity: str | None = None, *, observed: bool = False,
                noise_var: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and standard deviation of ``fidelity`` (default: the highest) at ``x``.

        ``x`` is a DataFrame, an (n, d) array, or a torch tensor of shape (..., n, d) in
        parameter units; with a tensor the result is differentiable in x. The latent std
        is returned by default; ``observed=True`` adds the fidelity's learned nugget, and
        ``noise_var`` (array of n, output units²) adds the points' own known noise.
        Means and stds are in the rate's units (for ``output: log``: the median
        ``exp(μ)`` and the delta-method std ``exp(μ)·σ``).

        With ``settings.mean_uncertainty`` the variance also carries the uncertainty of
        the target level's constant mean and ρ (universal kriging with a flat prior on
        them): ``+ uᵀ (Hᵀ K⁻¹ H)⁻¹ u`` with ``u = h(x) − Hᵀ K⁻¹ k(x)`` and the basis
        ``h = [z_{F-1}(x), 1]`` (``[1]`` for one fidelity), where z_{F-1} is the next-lower
        level's posterior mean. It matters with few target runs (about 10); the mean is
        unchanged.
        """
        if self.module is None:
            raise RuntimeError("call fit() before predict()")
        g = self._fid_index(fidelity)
        xs = self._x(x)
        m, d = self.module, self._data
        fid = torch.full(xs.shape[:-1], g, dtype=torch.long)
        with torch.set_grad_enabled(xs.requires_grad):
            Ks = m.covariance(xs, fid, d.x, d.fid)
            mean = m.prior_mean(xs, fid) + Ks @ self._alpha
            w = torch.linalg.solve_triangular(self._L, Ks.transpose(-1, -2), upper=False)
            var = (m.prior_variance(xs, fid) - (w**2).sum(-2)).clamp_min(1e-12)
            U = self._mean_cov(xs, fid, Ks)
            if U is not None:
                var = var + ((U @ self._uk[1]) * U).sum(-1)
            var = var * self._calibration[g] ** 2
            if observed:
                var = var + m.nugget[g]
            mean = mean * self._y_std[g] + self._y_mean[g]
            var = var * self._y_std[g] ** 2
            if self.settings.output == "log":
                mean = torch.exp(mean)
                var = var * mean**2
            if noise_var is not None:
                var = var + torch.as_tensor(np.array(noise_var, dtype=float), dtype=DTYPE)
        return mean, var.sqrt()

    def joint(self, x: Any, fidelity: str | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint latent posterior at ``x``: mean (..., n) and covariance (..., n, n), output units.

        ``fidelity`` is a name (all points at that fidelity) or a long tensor of fidelity
        indices (..., n), so points at different fidelities can be mixed — what
        multi-fidelity acquisition functions need (e.g. how much an LF run at θ₁ would
        reduce the HF variance at θ₂). Differentiable in x. For ``output: log`` the
        covariance is the delta-method one around the median.
        """
        if self.module is None:
            raise RuntimeError("call fit() before joint()")
        xs = self._x(x)
        if isinstance(fidelity, torch.Tensor):
            fid = fidelity.to(torch.long).expand(xs.shape[:-1])
        else:
            fid = torch.full(xs.shape[:-1], self._fid_index(fidelity), dtype=torch.long)
        m, d = self.module, self._data
        with torch.set_grad_enabled(xs.requires_grad):
            Ks = m.covariance(xs, fid, d.x, d.fid)
            mean = m.prior_mean(xs, fid) + Ks @ self._alpha
            w = torch.linalg.solve_triangular(self._L, Ks.transpose(-1, -2), upper=False)
            cov = m.covariance(xs, fid, xs, fid) - w.transpose(-1, -2) @ w
            U = self._mean_cov(xs, fid, Ks)
            if U is not None:
                cov = cov + U @ self._uk[1] @ U.transpose(-1, -2)
            mean = mean * self._y_std[fid] + self._y_mean[fid]
            scale = self._y_std[fid] * self._calibration[fid]   # D C D with D = diag(σ_y c_f): stays PSD
            cov = cov * scale[..., :, None] * scale[..., None, :]
            if self.settings.output == "log":
                mean = torch.exp(mean)
                cov = cov * mean[..., :, None] * mean[..., None, :]
        return mean, cov

    def noise_variance(self, fidelity: str | None = None) -> float:
        """The learned nugget of ``fidelity`` in output units² (0 without a nugget)."""
        if self.module is None:
            raise RuntimeError("call fit() before noise_variance()")
        g = self._fid_index(fidelity)
        return float(self.module.nugget[g].detach() * self._y_std[g] ** 2)

    def rho(self, x: Any) -> torch.Tensor:
        """ρ_f(x) of every fidelity link in the *original* output units, shape (n, L-1)."""
        if self.module is None:
            raise RuntimeError("call fit() before rho()")
        with torch.no_grad():
            r = self.module.rho(self._x(x))[..., 1:]
        return r * self._y_std[1:] / self._y_std[:-1]

    @torch.no_grad()
    def hyperparameters(self) -> dict[str, Any]:
        """Fitted hyperparameters per fidelity (lengthscales in unit-cube units)."""
        if self.module is None:
            return {}
        m = self.module
        out = {}
        for i, name in enumerate(self.fidelities):
            k = m.kernels[i]
            out[name] = {
                "lengthscale": k.base_kernel.lengthscale.detach().flatten().tolist(),
                "outputscale": float(k.outputscale),
                "mean": float(m.mean[i]),
                "nugget": float(m.nugget[i]),
                "rho": None if i == 0 else float(m.rho0[i]),
                "calibration": float(self._calibration[i]),
            }
        return out

    # ------------------------------------------------------------- save/load
    def _fitted(self) -> bool:
        return self.module is not None

    def _state_tensors(self) -> dict[str, Any]:
        d = self._data
        return {"module": self.module.state_dict(), "x": d.x, "z": d.z, "v": d.v, "fid": d.fid,
                "y_mean": self._y_mean, "y_std": self._y_std, "calibration": self._calibration}

    def _restore(self, state: dict[str, Any]) -> None:
        self.module = _AR1Module(len(self.fidelities), self.space.dim, self.settings)
        self.module.load_state_dict(state["module"])
        self._data = _Data(x=state["x"], z=state["z"], v=state["v"], fid=state["fid"])
        self._y_mean, self._y_std = state["y_mean"], state["y_std"]
        # saves from before the calibration carry none: their posterior was uncalibrated
        self._calibration = state.get("calibration", torch.ones(len(self.fidelities), dtype=DTYPE))
        self._condition()



def loo_scale(resid: np.ndarray, latent: np.ndarray, noise: np.ndarray, bound: float = LOO_BOUND,
              upper: float = MAX_CALIBRATION) -> float:
    """Calibration factor c in [1, upper] of a latent std from leave-one-out residuals.

    ``resid``: LOO residuals r_i; ``latent``: their latent LOO variances s_i²; ``noise``: their
    noise variances n_i (all in the same units). With ℓ(c) = Σ log N(r_i; 0, c² s_i² + n_i),
    ĉ = argmax ℓ on [1, upper], and the result is the upper end of c's likelihood interval:
    the largest c with 2 (ℓ(ĉ) − ℓ(c)) ≤ ``bound`` (3.84: the upper end of the 95% likelihood-ratio interval); ``bound=0``
    gives ĉ. ℓ is evaluated on a grid of 400 values of log c, then the optimum and the
    crossing are refined by bounded scalar searches. Fewer than 3 rows, or no latent
    variance to scale, give 1.
    """
    from scipy.optimize import brentq, minimize_scalar

    r2 = np.asarray(resid, float) ** 2
    s2 = np.asarray(latent, float)
    n = np.asarray(noise, float)
    if len(r2) < MIN_LOO_ROWS or not np.all(np.isfinite(r2)) or not np.any(s2 > 0):
        return 1.0

    def dev(logc: float) -> float:   # −2 ℓ(c) up to a constant
        var = np.maximum(math.exp(2 * logc) * s2 + n, 1e-300)
        return float(np.sum(np.log(var) + r2 / var))

    grid = np.linspace(0.0, math.log(upper), 400)
    vals = np.array([dev(g) for g in grid])
    i = int(np.argmin(vals))
    best, best_val = float(grid[i]), float(vals[i])
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = minimize_scalar(dev, bounds=(lo, hi), method="bounded", options={"xatol": 1e-7})
    if res.success and res.fun < best_val:
        best, best_val = float(res.x), float(res.fun)
    if bound <= 0:
        return float(math.exp(best))
    above = np.nonzero((grid > best) & (vals - best_val >= bound))[0]
    if not len(above):
        return float(upper)
    j = int(above[0])
    a = max(best, float(grid[j - 1]))
    return float(math.exp(brentq(lambda g: dev(g) - best_val - bound, a, float(grid[j]), xtol=1e-9)))


def design_clusters(u: np.ndarray, k: int) -> np.ndarray:
    """Cluster labels (0 … k'−1, k' <= k) of the designs ``u`` (n, d; unit cube) by k-means, deterministically.

    Initialisation by farthest-point traversal: the first centre is the design farthest
    from the centroid, each next one the design farthest from the centres so far — so the
    first clusters sit at the edges of the cloud and holding one out makes the rest
    extrapolate to it. Then Lloyd's iterations; an emptied cluster is dropped. With
    n <= k every design is its own cluster (leave-one-out).
    """
    u = np.asarray(u, float)
    n = len(u)
    if n <= k:
        return np.arange(n)
    centres = [int(np.argmax(((u - u.mean(0)) ** 2).sum(1)))]
    dist = ((u - u[centres[0]]) ** 2).sum(1)
    while len(centres) < k:
        nxt = int(np.argmax(dist))
        centres.append(nxt)
        dist = np.minimum(dist, ((u - u[nxt]) ** 2).sum(1))
    c = u[centres].copy()
    labels = np.full(n, -1)
    for _ in range(KMEANS_ITER):
        new = np.argmin(((u[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        c = np.stack([u[labels == j].mean(0) if np.any(labels == j) else c[j] for j in range(len(c))])
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def block_scale(blocks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], bound: float = LOO_BOUND,
                upper: float = MAX_CALIBRATION) -> float:
    """Calibration factor c in [1, upper] of a latent std from held-out *blocks* of correlated residuals.

    ``blocks``: per held-out cluster, (r, S, n): its residuals r (m,), their latent covariance
    S (m, m) and noise variances n (m,) (diagonal). The exact likelihood of c is
    ℓ(c) = Σ_B log N(r_B; 0, c² S_B + N_B). With N^{-1/2} S N^{-1/2} = Q Λ Qᵀ, the rotated
    residuals w = Qᵀ N^{-1/2} r are independent with variances c² λ_j + 1, so ℓ is
    :func:`loo_scale`'s likelihood of (w, λ, 1) and c is the upper end of its likelihood
    interval as there. Residuals of one cluster move together (a cluster outside the others'
    cloud is over- or under-predicted as a whole); scoring them as independent would count
    one cluster's misfit several times.
    """
    w, lam = [], []
    for r, S, n in blocks:
        r, S, n = np.asarray(r, float), np.atleast_2d(np.asarray(S, float)), np.asarray(n, float)
        n = np.maximum(n, 1e-12 * max(float(np.mean(np.abs(np.diag(S)))), 1e-300))
        h = 1.0 / np.sqrt(n)
        M = h[:, None] * 0.5 * (S + S.T) * h[None, :]
        ev, Q = np.linalg.eigh(M)
        w.append(Q.T @ (h * r))
        lam.append(np.clip(ev, 0.0, None))
    if not w:
        return 1.0
    w, lam = np.concatenate(w), np.concatenate(lam)
    return loo_scale(w, lam, np.ones_like(w), bound=bound, upper=upper)
