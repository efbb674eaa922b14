"""Generate section: the conditional normalizing-flow event generator p(φ | θ) (:mod:`rarefy.generate`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .base import MAX_LAYERS, MAX_SAMPLES, MAX_SEED, MAX_STEPS, MAX_WIDTH, ConfigModel

__all__ = ["GenerateConfig", "GenerateFlowConfig"]


class GenerateFlowConfig(ConfigModel):
    """The zuko flow of the generator: family, depth and width."""

    kind: Literal["nsf", "maf"] = "nsf"
    """``nsf`` (neural spline flow, monotonic rational-quadratic splines) or ``maf`` (masked affine autoregressive)"""
    transforms: int = Field(default=3, ge=1, le=MAX_LAYERS)
    """number of autoregressive transforms"""
    hidden: list[int] = Field(default_factory=lambda: [64, 64])
    """hidden layer widths of each transform's conditioner network"""
    bins: int = Field(default=8, ge=2, le=256)
    """nsf: spline bins per feature"""
    passes: int | None = Field(default=None, ge=2, le=MAX_LAYERS)
    """passes of each transform's inverse: null = fully autoregressive (one pass per φ column, the most expressive);
    2 = coupling transforms (half the columns condition the other half; sampling several times faster)"""

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, v: list[int]) -> list[int]:
        return _widths(v)


def _widths(v: list[int]) -> list[int]:
    if not v or len(v) > MAX_LAYERS or any(not 1 <= h <= MAX_WIDTH for h in v):
        raise ValueError(f"hidden must list 1 to {MAX_LAYERS} widths in 1..{MAX_WIDTH}, got {v}")
    return v


class GenerateConfig(ConfigModel):
    """Training of the event generator p(φ | θ) on the events of one fidelity of a run directory."""

    fidelity: str | None = None
    """the fidelity whose events are learnt (default: the lowest fidelity)"""
    phi: list[str] | None = None
    """the φ columns to generate (default: every φ column of the events)"""
    integer: list[str] | None = None
    """φ columns that take integer values (uniformly dequantised); null: those whose training values are all integers"""
    discrete: Literal["auto", "dequantise"] = "auto"
    """how integer φ columns with few values are modelled: ``auto``, exactly, by a categorical classifier head per
    column given the continuous columns, the earlier discrete ones and θ (the integer columns with at most
    ``max_categories`` distinct training values; the others stay dequantised in the flow); ``dequantise``, every
    integer column uniformly dequantised in the flow"""
    max_categories: int = Field(default=32, ge=2, le=MAX_WIDTH)
    """``discrete: auto``: an integer column with at most this many distinct values gets a categorical head"""
    discrete_hidden: list[int] = Field(default_factory=lambda: [64, 64])
    """hidden layer widths of each discrete column's classifier head"""
    condition_on_outcome: bool = False
    """also condition on the outcome y, to learn p(φ | θ, y) (sample y = 1 for the rare events' φ)"""
    margin: float = Field(default=0.01, gt=0, le=1)
    """the min–max bounds of each φ are widened by this fraction of its range before the logit transform"""
    flow: GenerateFlowConfig = Field(default_factory=GenerateFlowConfig)
    """the flow's family and size"""
    epochs: int = Field(default=30, ge=1, le=MAX_STEPS)
    """training epochs (at most; early stopping may end sooner)"""
    batch_size: int = Field(default=1024, ge=1, le=MAX_SAMPLES)
    """events per batch"""
    max_batches: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    """at most this many batches per epoch (null: a full pass over the training events)"""
    max_events: int | None = Field(default=None, ge=1)
    """train on a random subset of at most this many events (null: all)"""
    lr: float = Field(default=1e-3, gt=0, le=1)
    """Adam learning rate"""
    weight_decay: float = Field(default=0.0, ge=0)
    """Adam weight decay"""
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    """learning-rate schedule over the epochs"""
    grad_clip: float | None = Field(default=5.0, gt=0)
    """clip the gradient norm to this (null: no clipping)"""
    patience: int | None = Field(default=5, ge=1, le=MAX_STEPS)
    """early stopping: epochs without a better validation NLL (null: never stop early)"""
    val_fraction: float = Field(default=0.15, ge=0, lt=1)
    """fraction of the runs (whole runs: their designs are unseen) held out to validate"""
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    """seed of initialisation, split, batches and dequantisation (default: the config's seed)"""

    @field_validator("discrete_hidden")
    @classmethod
    def _discrete_hidden(cls, v: list[int]) -> list[int]:
        return _widths(v)
