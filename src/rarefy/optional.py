"""Optional dependencies: the modules that only some features need, and the extra that installs each.

rarefy imports these only through :func:`require`, when the feature is used; a missing one
is an :class:`InputError` of one line that names the ``pip install 'rarefy[extra]'`` to run.
``tests/test_packaging.py`` checks that :data:`EXTRAS` matches pyproject.toml.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import InputError

__all__ = ["EXTRAS", "require"]

#: top-level module -> the extra of pyproject.toml that installs it
EXTRAS: dict[str, str] = {
    "lightgbm": "zoo",          # the 'bdt' backend of the model zoo
    "nestpy": "nest",           # the 'xlzd' simulator
    "cosmic": "cosmic",         # the 'cosmic' simulator (cosmic-popsynth)
    "dask_jobqueue": "slurm",   # the 'slurm' executor
    "uproot": "root",           # ROOT event files
    "awkward": "root",
    "emukit": "bench",          # benchmarks/mf_vs_emukit.py
    "GPy": "bench",
}


def require(name: str, extra: str | None = None) -> ModuleType:
    """Import module ``name`` (``"lightgbm"``, ``"cosmic.evolve"``) of an optional dependency.

    ``extra`` defaults to the one :data:`EXTRAS` lists for the top-level module. Raises
    :class:`InputError` ``"lightgbm is not installed: pip install 'rarefy[zoo]'"`` when it
    is missing, and names the import error when it is installed but does not import.
    """
    top = name.split(".")[0]
    extra = extra or EXTRAS.get(top)
    hint = f"pip install 'rarefy[{extra}]'" if extra else f"pip install {top}"
    try:
        importlib.import_module(top)  # a missing package fails here, before its submodule
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name in (None, top):
            raise InputError(f"{top} is not installed: {hint}") from None
        raise InputError(f"{name} cannot be imported ({exc}): {hint}") from None
    except ImportError as exc:
        raise InputError(f"{name} cannot be imported ({exc}): {hint}") from None
