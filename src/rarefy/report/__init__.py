"""Plots and reports."""

from .calibration import calibration_plot

__all__ = ["calibration_plot"]
