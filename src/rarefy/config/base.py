"""The base of every config section: a pydantic model that refuses unknown keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ConfigModel"]


class ConfigModel(BaseModel):
    """A config section: validated once when the config is loaded; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
