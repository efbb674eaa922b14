"""Unfolding: the true distribution behind measured, detector-folded events.

Four methods behind one interface (:class:`~rarefy.unfold.base.Unfolder`), each taking a
:class:`~rarefy.unfold.base.Problem` (simulated generation/reconstructed pairs and
measured reconstructed data) and returning :class:`~rarefy.unfold.base.Unfolded`
(an ensemble of weighted generation-level samples whose spread is the uncertainty):

* iterative Bayesian unfolding (binned D'Agostini), the classical baseline;
* OmniFold, classifier reweighting at both levels;
* conditional-flow generative unfolding, p(x_gen | x_rec);
* likelihood unfolding with a learned detector kernel, p_θ(x_gen) · p_φ(x_rec | x_gen).

Known-truth cases: :mod:`~rarefy.unfold.toy` (a Gaussian) and :mod:`~rarefy.unfold.xlzd`
(XLZD's electron-recoil energy spectrum through NEST). Figures of merit:
:mod:`~rarefy.unfold.metrics`.
"""

from __future__ import annotations

from .base import Problem, Unfolded, Unfolder
from .toy import GaussianToy

__all__ = ["Problem", "Unfolded", "Unfolder", "GaussianToy"]
