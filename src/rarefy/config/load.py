"""YAML in, validated :class:`RunConfig` out (and back): the only module of rarefy that knows YAML.

:func:`load_config` reads a file, validates it with pydantic once, resolves relative paths
(data files, a bench run directory, an inference surrogate and delay file) against the
config's folder and returns a :class:`RunConfig`; every job takes these typed objects.
:func:`as_config` is the one place that turns "a config object or a path to one" into
a config, for the jobs that accept both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import InputError
from .run import RunConfig

__all__ = ["load_config", "config_from_dict", "dump_config", "format_validation_error", "as_config"]


def format_validation_error(exc: ValidationError) -> str:
    """One line naming each invalid key (dotted path) and what is wrong with it."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a YAML run config; data paths are resolved against its folder."""
    path = Path(path)
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
    return config_from_dict(raw, base=path.parent, source=str(path))


def as_config(config: RunConfig | str | os.PathLike[str]) -> tuple[RunConfig, Path | None]:
    """A config given as an object or as a YAML path: ``(config, file)``, ``file`` None for an object.

    Jobs name ``file`` in their errors and resolve the simulator's relative paths against
    its folder (the working directory for a config object).
    """
    if isinstance(config, RunConfig):
        return config, None
    return load_config(config), Path(config)


def _absolute(path: Path, base: str | os.PathLike[str]) -> Path:
    return path if path.is_absolute() else (Path(base) / path).resolve()


def config_from_dict(raw: dict[str, Any], base: str | os.PathLike[str] = ".", source: str = "<config>") -> RunConfig:
    """Validate a config given as a dict (the Python equivalent of a YAML file)."""
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc), file=source) from None
    if cfg.data is not None:
        cfg.data.paths = [_absolute(p, base) for p in cfg.data.paths]
    if cfg.bench is not None and cfg.bench.run_dir is not None:
        cfg.bench.run_dir = _absolute(cfg.bench.run_dir, base)
    if cfg.infer is not None and cfg.infer.surrogate is not None:
        cfg.infer.surrogate = _absolute(cfg.infer.surrogate, base)
    if cfg.infer is not None and cfg.infer.full is not None:
        cfg.infer.full.delays = _absolute(cfg.infer.full.delays, base)
    try:
        space = cfg.space.build()
    except InputError as exc:
        raise InputError(f"space: {exc.reason}", file=source) from None
    if cfg.baseline is not None and cfg.baseline.design is not None:
        design = cfg.baseline.design
        if sorted(design) != sorted(space.names):
            raise InputError(f"baseline.design must give exactly the parameters {space.names}, got {sorted(design)}",
                             file=source)
        for p in space.parameters:  # checked here, not when the loop reaches its verification runs
            if not p.low <= design[p.name] <= p.high:
                raise InputError(f"baseline.design.{p.name}: {design[p.name]} is outside the bounds [{p.low}, {p.high}]",
                                 file=source)
        if not space.is_feasible(design)[0]:
            raise InputError(f"baseline.design {design} violates an integer rule or a constraint "
                             f"({'; '.join(space.constraints) or 'integers'})", file=source)
    return cfg


def dump_config(cfg: RunConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML (absolute data paths)."""
    data = cfg.model_dump(mode="json")
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
