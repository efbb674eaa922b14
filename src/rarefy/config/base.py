"""The base of every config section: a pydantic model that refuses unknown keys and non-finite numbers.

The ``MAX_*`` limits bound the config's sizes. They lie far above any workable setting and
keep absurd values (1e30 events per run, 1e12 runs, a layer of 1e9 units) from overflowing
integer arithmetic or exhausting memory half-way through a job: such a value fails when the
config is loaded, with a message naming its key.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ConfigModel", "MAX_EVENTS", "MAX_RUNS", "MAX_SAMPLES", "MAX_STEPS", "MAX_WIDTH", "MAX_LAYERS",
           "MAX_PARALLEL", "MAX_SEED"]

MAX_EVENTS = 10**12      #: events of one run
MAX_RUNS = 10**6         #: runs of one campaign block, of a loop batch, of verification
MAX_SAMPLES = 10**7      #: candidate, reference and Monte-Carlo points, batch and context sizes, bins
MAX_STEPS = 10**7        #: optimiser and sampler steps, epochs, loop iterations
MAX_WIDTH = 2**16        #: units of one network layer, representation size, heads, rank
MAX_LAYERS = 64          #: layers of one network
MAX_PARALLEL = 10**5     #: workers, jobs, cores, threads, restarts, folds, retries, ensemble members
MAX_SEED = 2**63 - 1     #: seeds are 0 .. 2**63 - 1 (numpy and torch both take them)


class ConfigModel(BaseModel):
    """A config section: validated once when the config is loaded; unknown keys and NaN / infinite numbers are errors.

    The docstring under a field is its description in the JSON schema (and so in the config reference).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)
