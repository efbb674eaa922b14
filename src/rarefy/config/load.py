"""YAML in, validated :class:`RunConfig` out (and back): the only module of rarefy that knows YAML.

:func:`load_config` reads a file, validates it with pydantic once, resolves relative paths
(data files, a bench run directory, an inference surrogate and delay file) against the
config's folder and returns a :class:`RunConfig`; every job takes these typed objects.
:func:`as_config` is the one place that turns "a config object or a path to one" into
a config, for the jobs that accept both.

Overrides (``rarefy fit CONFIG --set KEY=VALUE ...``, ``load_config(path, overrides=[...])``)
change the YAML mapping before it is validated, so an overridden value is checked exactly
like one written in the file:

- ``KEY`` is a dotted path of mapping keys and list items: ``seed``, ``surrogate.kind``,
  ``space.parameters.radius.high``, ``campaign.runs.0.events``; a list item is chosen by
  its 0-based index or, for lists of named items, by its ``name``
  (``fidelities.hf.cost_cpu_h``). A missing mapping key is added (an unknown one is then
  an error of validation, like in the file).
- ``VALUE`` is parsed as YAML: ``3`` is an integer, ``1e-3`` a float, ``true`` a boolean,
  ``null`` (or nothing) is null, ``[lf, hf]`` a list, ``{lf: 100}`` a mapping, ``'3'`` the
  string ``3``.

Overrides apply in order (a later one wins); an error they cause names the override.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import ValidationError

from ..errors import InputError
from .anomaly import AnomalyConfig
from .run import RunConfig
from .unfold import UnfoldConfig

__all__ = ["load_config", "load_anomaly_config", "config_from_dict", "dump_config", "format_validation_error", "as_config",
           "apply_overrides", "Override", "anomaly_config_from_dict", "load_unfold_config", "unfold_config_from_dict"]


class Override:
    """One ``KEY=VALUE`` override: ``text`` as given, ``keys`` the dotted path, ``value`` parsed as YAML.

    ``path`` is the path as applied (list items chosen by name become their index); it
    names the override in validation errors.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"override {text!r} is not KEY=VALUE (e.g. surrogate.kind=pce)")
        self.keys = key.split(".")
        if any(not k for k in self.keys):
            raise InputError(f"override {text!r}: empty key in {key!r}")
        try:
            self.value = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise InputError(f"override {text!r}: the value is not valid YAML ({reason})") from None
        self.path: list[str | int] = list(self.keys)

    def blames(self, loc: Sequence[str | int], message: str = "") -> bool:
        """Whether an error at ``loc`` (a pydantic location) with ``message`` is about this override's key.

        A whole-config error (empty ``loc``) is when its message names the key: all of a
        one-part key, else at least its first two parts (``campaign.runs.0``).
        """
        loc = [str(x) for x in loc]
        path = [str(x) for x in self.path]
        if not loc:
            shortest = 1 if len(path) == 1 else 2
            return any(re.search(rf"(?<![\w.]){re.escape('.'.join(path[:i]))}(?!\w|\.\w)", message)
                       for i in range(shortest, len(path) + 1))
        if path[: len(loc)] == loc:  # the error is on a section that holds the key
            return True
        it = iter(loc)  # the key lies on the error's path (union tags like 'local' may sit in between)
        return loc[0] == path[0] and all(any(p == x for x in it) for p in path)


