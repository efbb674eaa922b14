"""Simulation campaigns: plan the runs, execute them on an executor, store what they produce."""

from .engine import CampaignResult, RunOutcome, execute_request, plan_requests, run_campaign, run_seed, simulate

__all__ = ["CampaignResult", "RunOutcome", "execute_request", "plan_requests", "run_campaign", "run_seed", "simulate"]
