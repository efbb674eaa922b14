"""The unfolding methods by name, and their construction from a settings mapping (checked once).

Each method is a dataclass of simple-typed keyword settings in its own module
``rarefy.unfold.<module>``, imported only when the method is used: the binned baseline
needs numpy alone, the neural methods torch.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping

from ..errors import InputError
from .base import Unfolder

__all__ = ["METHODS", "method_class", "build_method"]

#: method name -> (module, class)
METHODS: dict[str, tuple[str, str]] = {
    "ibu": ("rarefy.unfold.ibu", "IterativeBayes"),
    "omnifold": ("rarefy.unfold.omnifold", "OmniFold"),
    "flow": ("rarefy.unfold.flow", "FlowUnfolding"),
    "likelihood": ("rarefy.unfold.likelihood", "LikelihoodUnfolding"),
}


def method_class(name: str) -> type:
    """The class of method ``name``; :class:`InputError` for an unknown name or a module that is not installed."""
    if name not in METHODS:
        raise InputError(f"unknown unfolding method {name!r} (known: {', '.join(METHODS)})")
    module, cls = METHODS[name]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise InputError(f"unfolding method {name!r} is not available: module {module} is missing "
                             "from this installation") from None
        raise InputError(f"unfolding method {name!r} needs the package {exc.name!r}, which is not installed") from None
    return getattr(mod, cls)


def build_method(name: str, settings: Mapping[str, Any] | None = None) -> Unfolder:
    """Method ``name`` constructed from ``settings`` (keyword settings of its dataclass).

    An unknown key, a value of the wrong type or a value the method refuses raises a
    one-line :class:`InputError` naming the method and the key.
    """
    from pydantic import TypeAdapter, ValidationError

    cls = method_class(name)
    settings = dict(settings or {})
    known = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else None
    if known is not None:
        unknown = [k for k in settings if k not in known]
        if unknown:
            raise InputError(f"{name}: unknown setting {unknown[0]!r} (known: {', '.join(known)})")
    try:
        method = TypeAdapter(cls).validate_python(settings)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        raise InputError(_prefixed(name, f"{key}: {_msg(err['msg'])}" if key else _msg(err["msg"]))) from None
    except (TypeError, ValueError) as exc:
        raise InputError(_prefixed(name, exc.reason if isinstance(exc, InputError) else str(exc))) from None
    return method


def _msg(text: str) -> str:
    return text.removeprefix("Value error, ")


def _prefixed(name: str, text: str) -> str:
    return text if text.startswith(f"{name}:") else f"{name}: {text}"
