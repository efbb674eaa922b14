"""Build a surrogate from its config section, or load a saved one of any kind (``model.json`` names it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..config import SurrogateConfig
from ..errors import InputError
from ..io import read_json
from ..space import DesignSpace
from .base import Surrogate

__all__ = ["build_surrogate", "load_surrogate"]


def build_surrogate(settings: SurrogateConfig, space: DesignSpace, fidelities: Sequence[str],
                    seed: int = 0) -> Surrogate:
    """An unfitted surrogate as a ``surrogate`` config section describes (``kind``: ar1 or pce).

    ``fidelities``: names, lowest first (the last is the target); ``seed``: the fit's seed.
    """
    if settings.kind == "pce":
        from .pce import PCESettings, PCESurrogate

        pce = PCESettings(**{k: getattr(settings, k) for k in settings.PCE_FIELDS})
        return PCESurrogate(space, list(fidelities), pce, seed=seed)
    from .ar1 import AR1Settings, AR1Surrogate

    ar1 = AR1Settings(**{k: getattr(settings, k) for k in settings.AR1_FIELDS})
    return AR1Surrogate(space, list(fidelities), ar1, seed=seed)


def load_surrogate(directory: str | os.PathLike[str]) -> Any:
    """Load the surrogate saved in ``directory`` by its ``save`` method, whatever its kind."""
    directory = Path(directory)
    meta_path = directory / "model.json"
    if not meta_path.exists():
        raise InputError("no saved surrogate here (model.json missing)", file=directory)
    kind = read_json(meta_path).get("kind", "ar1")
    if kind == "pce":
        from .pce import PCESurrogate

        return PCESurrogate.load(directory)
    if kind == "ar1":
        from .ar1 import AR1Surrogate

        return AR1Surrogate.load(directory)
    raise InputError(f"unknown surrogate kind {kind!r} (known: ar1, pce)", file=meta_path)
