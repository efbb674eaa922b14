"""Surrogate section: the multi-fidelity model (``kind: ar1`` or ``pce``) and its settings."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from .base import MAX_PARALLEL, MAX_STEPS, ConfigModel

__all__ = ["SurrogateConfig"]


#: the highest total degree of a PCE (its number of terms grows as C(d + degree, degree))
MAX_DEGREE = 30


class SurrogateConfig(ConfigModel):
    """Settings of the multi-fidelity surrogate.

    ``kind: ar1`` (default): the AR1 Gaussian process, :class:`rarefy.AR1Surrogate`
    (``kernel``, ``rho``, ``nugget``, ``restarts``, ``max_iter``, ``output``, ``rho_prior``,
    ``mean_uncertainty``, ``calibrate``, ``loco_clusters``, ``loco_bound``).
    ``kind: pce``: the Bayesian multi-fidelity PCE, :class:`rarefy.PCESurrogate`
    (``degree`` or ``max_degree`` with ``cv_folds``, ``nugget``, ``max_iter``, ``output``;
    ``output: poisson`` models the log rate behind the counts ``k`` of ``n`` events, pce only).
    """

    kind: Literal["ar1", "pce"] = "ar1"
    """``ar1``: the AR1 Gaussian process; ``pce``: the Bayesian multi-fidelity PCE"""
    kernel: Literal["matern52", "rbf"] = "matern52"
    """ar1: kernel of each level's GP, ARD Matérn-5/2 or RBF"""
    rho: Literal["constant", "linear"] = "constant"
    """ar1: the scale factor ρ between consecutive levels, constant or linear in the design"""
    nugget: bool = True
    """learn a noise nugget per fidelity on top of the known noise variances"""
    restarts: int = Field(default=5, ge=1, le=MAX_PARALLEL)
    """ar1: random restarts of the hyperparameter fit"""
    max_iter: int = Field(default=200, ge=1, le=MAX_STEPS)
    """iterations of one fit (ar1: L-BFGS iterations; pce: outer evidence iterations)"""
    output: Literal["identity", "log", "poisson"] = "identity"
    """scale of the modelled value: ``identity``, ``log`` (log of a positive rate, delta-method variance) or
    ``poisson`` (pce only: log-rate model of the counts k of n events)"""
    rho_prior: float | None = Field(default=None, gt=0)
    """ar1 and pce: scale s of a Normal(1, s) prior on each constant ρ, in standardised output units (None: flat)"""
    mean_uncertainty: bool = False
    """ar1: add the uncertainty of the target level's constant mean and ρ to its predictive variance (universal
    kriging; for few target runs)"""
    calibrate: Literal["loo", "loco", "none"] = "loo"
    """ar1: ``loo`` widens each fidelity's latent σ by the factor c >= 1 that makes its closed-form leave-one-out
    residuals most likely (stored with the model, see ``hyperparameters``); ``loco`` also widens the target's σ to
    what its leave-one-cluster-out residuals need (clusters of target designs held out in turn and refitted
    without: shifted designs; ``loco_clusters`` + 1 fits);
    ``none`` keeps the fitted σ"""
    loco_clusters: int = Field(default=3, ge=2, le=MAX_PARALLEL)
    """ar1 with ``calibrate: loco``: number of k-means clusters of the target runs' designs, each held out in turn"""
    loco_bound: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    """ar1 with ``calibrate: loco``: the factor is the upper end of its likelihood interval 2Δℓ <= loco_bound
    (0: the likelihood maximiser; 3.84: the 95% interval's upper end, as ``loo`` uses)"""
    degree: int | None = Field(default=None, ge=0, le=MAX_DEGREE)
    """pce: fixed total degree (default: by cross-validation)"""
    max_degree: int = Field(default=4, ge=1, le=MAX_DEGREE)
    """pce: highest total degree tried by the cross-validation"""
    cv_folds: int = Field(default=5, ge=2, le=MAX_PARALLEL)
    """pce: folds of the degree cross-validation"""
    prior: Literal["ard", "degree"] = "ard"
    """pce: coefficient prior — 'ard' (one precision per term) or 'degree' (one precision per fidelity level and
    total degree; better calibrated intervals)"""

    AR1_FIELDS: ClassVar[tuple[str, ...]] = ("kernel", "rho", "nugget", "restarts", "max_iter", "output", "rho_prior",
                                             "mean_uncertainty", "calibrate", "loco_clusters", "loco_bound")
    PCE_FIELDS: ClassVar[tuple[str, ...]] = ("degree", "max_degree", "cv_folds", "nugget", "max_iter", "output",
                                             "prior", "rho_prior")

    @model_validator(mode="after")
    def _poisson_is_pce(self) -> "SurrogateConfig":
        if self.output == "poisson" and self.kind != "pce":
            raise ValueError("output: poisson (a log-rate model of the counts k, n) is only available with kind: pce")
        return self
