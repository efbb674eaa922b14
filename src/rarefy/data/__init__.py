"""Data containers and readers: rate tables (and, later, event tables and stores)."""

from .rates import RateTable, count_variance
from .readers import read_frame

__all__ = ["RateTable", "count_variance", "read_frame"]
