"""Optimisers over a DesignSpace: feasible multistart search (knowing nothing of surrogates) and design optimisation."""

from .design import Baseline, OptimumResult, baseline_of, optimize_design
from .search import SearchResult, feasible_pool, local_pool, maximize

__all__ = ["Baseline", "OptimumResult", "SearchResult", "baseline_of", "feasible_pool", "local_pool", "maximize",
           "optimize_design"]
