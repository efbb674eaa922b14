"""The registry of event-level backends: a name -> ``"module:Class"`` import path, imported lazily.

Built-in names (``rarefy bench`` config ``bench.backends[].name``):

============================  =================================================
name                          class
============================  =================================================
``cnp``                       :class:`rarefy.zoo.neural_process.CNPBackend`
``attentive_np``              :class:`rarefy.zoo.neural_process.AttentiveNPBackend`
``autoencoder``               ``rarefy.zoo.autoencoder:AutoencoderBackend``
``vae``                       ``rarefy.zoo.vae:VAEBackend``
``isolation_forest``          :class:`rarefy.zoo.isolation_forest.IsolationForestBackend`
``flow_ratio``                :class:`rarefy.zoo.flow_ratio.FlowRatioBackend`
``ft_transformer``            ``rarefy.zoo.ft_transformer:FTTransformerBackend``
``bdt_ft_transformer``        ``rarefy.zoo.bdt:BDTFTTransformerBackend``
``nre``                       ``rarefy.zoo.nre:NREBackend``
``custom``                    a user class named by ``import_path`` (see below)
============================  =================================================

Nothing is imported until a backend is asked for, so a missing optional module only
matters to the configs that use it. :func:`register` adds (or replaces) a name.

**custom.** ``import_path: "pkg.mod:Class"`` names either

- a *backend*: a class following :class:`rarefy.zoo.base.Backend` (``fit``, ``score``,
  ``save``, ``load``), built as ``Class(seed=..., **options)``; or
- a plain :class:`torch.nn.Module` subclass mapping standardised features ``(B, d)`` to
  signal logits ``(B,)`` or ``(B, 1)``. It is wrapped in
  :class:`rarefy.zoo.supervised.TorchModuleBackend` (the zoo's shared trainer with a
  classifier objective and prior-shift calibration) and built as
  ``Class(in_features=d, **module)`` (or ``Class(d, **module)`` when the constructor has
  no ``in_features`` argument), with ``module`` taken from ``options["module"]``; the
  other options are :class:`rarefy.zoo.training.TrainOptions` fields.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from ..errors import InputError

__all__ = ["BUILTIN", "register", "registered", "get_backend", "import_object", "resolve", "make_backend",
           "check_spec"]

#: built-in backend names and their import paths
BUILTIN: dict[str, str] = {
    "cnp": "rarefy.zoo.neural_process:CNPBackend",
    "attentive_np": "rarefy.zoo.neural_process:AttentiveNPBackend",
    "autoencoder": "rarefy.zoo.autoencoder:AutoencoderBackend",
    "vae": "rarefy.zoo.vae:VAEBackend",
    "isolation_forest": "rarefy.zoo.isolation_forest:IsolationForestBackend",
    "flow_ratio": "rarefy.zoo.flow_ratio:FlowRatioBackend",
    "ft_transformer": "rarefy.zoo.ft_transformer:FTTransformerBackend",
    "bdt_ft_transformer": "rarefy.zoo.bdt:BDTFTTransformerBackend",
    "nre": "rarefy.zoo.nre:NREBackend",
}

_REGISTRY: dict[str, str] = dict(BUILTIN)
CUSTOM = "custom"
#: the backend that wraps a custom torch module class
TORCH_MODULE_WRAPPER = "rarefy.zoo.supervised:TorchModuleBackend"


def register(name: str, path: str) -> None:
    """Register (or replace) backend ``name`` as the import path ``"module:Class"`` (imported on use)."""
    if name == CUSTOM:
        raise InputError("'custom' is reserved: give its class with 'import_path' in the config")
    _split(path)
    _REGISTRY[str(name)] = str(path)


def registered() -> dict[str, str]:
    """A copy of the registry: name -> import path."""
    return dict(_REGISTRY)


def _split(path: str) -> tuple[str, str]:
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise InputError(f"import path {path!r} must look like 'package.module:Class'")
    mod, attr = path.split(":")
    return mod, attr


def import_object(path: str) -> Any:
    """The object named by ``"package.module:Attr"`` (dotted attributes allowed after the colon)."""
    mod_name, attr = _split(path)
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as exc:
        raise InputError(f"cannot import module {mod_name!r} of {path!r}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"module {mod_name!r} has no attribute {attr!r} (import path {path!r})")
        obj = getattr(obj, part)
    return obj


def _is_backend_class(obj: Any) -> bool:
    return inspect.isclass(obj) and all(callable(getattr(obj, m, None)) for m in ("fit", "score", "save", "load"))


def _is_torch_module_class(obj: Any) -> bool:
    if not inspect.isclass(obj):
        return False
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return issubclass(obj, nn.Module)


def get_backend(name: str) -> type:
    """The backend class registered as ``name`` (imported now); unknown names raise :class:`InputError`."""
    if name == CUSTOM:
        raise InputError("backend 'custom' needs an 'import_path' ('package.module:Class')")
    if name not in _REGISTRY:
        raise InputError(f"unknown backend {name!r}; known: {', '.join(sorted([*_REGISTRY, CUSTOM]))}")
    path = _REGISTRY[name]
    try:
        cls = import_object(path)
    except InputError as exc:
        raise InputError(f"backend {name!r} is not available: {exc.reason}") from None
    if not _is_backend_class(cls):
        raise InputError(f"backend {name!r} ({path}) is not a backend class with fit/score/save/load")
    return cls


def resolve(name: str, import_path: str | None = None) -> tuple[type, Callable[..., Any]]:
    """(class, factory) of a backend spec; ``factory(seed=..., **options)`` builds an instance.

    For ``custom`` the import path may name a backend class or a torch module class
    (wrapped in :class:`rarefy.zoo.supervised.TorchModuleBackend`).
    """
    if name != CUSTOM:
        if import_path is not None:
            raise InputError(f"backend {name!r}: 'import_path' is only for 'custom' backends")
        cls = get_backend(name)
        return cls, cls
    if import_path is None:
        raise InputError("backend 'custom' needs an 'import_path' ('package.module:Class')")
    obj = import_object(import_path)
    if _is_backend_class(obj):
        return obj, obj
    if _is_torch_module_class(obj):
        wrapper = import_object(TORCH_MODULE_WRAPPER)  # by path: the registry imports no backend

        def factory(seed: int = 0, **options: Any) -> Any:
            return wrapper(seed=seed, module_path=import_path, **options)

        return wrapper, factory
    raise InputError(f"custom import path {import_path!r} names {type(obj).__name__} {obj!r}, neither a backend "
                     "class (fit/score/save/load) nor a torch.nn.Module subclass")


def check_spec(name: str, import_path: str | None = None) -> None:
    """Import a backend spec now (the config check before any training); raises :class:`InputError`."""
    resolve(name, import_path)


def make_backend(name: str, options: dict[str, Any] | None = None, *, seed: int = 0,
                 import_path: str | None = None) -> Any:
    """A new, untrained backend: ``resolve(name, import_path)`` built with ``seed`` and ``options``."""
    _, factory = resolve(name, import_path)
    try:
        return factory(seed=seed, **dict(options or {}))
    except TypeError as exc:
        raise InputError(f"backend {name!r}: bad options {sorted(options or {})}: {exc}") from None
