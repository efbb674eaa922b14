"""Optimisers over a DesignSpace: feasible multistart search, knowing nothing of surrogates."""

from .search import SearchResult, feasible_pool, local_pool, maximize

__all__ = ["SearchResult", "feasible_pool", "local_pool", "maximize"]
