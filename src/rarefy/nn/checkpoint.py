"""Atomic training checkpoints and RNG-state capture.

A checkpoint is one ``torch.save`` file written to a temporary file in the target
folder and renamed onto ``checkpoint.pt`` (``os.replace``), so a killed job leaves
either the previous or the new checkpoint, never a partial one. It is read back with
``weights_only=True``: it holds only tensors, numbers, strings, lists and dicts.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_path
from ..errors import InputError

__all__ = ["save_checkpoint", "load_checkpoint", "capture_rng", "restore_rng"]


def capture_rng(np_rng: np.random.Generator | None = None) -> dict[str, Any]:
    """RNG states of torch (CPU, and CUDA when present), numpy (global and ``np_rng``) and python."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_global": _np_global_state(),
        "python": _py_state(),
    }
    if np_rng is not None:
        state["numpy"] = np_rng.bit_generator.state
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], np_rng: np.random.Generator | None = None) -> None:
    """Restore what :func:`capture_rng` captured."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy_global"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, g = state["python"]
    random.setstate((version, tuple(internal), g))
    if np_rng is not None and "numpy" in state:
        np_rng.bit_generator.state = state["numpy"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _np_global_state() -> list[Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return [kind, torch.as_tensor(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]


def _py_state() -> list[Any]:
    version, internal, g = random.getstate()
    return [version, list(internal), g]


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise InputError(f"cannot read checkpoint: {exc}", file=path) from None
