"""Acquisition: what to simulate next, at which fidelity."""

from .proposals import Acquisition, FidelityPlan, Proposal, fidelity_plans, propose, proposals_frame

__all__ = ["Acquisition", "FidelityPlan", "Proposal", "fidelity_plans", "propose", "proposals_frame"]
