"""Atomic training checkpoints.

A checkpoint is one ``torch.save`` file written to a temporary file in the target
folder and renamed onto ``checkpoint.pt`` (``os.replace``), so a killed job leaves
either the previous or the new checkpoint, never a partial one. It is read back with
``weights_only=True``: it holds only tensors, numbers, strings, lists and dicts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_path
from ..errors import InputError

__all__ = ["save_checkpoint", "load_checkpoint"]


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
