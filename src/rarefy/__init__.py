"""rarefy: affordable surrogates for expensive rare-event simulations.

Public API (see README for the tour)::

    from rarefy import load_config, load_rate_table, AR1Surrogate, DesignSpace
    from rarefy import simulate, simulators, EventTable, EventStore, read_events
"""

from __future__ import annotations

import logging

from . import simulators
from .campaign import CampaignResult, simulate
from .config import RunConfig, load_config
from .data import RateTable, count_variance, read_frame
from .data.event_readers import read_events
from .data.events import EventTable
from .data.mapping import load_rate_table
from .data.store import EventStore
from .errors import InputError
from .fitting import fit, validate
from .space import DesignSpace, Parameter
from .surrogate import AR1Settings, AR1Surrogate

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AR1Settings", "AR1Surrogate", "DesignSpace", "InputError", "Parameter", "RateTable", "RunConfig",
    "count_variance", "fit", "load_config", "load_rate_table", "read_frame", "validate", "__version__",
    "CampaignResult", "EventStore", "EventTable", "read_events", "simulate", "simulators",
]
