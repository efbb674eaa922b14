"""Multi-fidelity surrogates (BoTorch models): the AR1 Gaussian process and the Bayesian PCE."""

from .ar1 import AR1Settings, AR1Surrogate
from .base import FixedFidelity, Surrogate

__all__ = ["AR1Settings", "AR1Surrogate", "FixedFidelity", "Surrogate"]
