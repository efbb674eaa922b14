"""What the campaign installs on its dask workers (imported only where dask is): see :class:`CommandReaper`."""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ..simulators.command import kill_running_commands

__all__ = ["CommandReaper"]


class CommandReaper(WorkerPlugin):
    """Kills the simulator commands a worker still runs when the worker closes (restart, cluster shutdown).

    External commands run in their own process groups, so ending the worker process alone
    would leave them running.
    """

    name = "rarefy-command-reaper"
    idempotent = True

    def teardown(self, worker: Any) -> None:
        """Kill every running command of this worker's process, with its process group."""
        kill_running_commands()
