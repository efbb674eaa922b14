"""Numerically safe linear algebra for GP fits."""

from __future__ import annotations

import logging
import warnings

import torch
from linear_operator.utils.cholesky import psd_safe_cholesky
from linear_operator.utils.warnings import NumericalWarning

log = logging.getLogger(__name__)

__all__ = ["safe_cholesky"]


def safe_cholesky(K: torch.Tensor, *, quiet: bool = False, max_tries: int = 8) -> torch.Tensor:
    """Lower Cholesky factor of a (batch of) symmetric PSD matrices.

    If the plain factorisation fails (near-duplicate designs, tiny noise), jitter is
    added to the diagonal, escalating tenfold per try (linear_operator's
    ``psd_safe_cholesky``: 1e-8 for float64, up to ``1e-8 * 10**(max_tries-1)``).
    Each escalation is logged as a warning unless ``quiet`` (used inside optimisation
    loops, where it is logged at debug level instead).
    """
    L, info = torch.linalg.cholesky_ex(K)
    if not torch.any(info):  # the common case: no jitter, no warning machinery
        return L
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NumericalWarning)
        L = psd_safe_cholesky(K, max_tries=max_tries)
    for w in caught:
        if issubclass(w.category, NumericalWarning):
            log.log(logging.DEBUG if quiet else logging.WARNING, "Cholesky needed jitter: %s", w.message)
        else:  # pragma: no cover - pass other warnings through
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return L
