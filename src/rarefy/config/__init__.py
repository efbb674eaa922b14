"""Run configuration: YAML in, validated typed objects out.

One module per section (``space``, ``data`` with the fidelities, ``surrogate``,
``simulator``, ``campaign``, ``denoise``, ``bench``, ``loop`` with acquisition /
optimize / baseline / verify / objectives / pareto, ``infer``), :class:`RunConfig` in
``run`` ties them together, and ``load`` is the only module that knows YAML:
:func:`load_config` reads a file, validates it with pydantic once, resolves relative
paths against the config's folder and returns a :class:`RunConfig`; every inner function
takes these typed objects (a component takes only the sections it uses). The package
imports no component of rarefy (only ``errors`` and ``space``).

A minimal config::

    name: legend
    seed: 0
    space:
      parameters:
        radius: {low: 0, high: 265, unit: cm}
        npanels: {low: 0, high: 360, integer: true}
      constraints: ["npanels * 2 <= radius"]
    data:
      paths: [data/rates.csv]
      columns: {"Radius[cm]": radius, "NPanels": npanels}
    fidelities:                     # ordered from lowest to highest fidelity
      - name: lf
        filter: {Fidelity: 0}
        value: rate
        value_unit: nuc/(kg yr)     # optional: labels plots and tables
        noise: {counts: y_raw}
      - name: hf
        filter: {Fidelity: 1}
        value: rate
        value_unit: nuc/(kg yr)
        noise: {counts: y_raw}
    target: hf
    surrogate: {kind: ar1, kernel: matern52, rho: constant, restarts: 5}
"""

from __future__ import annotations

from .anomaly import (AnomalyClassifierConfig, AnomalyConfig, AnomalyDataConfig, AnomalyFlowConfig,
                      AnomalySyntheticConfig)
from .base import ConfigModel
from .bench import BenchBackendConfig, BenchConfig, BenchImbalanceConfig
from .campaign import (CampaignConfig, CampaignRunsConfig, ExecutorConfig, LocalExecutorConfig, SlurmExecutorConfig,
                       SyncExecutorConfig)
from .data import DataConfig, FidelityConfig, NoiseConfig
from .denoise import (LOSS_PARAMETERS, DenoiseConfig, DenoiseLossConfig, DenoiseModelConfig, EarlyStoppingConfig,
                      ImbalancePhaseConfig, MixupConfig)
from .generate import GenerateConfig, GenerateFlowConfig
from .infer import FullRateConfig, InferConfig, ObservationConfig, PriorConfig
from .load import (anomaly_config_from_dict, apply_overrides, as_config, config_from_dict, dump_config,
                   format_validation_error, load_anomaly_config, load_config, load_unfold_config,
                   unfold_config_from_dict)
from .loop import (AcquisitionConfig, BaselineConfig, LoopConfig, ObjectiveConfig, OptimizeConfig, ParetoConfig,
                   VerifyConfig, StopConfig)
from .run import RunConfig
from .simulator import EventColumnsConfig, SimulatorConfig
from .space import ParameterConfig, SpaceConfig
from .surrogate import SurrogateConfig
from .unfold import GaussianCaseConfig, UnfoldConfig, UnfoldDataConfig, XLZDCaseConfig

__all__ = [
    "AnomalyConfig", "AnomalyDataConfig", "AnomalySyntheticConfig", "AnomalyFlowConfig", "AnomalyClassifierConfig",
    "load_anomaly_config", "anomaly_config_from_dict",
    "UnfoldConfig", "UnfoldDataConfig", "GaussianCaseConfig", "XLZDCaseConfig", "load_unfold_config",
    "unfold_config_from_dict",
    "ParameterConfig", "SpaceConfig", "NoiseConfig", "FidelityConfig", "DataConfig",
    "SurrogateConfig", "RunConfig", "load_config", "dump_config", "format_validation_error", "LOSS_PARAMETERS",
    "EventColumnsConfig", "SimulatorConfig", "CampaignRunsConfig", "ExecutorConfig", "CampaignConfig",
    "DenoiseModelConfig", "DenoiseLossConfig", "MixupConfig", "ImbalancePhaseConfig", "EarlyStoppingConfig",
    "DenoiseConfig", "BenchBackendConfig", "BenchImbalanceConfig", "BenchConfig", "AcquisitionConfig",
    "OptimizeConfig", "BaselineConfig", "VerifyConfig", "StopConfig", "LoopConfig", "ObjectiveConfig", "ParetoConfig",
    "GenerateConfig", "GenerateFlowConfig", "PriorConfig", "ObservationConfig", "FullRateConfig", "InferConfig", "ConfigModel", "config_from_dict",
    "as_config", "apply_overrides", "LocalExecutorConfig", "SlurmExecutorConfig", "SyncExecutorConfig",
]
