"""Conditional normalizing-flow event generator p(φ | θ): a fast stand-in for a simulator's events.

A simulator throws ``n`` primaries at a design θ and returns their per-event parameters
φ (birth position, energy, ...). :mod:`rarefy.generate` learns the conditional density
p(φ | θ) of one fidelity's events with a zuko flow (NSF or MAF) conditioned on θ in the
design space's unit cube, and then draws new events at any θ of the space in
milliseconds. Bounded φ pass through a logit of their min–max-scaled value and integer
φ with many values are uniformly dequantised (:mod:`~rarefy.generate.features`); integer
φ with few values (flags, small counts) are drawn exactly from a categorical classifier
head each, given the continuous φ, the earlier discrete φ and θ
(:mod:`~rarefy.generate.discrete`); training is
maximum likelihood with rarefy's one trainer (:mod:`~rarefy.generate.train`); the
generator saves as a state_dict plus JSON (:mod:`~rarefy.generate.model`) and draws at one θ
through :class:`~rarefy.generate.sampling.FlowSampler` (zuko's inverse without the work a fixed θ
makes redundant: about 1 µs per event for a 3-column coupling NSF on one CPU thread).
:mod:`~rarefy.generate.evaluate` compares generated and simulated events (classifier
two-sample AUC, 1-D Wasserstein distances, χ²); :mod:`~rarefy.generate.simulator` wraps a
generator as a campaign simulator (``simulator: {kind: flow, run: DIR, outcome: ...}``).

Jobs on a run directory: :func:`rarefy.jobs.generate.train_generator` and
:func:`rarefy.jobs.generate.sample_generator` (``rarefy generate train`` / ``sample``).
"""

from __future__ import annotations

from .discrete import DiscreteHeads
from .features import FeatureMap
from .model import Generator, build_flow
from .train import GeneratorFit, fit_generator

__all__ = ["DiscreteHeads", "FeatureMap", "Generator", "GeneratorFit", "build_flow", "fit_generator"]
