"""Diagnostics of a surrogate: coverage, calibration, cross-validation."""

from .validation import CVResult, bootstrap_metrics, cross_validate, metrics, predict_table

__all__ = ["CVResult", "bootstrap_metrics", "cross_validate", "metrics", "predict_table"]
