"""Load a saved surrogate of any kind (``model.json`` names it: ``ar1`` or ``pce``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["load_surrogate"]


def load_surrogate(directory: str | os.PathLike[str]) -> Any:
    """Load the surrogate saved in ``directory`` by its ``save`` method, whatever its kind."""
    directory = Path(directory)
    meta_path = directory / "model.json"
    if not meta_path.exists():
        raise InputError("no saved surrogate here (model.json missing)", file=directory)
    try:
        kind = json.loads(meta_path.read_text()).get("kind", "ar1")
    except json.JSONDecodeError as exc:
        raise InputError(f"unreadable surrogate metadata: {exc}", file=meta_path) from None
    if kind == "pce":
        from .pce import PCESurrogate

        return PCESurrogate.load(directory)
    if kind == "ar1":
        from .ar1 import AR1Surrogate

        return AR1Surrogate.load(directory)
    raise InputError(f"unknown surrogate kind {kind!r} (known: ar1, pce)", file=meta_path)
