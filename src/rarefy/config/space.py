"""Design space section: parameters (bounds, units) and constraints."""

from __future__ import annotations

from pydantic import Field

from ..space import DesignSpace, Parameter
from .base import ConfigModel

__all__ = ["ParameterConfig", "SpaceConfig"]


class ParameterConfig(ConfigModel):
    """Bounds (inclusive, in ``unit``) of one design parameter."""

    low: float
    """lower bound, in ``unit`` (inclusive)"""
    high: float
    """upper bound, in ``unit`` (inclusive)"""
    integer: bool = False
    """the parameter takes integer values only"""
    unit: str = ""
    """unit of the parameter (e.g. ``cm``), shown on plots and in tables ('' for none)"""


class SpaceConfig(ConfigModel):
    """Design parameters, constraints (``lhs <= rhs`` expressions) and helper definitions."""

    parameters: dict[str, ParameterConfig]
    """the design parameters: name -> bounds and unit"""
    constraints: list[str] = Field(default_factory=list)
    """feasibility constraints, each an inequality between expressions of the parameters and ``definitions``"""
    definitions: dict[str, str] = Field(default_factory=dict)
    """helper quantities usable in the constraints: name -> expression over the parameters"""

    def build(self) -> DesignSpace:
        params = [Parameter(n, p.low, p.high, p.integer, p.unit) for n, p in self.parameters.items()]
        return DesignSpace(params, list(self.constraints), dict(self.definitions))
