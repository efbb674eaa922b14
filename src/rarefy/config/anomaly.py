"""Anomaly section: ``rarefy anomaly`` (CATHODE overdensity search in a signal region of m).

Given as its own YAML file (see :func:`rarefy.config.load.load_anomaly_config`)::

    seed: 0
    signal_region: [3.3, 3.7]
    data: {path: events.parquet, mass: m, features: [x1, x2, x3], label: is_signal}
    # or, instead of data, a synthetic bump hunt with known densities:
    # synthetic: {n_background: 150000, signal_fraction: 0.005, n_features: 3}
    flow: {transforms: 3, hidden: [32, 32], epochs: 30, ensemble: 5}
    classifier: {hidden: [64, 64], epochs: 8, folds: 5}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import MAX_EVENTS, MAX_LAYERS, MAX_PARALLEL, MAX_SAMPLES, MAX_SEED, MAX_STEPS, MAX_WIDTH, ConfigModel

__all__ = ["AnomalyConfig", "AnomalyDataConfig", "AnomalySyntheticConfig", "AnomalyFlowConfig",
           "AnomalyClassifierConfig"]

_Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]


class AnomalyDataConfig(ConfigModel):
    """Events from a CSV or Parquet file: the resonant feature ``mass`` and the classifier ``features``."""

    path: Path
    """CSV or Parquet file of events, relative to the config"""
    mass: str = "m"
    """column of the resonant feature m (its SR window is ``signal_region``)"""
    features: list[str] = Field(min_length=1)
    """columns of the auxiliary features x"""
    label: str | None = None
    """optional truth column (1 signal, 0 background): SIC of the scores is then reported"""


class AnomalySyntheticConfig(ConfigModel):
    """The synthetic bump hunt of :class:`rarefy.anomaly.data.BumpHunt` (m in [2, 6] mass units)."""

    n_background: int = Field(default=150_000, ge=100, le=MAX_EVENTS)
    """background events over the whole m range"""
    signal_fraction: float = Field(default=0.005, ge=0, lt=1)
    """signal events / background events (whole m range)"""
    n_features: int = Field(default=3, ge=2, le=4)
    """auxiliary features x"""
    compare: bool = True
    """also run idealized AD, supervised, CWoLa and ANODE and report SICs on a labelled test set"""


class AnomalyFlowConfig(ConfigModel):
    """The sideband flow q(x | m) (zuko MAF)."""

    transforms: int = Field(default=3, ge=1, le=MAX_LAYERS)
    """autoregressive transforms"""
    hidden: list[_Width] = Field(default_factory=lambda: [32, 32], min_length=1, max_length=MAX_LAYERS)
    """hidden widths of each transform's network"""
    epochs: int = Field(default=30, ge=1, le=MAX_STEPS)
    """most epochs"""
    batch_size: int = Field(default=512, ge=1, le=MAX_SAMPLES)
    """events per batch"""
    lr: float = Field(default=1e-3, gt=0, le=1)
    """Adam learning rate"""
    patience: int = Field(default=10, ge=1, le=MAX_STEPS)
    """early-stopping patience (epochs) on the held-out negative log-likelihood"""
    schedule: Literal["constant", "cosine"] = "cosine"
    """learning-rate schedule"""
    ensemble: int = Field(default=5, ge=1, le=MAX_PARALLEL)
    """flows fitted with different seeds; the background model is their equal-weight mixture"""


class AnomalyClassifierConfig(ConfigModel):
    """The MLP classifier of SR data against the background model (k-fold)."""

    hidden: list[_Width] = Field(default_factory=lambda: [64, 64], min_length=1, max_length=MAX_LAYERS)
    """hidden widths"""
    epochs: int = Field(default=8, ge=1, le=MAX_STEPS)
    """epochs"""
    batch_size: int = Field(default=256, ge=1, le=MAX_SAMPLES)
    """events per batch"""
    lr: float = Field(default=1e-3, gt=0, le=1)
    """Adam learning rate"""
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    """Adam weight decay"""
    folds: int = Field(default=5, ge=2, le=MAX_PARALLEL)
    """k-fold parts: each event is scored by the classifier that did not train on it"""
    ensemble: int = Field(default=1, ge=1, le=MAX_PARALLEL)
    """classifiers (different seeds) averaged per fold"""


class AnomalyConfig(ConfigModel):
    """``rarefy anomaly``: CATHODE on ``data`` (or ``synthetic``) with the SR ``signal_region`` of m."""

    signal_region: list[float] = Field(min_length=2, max_length=2)
    """[lo, hi) window of m that is searched; the rest is the sidebands"""
    data: AnomalyDataConfig | None = None
    """events from a file (exactly one of data and synthetic)"""
    synthetic: AnomalySyntheticConfig | None = None
    """a synthetic bump hunt with known densities (exactly one of data and synthetic)"""
    flow: AnomalyFlowConfig = Field(default_factory=AnomalyFlowConfig)
    """sideband flow"""
    classifier: AnomalyClassifierConfig = Field(default_factory=AnomalyClassifierConfig)
    """classifier"""
    oversample: int = Field(default=4, ge=1, le=1000)
    """synthetic SR background events per SR data event"""
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    """random seed (data of ``synthetic``, flows, folds, classifiers)"""

    @model_validator(mode="after")
    def _check(self) -> "AnomalyConfig":
        lo, hi = self.signal_region
        if not lo < hi:
            raise ValueError(f"signal_region must be [lo, hi] with lo < hi, got {self.signal_region}")
        if (self.data is None) == (self.synthetic is None):
            raise ValueError("give exactly one of 'data' and 'synthetic'")
        return self
