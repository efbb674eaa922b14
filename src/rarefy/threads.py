"""Thread counts for torch work: the one place that changes them, and only for a block."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` intra-op torch threads, then restore the previous setting.

    GP algebra on a few hundred points is far faster single-threaded: OpenMP threads
    spin-waiting on small matrices cost 20-30x on a busy 2-core machine (measured).
    """
    old = torch.get_num_threads()
    if n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
