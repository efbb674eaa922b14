"""Multi-fidelity surrogates: the AR1 Gaussian process (and, later, Bayesian PCE)."""

from .ar1 import AR1Settings, AR1Surrogate

__all__ = ["AR1Settings", "AR1Surrogate"]
