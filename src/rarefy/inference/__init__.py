"""Bayesian inference of θ with a surrogate as the likelihood's forward model.

``rates``: predicted local BBH merger rate R(θ) from the formation efficiency (simplified
ε·SFRD(0), or the full delay-time / metallicity-spread integral; ``cosmology``: flat ΛCDM
and the Madau–Dickinson SFRD);
``likelihood``: asymmetric (split-normal) rate likelihood marginalised over the
surrogate's predictive uncertainty; ``sampler``: emcee + arviz diagnostics;
``summary``: credible intervals and the corner plot; ``run``: the ``rarefy infer`` job.
"""

from .likelihood import RateLikelihood, split_normal_logpdf
from .cosmology import FlatLCDM, madau_dickinson_sfrd
from .rates import FullRateModel, SimpleRateModel
from .run import InferResult, Posterior, infer, make_posterior

__all__ = ["FlatLCDM", "FullRateModel", "madau_dickinson_sfrd", "InferResult", "Posterior", "RateLikelihood", "SimpleRateModel", "infer", "make_posterior",
           "split_normal_logpdf"]
