"""Seeded blocks without global side effects.

Parameter initialisers (``torch.nn.Linear`` …) and dropout draw from torch's *global*
generators, which take no ``generator=`` argument. :func:`seeded` runs a block with the
global CPU generator (and those of the given CUDA devices) set to ``seed`` inside
:func:`torch.random.fork_rng`, so the block is reproducible and the caller's random
state is unchanged afterwards: nothing outside the block is reseeded.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch

__all__ = ["seeded", "cuda_devices"]


@contextlib.contextmanager
def seeded(seed: int, devices: Iterable[int] = ()) -> Iterator[None]:
    """Run a block with torch's global CPU generator (and CUDA ``devices``) seeded by ``seed``, then restore them."""
    devices = list(devices)
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(int(seed))
        for d in devices:
            torch.cuda.default_generators[d].manual_seed(int(seed))
        yield


def cuda_devices(module: torch.nn.Module) -> list[int]:
    """Indices of the CUDA devices that hold parameters or buffers of ``module``."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
