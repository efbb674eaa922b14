"""Design space section: parameters (bounds, units) and constraints."""

from __future__ import annotations

from pydantic import Field

from ..space import DesignSpace, Parameter
from .base import ConfigModel

__all__ = ["ParameterConfig", "SpaceConfig"]


class ParameterConfig(ConfigModel):
    """Bounds (inclusive, in ``unit``) of one design parameter."""

    low: float
    high: float
    integer: bool = False
    unit: str = ""


class SpaceConfig(ConfigModel):
    """Design parameters, constraints (``lhs <= rhs`` expressions) and helper definitions."""

    parameters: dict[str, ParameterConfig]
    constraints: list[str] = Field(default_factory=list)
    definitions: dict[str, str] = Field(default_factory=dict)

    def build(self) -> DesignSpace:
        params = [Parameter(n, p.low, p.high, p.integer, p.unit) for n, p in self.parameters.items()]
        return DesignSpace(params, list(self.constraints), dict(self.definitions))
