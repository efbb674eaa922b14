"""Where a result came from: rarefy's version, the seed, a hash of the resolved config, the time.

Every summary file a job writes (``result.json``, ``fit.json``, ``summary.json``) carries
a ``provenance`` record from :func:`provenance`, so that a shared file can be traced to
the code and the exact config that produced it::

    "provenance": {
      "rarefy_version": "0.1.0",
      "seed": 11,
      "config_sha256": "3f5c…",               # sha256 of the canonical resolved config
      "created_utc": "2026-12-01T10:15:00Z"
    }

The **canonical resolved config** is the validated config (defaults filled in, data
paths made absolute) as JSON with sorted keys and no whitespace; reading a run
directory's ``config.yaml`` back gives the same hash (:func:`config_hash`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .config import RunConfig

__all__ = ["canonical_config", "config_hash", "provenance"]


def canonical_config(cfg: "RunConfig") -> str:
    """The resolved config as canonical JSON: sorted keys, no whitespace, non-ASCII kept as is."""
    return json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_hash(cfg: "RunConfig") -> str:
    """sha256 (hex) of :func:`canonical_config`: equal for equal resolved configs, whatever the key order."""
    return hashlib.sha256(canonical_config(cfg).encode("utf-8")).hexdigest()


def provenance(cfg: "RunConfig", seed: int | None = None, *, now: datetime | None = None) -> dict[str, Any]:
    """The provenance record of a result made from ``cfg`` with ``seed`` (default: the config's seed).

    ``created_utc`` is ``now`` (default: the current time) in UTC, ISO 8601 to the second.
    """
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    return {
        "rarefy_version": __version__,
        "seed": int(cfg.seed if seed is None else seed),
        "config_sha256": config_hash(cfg),
        "created_utc": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