def _item(node: list[Any], key: str, where: str, ov: Override) -> int:
    """The index of list item ``key`` (an index or an item's name) in ``node``."""
    try:
        i = int(key)
    except ValueError:
        named = [j for j, item in enumerate(node) if isinstance(item, dict) and str(item.get("name")) == key]
        if not named:
            names = [item.get("name") for item in node if isinstance(item, dict) and "name" in item]
            hint = (f"; its items are named {names}" if names else
                    f" (give an index 0..{len(node) - 1})" if node else " (it is empty)")
            raise InputError(f"override {ov.text!r}: {where} has no item {key!r}{hint}") from None
        return named[0]
    if not -len(node) <= i < len(node):
        raise InputError(f"override {ov.text!r}: {where} has {len(node)} item(s), no index {i}")
    return i % len(node)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str | Override]) -> dict[str, Any]:
    """A copy of the config mapping ``raw`` with the ``KEY=VALUE`` overrides applied (see the module docstring).

    Raises :class:`InputError` naming the override for a malformed one or a path that
    runs through a value that is neither a mapping nor a list, or past a list's end.
    """
    out = copy.deepcopy(raw)
    for item in overrides:
        ov = item if isinstance(item, Override) else Override(item)
        node: Any = out
        path: list[str | int] = []
        for depth, key in enumerate(ov.keys):
            last = depth == len(ov.keys) - 1
            where = ".".join(str(p) for p in path) or "the config"
            if isinstance(node, dict):
                path.append(key)
                if last:
                    node[key] = copy.deepcopy(ov.value)
                elif not isinstance(node.get(key), (dict, list)):
                    if key in node and node[key] is not None:
                        raise InputError(f"override {ov.text!r}: {'.'.join(map(str, path))} is "
                                         f"{node[key]!r}, not a mapping or list")
                    node[key] = {}
                    node = node[key]
                else:
                    node = node[key]
            elif isinstance(node, list):
                i = _item(node, key, where, ov)
                path.append(i)
                if last:
                    node[i] = copy.deepcopy(ov.value)
                else:
                    node = node[i]
            else:  # pragma: no cover - guarded above
                raise InputError(f"override {ov.text!r}: {where} is not a mapping or list")
        ov.path = path
    return out


def format_validation_error(exc: ValidationError, overrides: Sequence[Override] = ()) -> str:
    """One line naming each invalid key (dotted path) and what is wrong with it.

    An error about an overridden key is prefixed with the override (``override 'KEY=VALUE'``).
    """
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        text = f"{loc}: {msg}" if loc else msg
        blamed = [ov.text for ov in overrides if ov.blames(err["loc"], msg)]
        parts.append(f"override {', '.join(map(repr, blamed))}: {text}" if blamed else text)
    return "; ".join(parts)


def _blame(overrides: Sequence[Override], section: str, message: str) -> str:
    blamed = [ov.text for ov in overrides if ov.blames([section])]
    return f"override {', '.join(map(repr, blamed))}: {message}" if blamed else message


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> RunConfig:
    """Read and validate a YAML run config; data paths are resolved against its folder.

    ``overrides``: ``KEY=VALUE`` strings applied to the YAML mapping before validation
    (see the module docstring), e.g. ``["surrogate.kind=pce", "campaign.runs.0.events=1000"]``.
    """
    path = Path(path)
    return config_from_dict(_read_yaml(path), base=path.parent, source=str(path), overrides=overrides)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise InputError("config file not found", file=path)
    if path.is_dir():
        raise InputError("is a folder, expected a config file (YAML)", file=path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the config: {exc}", file=path) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", file=path) from None
    if not isinstance(raw, dict):
        raise InputError("config must be a YAML mapping", file=path)
    return raw


def load_anomaly_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> AnomalyConfig:
    """Read and validate a ``rarefy anomaly`` config (:class:`AnomalyConfig`); ``data.path`` is resolved
    against the config's folder. ``overrides``: ``KEY=VALUE`` as for :func:`load_config`."""
    path = Path(path)
    return anomaly_config_from_dict(_read_yaml(path), base=path.parent, source=str(path), overrides=overrides)


def anomaly_config_from_dict(raw: dict[str, Any], base: str | os.PathLike[str] = ".", source: str = "<config>",
                             overrides: Sequence[str] = ()) -> AnomalyConfig:
    """Validate an anomaly config given as a dict, after ``overrides``."""
    cfg, _ = _validated(AnomalyConfig, raw, source, overrides)
    if cfg.data is not None:
        cfg.data.path = _absolute(cfg.data.path, base)
    return cfg


def load_unfold_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> UnfoldConfig:
    """Read and validate a ``rarefy unfold`` config (:class:`UnfoldConfig`); the ``data`` files are resolved
    against the config's folder. ``overrides``: ``KEY=VALUE`` as for :func:`load_config`."""
    path = Path(path)
    return unfold_config_from_dict(_read_yaml(path), base=path.parent, source=str(path), overrides=overrides)


