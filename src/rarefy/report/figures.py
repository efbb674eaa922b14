"""Figures built without pyplot.

A :class:`matplotlib.figure.Figure` made directly renders with the Agg canvas on save, so
rarefy never switches the process's matplotlib backend (a notebook keeps its own) and no
figure lingers in pyplot's registry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ..io import atomic_path

__all__ = ["COLORS", "subplots", "save_figure"]

#: colours of fidelities / series, in order
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink"]


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
             **kwargs: Any) -> tuple[Figure, Any]:
    """A new figure and its axes, as ``pyplot.subplots`` returns them (``figsize`` in inches)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 110, tight: bool = True) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (``dpi`` in dots per inch)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return path
