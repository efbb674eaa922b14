"""Simulation campaigns: plan the runs (``plan``), pick where they execute (``executors``), run and record
them (``engine``). The job that drives a config's campaign is :func:`rarefy.jobs.simulate.simulate`."""

from .engine import CampaignResult, RunOutcome, SimulatorSpec, build_simulator, execute_request, run_campaign
from .executors import SyncClient, open_executor
from .plan import fidelity_info, plan_requests, run_seed

__all__ = ["CampaignResult", "RunOutcome", "SimulatorSpec", "build_simulator", "execute_request", "run_campaign",
           "SyncClient", "open_executor", "fidelity_info", "plan_requests", "run_seed"]