def unfold_config_from_dict(raw: dict[str, Any], base: str | os.PathLike[str] = ".", source: str = "<config>",
                            overrides: Sequence[str] = ()) -> UnfoldConfig:
    """Validate an unfold config given as a dict, after ``overrides``."""
    cfg, _ = _validated(UnfoldConfig, raw, source, overrides)
    if cfg.data is not None:
        cfg.data.simulation = _absolute(cfg.data.simulation, base)
        cfg.data.data = _absolute(cfg.data.data, base)
    return cfg


def as_config(config: RunConfig | str | os.PathLike[str],
              overrides: Sequence[str] = ()) -> tuple[RunConfig, Path | None]:
    """A config given as an object or as a YAML path: ``(config, file)``, ``file`` None for an object.

    Jobs name ``file`` in their errors and resolve the simulator's relative paths against
    its folder (the working directory for a config object). ``overrides`` (``KEY=VALUE``,
    see the module docstring) apply to either.
    """
    if isinstance(config, RunConfig):
        if not overrides:
            return config, None
        return config_from_dict(config.model_dump(mode="json"), overrides=overrides), None
    return load_config(config, overrides), Path(config)


def _validated(model: Any, raw: dict[str, Any], source: str, overrides: Sequence[str]) -> tuple[Any, list[Override]]:
    """``model`` validated from ``raw`` after the ``KEY=VALUE`` overrides, and the parsed overrides (later
    checks blame them); errors name ``source``."""
    try:
        parsed = [Override(o) for o in overrides]
        raw = apply_overrides(raw, parsed) if parsed else raw
    except InputError as exc:
        raise InputError(exc.reason, file=source) from None
    try:
        return model.model_validate(raw), parsed
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, parsed), file=source) from None


def _absolute(path: Path, base: str | os.PathLike[str]) -> Path:
    return path if path.is_absolute() else (Path(base) / path).resolve()


def config_from_dict(raw: dict[str, Any], base: str | os.PathLike[str] = ".", source: str = "<config>",
                     overrides: Sequence[str] = ()) -> RunConfig:
    """Validate a config given as a dict (the Python equivalent of a YAML file), after ``overrides``."""
    cfg, parsed = _validated(RunConfig, raw, source, overrides)
    if cfg.data is not None:
        cfg.data.paths = [_absolute(p, base) for p in cfg.data.paths]
    if cfg.bench is not None and cfg.bench.run_dir is not None:
        cfg.bench.run_dir = _absolute(cfg.bench.run_dir, base)
    if cfg.simulator is not None and cfg.simulator.run is not None:
        cfg.simulator.run = _absolute(cfg.simulator.run, base)
    if cfg.infer is not None and cfg.infer.surrogate is not None:
        cfg.infer.surrogate = _absolute(cfg.infer.surrogate, base)
    if cfg.infer is not None and cfg.infer.full is not None:
        cfg.infer.full.delays = _absolute(cfg.infer.full.delays, base)
    try:
        space = cfg.space.build()
    except InputError as exc:
        raise InputError(_blame(parsed, "space", f"space: {exc.reason}"), file=source) from None
    if cfg.baseline is not None and cfg.baseline.design is not None:
        design = cfg.baseline.design
        if sorted(design) != sorted(space.names):
            raise InputError(_blame(parsed, "baseline", f"baseline.design must give exactly the parameters "
                                                        f"{space.names}, got {sorted(design)}"), file=source)
        for p in space.parameters:  # checked here, not when the loop reaches its verification runs
            if not p.low <= design[p.name] <= p.high:
                raise InputError(_blame(parsed, "baseline", f"baseline.design.{p.name}: {design[p.name]} is outside "
                                                            f"the bounds [{p.low}, {p.high}]"), file=source)
        if not space.is_feasible(design)[0]:
            raise InputError(_blame(parsed, "baseline", f"baseline.design {design} violates an integer rule or a "
                                                        f"constraint ({'; '.join(space.constraints) or 'integers'})"),
                             file=source)
    return cfg


def dump_config(cfg: RunConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML (absolute data paths)."""
    data = cfg.model_dump(mode="json")
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
