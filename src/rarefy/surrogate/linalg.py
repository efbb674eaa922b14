"""Numerically safe linear algebra for GP fits."""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Iterator

import torch
from linear_operator.utils.cholesky import psd_safe_cholesky
from linear_operator.utils.warnings import NumericalWarning

log = logging.getLogger(__name__)

__all__ = ["safe_cholesky", "torch_threads"]


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


def safe_cholesky(K: torch.Tensor, *, quiet: bool = False, max_tries: int = 8) -> torch.Tensor:
    """Lower Cholesky factor of a (batch of) symmetric PSD matrices.

    If the plain factorisation fails (near-duplicate designs, tiny noise), jitter is
    added to the diagonal, escalating tenfold per try (linear_operator's
    ``psd_safe_cholesky``: 1e-8 for float64, up to ``1e-8 * 10**(max_tries-1)``).
    Each escalation is logged as a warning unless ``quiet`` (used inside optimisation
    loops, where it is logged at debug level instead).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NumericalWarning)
        L = psd_safe_cholesky(K, max_tries=max_tries)
    for w in caught:
        if issubclass(w.category, NumericalWarning):
            log.log(logging.DEBUG if quiet else logging.WARNING, "Cholesky needed jitter: %s", w.message)
        else:  # pragma: no cover - pass other warnings through
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return L
