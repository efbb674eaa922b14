"""Acquisition: what to simulate next, at which fidelity (BoTorch acquisition functions)."""

from .cost import CostAware, FidelityDiscount, OptimisticImprovement
from .fidelity import FidelityPlan, RunNoise, fidelity_plans
from .ivr import IntegratedVarianceReduction, MaxVarianceReduction
from .pending import KrigingBeliever
from .proposals import Acquisition, Proposal, proposable_fidelities, propose, proposals_frame

__all__ = ["Acquisition", "CostAware", "FidelityDiscount", "FidelityPlan", "IntegratedVarianceReduction",
           "KrigingBeliever", "MaxVarianceReduction", "OptimisticImprovement", "Proposal", "RunNoise",
           "fidelity_plans", "proposable_fidelities", "propose", "proposals_frame"]
