"""``cosmic``: binary black holes (BBH) from the COSMIC population-synthesis code.

Requires the ``cosmic`` extra (``pip install "rarefy[cosmic]"``, i.e. ``cosmic-popsynth``).
COSMIC is imported lazily, on the first :meth:`CosmicBBH.simulate`, so registering the
simulator costs nothing where the extra is absent.

**Design θ** (and how each maps onto COSMIC's BSE settings; every other BSE flag keeps
its default from COSMIC's own ``cosmic-settings.json``):

===============  ===================  ===========================================================
θ                range                COSMIC
===============  ===================  ===========================================================
``log10_z``      [-4, log10 0.03]     metallicity Z = 10**log10_z of every binary (sampler ``met``;
                                      SSE's valid range is 1e-4 ≤ Z ≤ 0.03). Log scale because ε(Z)
                                      changes over decades of Z.
``alpha_ce``     [0.1, 10]            ``alpha1 = [α_CE, α_CE]`` (common-envelope efficiency, both stars)
``sigma_bh``     [0, 1000] km/s       Maxwellian dispersion of BH natal kicks *before* fallback
                                      (``bhflag = 1``): ``bhsigmafrac = σ_BH / sigma``
``sigma_ns``     [0, 1000] km/s       ``sigma`` (Maxwellian dispersion of core-collapse NS kicks)
===============  ===================  ===========================================================

Deviations from the defaults: ``kickflag = 1`` (COSMIC's standard Maxwellian kicks with
dispersion ``sigma``; the default ``kickflag = 5`` draws core-collapse kicks from a fixed
Disberg & Mandel law that ignores ``sigma``). ``bhsigmafrac`` is set through the initial
binary table (COSMIC's per-binary way of passing BSE parameters) because σ_BH > σ_NS needs
``bhsigmafrac > 1``, which COSMIC's BSEDict check refuses although the kick routine just
multiplies ``sigma`` by it. ``sigma`` is floored at 1e-3 km/s so that σ_NS = 0 still allows
σ_BH > 0. Electron-capture SNe keep their default 20 km/s dispersion (``sigmadiv = -20``).

**Events** are massive binaries from COSMIC's ``independent`` sampler: Kroupa (2001) IMF
for the primary, flat mass ratio (``qmin = -1``), Sana et al. (2012) periods and
eccentricities, binary fraction 0.5, all born 13.7 Gyr ago (``SF_start = 13700`` Myr,
``SF_duration = 0``) and evolved to today. **Mass cut:** the sampler's own selection for
``final_kstar1 = final_kstar2 = [14]`` keeps only binaries with both ZAMS masses above
8 M☉ (COSMIC's lowest compact-object progenitor mass for kstar 14). Stars below 8 M☉
end as white dwarfs unless they accrete; a BBH needs *both* stars to collapse to BHs,
and a secondary below 8 M☉ would have to gain several solar masses and then still
form a black hole, so these binaries are not evolved. The cut removes >99.9% of the
sampled stars (singles and lighter binaries) but not their mass: see below.

**Outcome**: 1 if the binary ends as a BBH that merged within the 13.7 Gyr of evolution
(COSMIC ``merger_type == "1414"``), else 0.

**φ** per binary: ZAMS masses ``m1_msun``, ``m2_msun``; initial period ``porb_day`` and
separation ``sep_rsun``; eccentricity ``ecc``; natal-kick draws ``vkick1_kms``,
``vkick2_kms`` (0 where the star had no supernova). Auxiliary: ``t_merge_myr``, the
BBH delay time from formation to merger (NaN for non-mergers), and
``msun_per_binary``, the star-forming mass the run's sample represents per evolved
binary.

**Formation efficiency** ε (BBH mergers per M☉ of star formation) of a run of n binaries
with k mergers is ε = k / M, where M = (mass of all singles and binaries the sampler
drew, including those cut away; COSMIC's ``mass_singles + mass_binaries``) represents
the run. Since the cut is on masses only, M/n does not depend on θ;
:meth:`CosmicBBH.msun_per_binary` estimates it once from a large sample (498 M☉ per
evolved binary from 100,000; the quadrature of the same IMF, binary fraction and mass-ratio
law gives 500.1 M☉), so ε(θ) = rate(θ) / msun_per_binary with rate = k/n per binary.

**Normalisation, exactly.** Primaries m1 from Kroupa (2001) truncated to 0.08–150 M☉
(dN/dm ∝ m^-1.3 below 0.5 M☉, m^-2.3 above; COSMIC's ``kroupa01``, no brown dwarfs);
each primary has a companion with probability 0.5; secondaries m2 = q·m1 with q uniform on
[0.1, 1] (COSMIC 4.3.3 applies qmin = 0.1 to every primary under ``qmin = -1``). M counts
every sampled star: singles, light binaries and the kept massive binaries, so
M / (kept binaries) = E[m1](1 + 0.5·E[q]) / (0.5 · P(m1 > 8, q·m1 > 8)) = 0.747 M☉ /
1.494e-3 = 500.1 M☉. The sampler draws primaries in batches until it has at least n massive
binaries, so it returns a few more than n (up to ~7% more at n = 1,000); M is the mass of
all of them, and the first n kept represent the share n / (returned) of it.

**Fidelities**: ``lf`` (5,000 binaries per run by default) and ``hf`` (200,000); the
same physics, different Monte-Carlo noise. The nominal cost, 5.3e-6 CPU-h per binary
(19 ms), is the CPU time measured on this project's 2-core reference machine
(x86-64, cosmic-popsynth 4.3.3, Z = 2e-3 … 2e-4).

Determinism: the sampler and COSMIC's per-binary Fortran seeds use NumPy's global random
state, which is seeded from ``seed`` around each call and restored afterwards. Binaries
are evolved serially in the calling thread (no COSMIC process pool), so the adapter
works inside Dask worker processes and its CPU time is measurable.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from importlib.resources import files
from typing import Any, Iterator, Mapping

import numpy as np

from ..data.events import EventTable
from ..errors import InputError
from ..optional import require
from ..space import DesignSpace, Parameter
from .base import Fidelities, Fidelity

__all__ = ["CosmicBBH", "cosmic_space", "default_bse", "PHI_COLUMNS", "THETA_NAMES"]

log = logging.getLogger(__name__)

THETA_NAMES = ("log10_z", "alpha_ce", "sigma_bh", "sigma_ns")
PHI_COLUMNS = ("m1_msun", "m2_msun", "porb_day", "sep_rsun", "ecc", "vkick1_kms", "vkick2_kms")
Z_MIN, Z_MAX = 1e-4, 0.03
HUBBLE_TIME_MYR = 13_700.0
COST_CPU_H_PER_BINARY = 5.3e-6  # measured: 19 ms of CPU per evolved binary (see module docstring)
SIGMA_FLOOR = 1e-3              # km/s, smallest 'sigma' passed to COSMIC


def cosmic_space() -> DesignSpace:
    """The BBH design space: log10 metallicity, α_CE, σ_BH (km/s), σ_NS (km/s)."""
    return DesignSpace([
        Parameter("log10_z", math.log10(Z_MIN), math.log10(Z_MAX), unit="dex"),
        Parameter("alpha_ce", 0.1, 10.0),
        Parameter("sigma_bh", 0.0, 1000.0, unit="km/s"),
        Parameter("sigma_ns", 0.0, 1000.0, unit="km/s"),
    ])


def _parse_default(value: Any) -> Any:
    """A default from cosmic-settings.json as a Python value (lists may hold fractions like 2.0/21.0)."""
    if not isinstance(value, str) or not value.strip().startswith("["):
        return value
    text = value.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        out = []
        for item in text.strip("[]").split(","):
            num, _, den = item.strip().partition("/")
            out.append(float(num) / float(den) if den else float(num))
        return out


def default_bse() -> dict[str, Any]:
    """COSMIC's default BSE settings, read from the ``cosmic-settings.json`` it ships."""
    settings = json.loads(files(require("cosmic.data")).joinpath("cosmic-settings.json").read_text(encoding="utf-8"))
    bse: dict[str, Any] = {}
    for category in settings:
        if category["category"] != "bse":
            continue
        for flag in category["settings"]:
            defaults = [o["name"] for o in flag.get("options", []) if o.get("default")]
            if defaults:
                bse[flag["name"]] = _parse_default(defaults[0])
    return bse


class _SerialPool:
    """A stand-in for a multiprocessing pool: COSMIC evolves binaries in the calling thread."""

    def map(self, func: Any, items: Any) -> list[Any]:
        return [func(x) for x in items]

    imap = map


@contextlib.contextmanager
def _numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global random state (COSMIC's source of randomness); restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(int(seed) % (2**32))
    try:
        yield
    finally:
        np.random.set_state(state)


@dataclass
class CosmicBBH:
    """Built-in COSMIC binary-black-hole simulator (see the module docstring).

    Parameters
    ----------
    binfrac:
        Binary fraction of the sampler (COSMIC default 0.5).
    bse:
        Extra BSE settings overriding COSMIC's defaults (θ-mapped flags are set last).
    lf_binaries, hf_binaries:
        Default number of binaries of an ``lf`` / ``hf`` run.
    """

    binfrac: float = 0.5
    bse: dict[str, Any] = field(default_factory=dict)
    lf_binaries: int = 5_000
    hf_binaries: int = 200_000
    space: DesignSpace = field(default_factory=cosmic_space)

    @cached_property
    def fidelities(self) -> Fidelities:
        """``lf`` and ``hf``: the same physics with few / many binaries per run."""
        return Fidelities([
            Fidelity("lf", 0, COST_CPU_H_PER_BINARY, self.lf_binaries, "few binaries per run"),
            Fidelity("hf", 1, COST_CPU_H_PER_BINARY, self.hf_binaries, "many binaries per run"),
        ])

    # ------------------------------------------------------------- settings
    def _theta(self, theta: Mapping[str, float]) -> tuple[float, float, float, float]:
        missing = [k for k in THETA_NAMES if k not in theta]
        if missing:
            raise InputError(f"cosmic simulator: θ lacks {missing} (needs {list(THETA_NAMES)})")
        z = 10.0 ** float(theta["log10_z"])
        alpha, s_bh, s_ns = (float(theta[k]) for k in ("alpha_ce", "sigma_bh", "sigma_ns"))
        if not (Z_MIN * (1 - 1e-9) <= z <= Z_MAX * (1 + 1e-9)):
            raise InputError(f"cosmic simulator: Z = {z:.4g} outside COSMIC/SSE's range [{Z_MIN}, {Z_MAX}]",
                             column="log10_z")
        if alpha <= 0 or s_bh < 0 or s_ns < 0:
            raise InputError(f"cosmic simulator: need alpha_ce > 0 and kick dispersions >= 0, got {dict(theta)}")
        return min(max(z, Z_MIN), Z_MAX), alpha, s_bh, s_ns

    def bse_settings(self, theta: Mapping[str, float]) -> tuple[dict[str, Any], dict[str, float]]:
        """(BSEDict, per-binary columns) for design ``theta``: COSMIC defaults + overrides + θ."""
        _, alpha, s_bh, s_ns = self._theta(theta)
        bse = default_bse()
        bse.update(self.bse)
        sigma = max(s_ns, SIGMA_FLOOR)
        bse.update({"kickflag": 1, "alpha1": [alpha, alpha], "sigma": sigma})
        bse.pop("bhsigmafrac", None)
        return bse, {"bhsigmafrac": s_bh / sigma}

    def _sample(self, z: float, n: int) -> tuple[Any, float]:
        """(first ``n`` massive binaries at metallicity ``z``, star-forming mass they represent in M☉)."""
        InitialBinaryTable = require("cosmic.sample.initialbinarytable").InitialBinaryTable

        table, m_singles, m_binaries, _, _ = InitialBinaryTable.sampler(
            "independent", [14], [14], binfrac_model=self.binfrac, primary_model="kroupa01", ecc_model="sana12",
            porb_model="sana12", qmin=-1, SF_start=HUBBLE_TIME_MYR, SF_duration=0.0, met=z, size=int(n))
        # The sampler stops after the batch that reaches ``n`` massive binaries, so it returns
        # ``len(table) >= n`` of them, and ``m_singles + m_binaries`` is the star-forming mass of
        # all of those. The first n are kept: they represent the share n / len(table) of it.
        full = len(table)
        table = table.iloc[: int(n)].reset_index(drop=True)
        return table, float(m_singles + m_binaries) * len(table) / full

    def msun_per_binary(self, n: int = 200_000, seed: int = 0) -> float:
        """Star-forming mass (M☉) the sampler represents per evolved binary, from ``n`` draws."""
        with _numpy_global_seed(seed):
            table, mass = self._sample(0.01, n)
        return mass / len(table)

    # ------------------------------------------------------------- simulate
    def simulate_detailed(self, theta: Mapping[str, float], n: int, fidelity: str, seed: int,
                          run_id: str | None = None) -> tuple[EventTable, dict[str, float]]:
        """Evolve ``n`` binaries at ``theta``: (events, {"cpu_s": CPU seconds of this thread})."""
        import pandas as pd
        Evolve = require("cosmic.evolve").Evolve

        name = self.fidelities[fidelity].name
        if n < 1:
            raise InputError(f"cosmic simulator: need at least one binary, got n={n}")
        z, _, _, _ = self._theta(theta)
        bse, columns = self.bse_settings(theta)
        t0 = time.thread_time()
        with _numpy_global_seed(seed):
            initial, mass = self._sample(z, n)
            initial = initial.assign(**columns)
            bpp, bcm, _, kicks = Evolve.evolve(initialbinarytable=initial, BSEDict=bse, pool=_SerialPool())
        cpu_s = time.thread_time() - t0
        nbin = len(initial)
        last = bcm.groupby("bin_num").tail(1).set_index("bin_num").reindex(range(nbin))
        merged = (last["merger_type"].astype(str).str.strip() == "1414").to_numpy()
        t_merge = np.full(nbin, np.nan)
        coal = bpp[bpp["evol_type"] == 6].groupby("bin_num")["tphys"].min()
        idx = np.flatnonzero(merged)
        t_merge[idx] = coal.reindex(idx).to_numpy(dtype=float)
        first = bpp.groupby("bin_num").head(1).set_index("bin_num").reindex(range(nbin))
        kick = pd.DataFrame({"bin_num": np.asarray(kicks.index, dtype=int), "star": kicks["star"].to_numpy(int),
                             "v": kicks["natal_kick"].to_numpy(float)})
        vk = kick.pivot_table(index="bin_num", columns="star", values="v", aggfunc="max").reindex(range(nbin))
        phi = {
            "m1_msun": initial["mass_1"].to_numpy(float),
            "m2_msun": initial["mass_2"].to_numpy(float),
            "porb_day": initial["porb"].to_numpy(float),
            "sep_rsun": first["sep"].to_numpy(float),
            "ecc": initial["ecc"].to_numpy(float),
            "vkick1_kms": np.nan_to_num(vk.get(1, pd.Series(0.0, index=vk.index)).to_numpy(float).clip(min=0)),
            "vkick2_kms": np.nan_to_num(vk.get(2, pd.Series(0.0, index=vk.index)).to_numpy(float).clip(min=0)),
        }
        extra = {"t_merge_myr": t_merge, "msun_per_binary": np.full(nbin, mass / nbin)}
        events = EventTable.from_arrays({k: float(theta[k]) for k in THETA_NAMES}, phi, merged.astype(np.int8),
                                        fidelity=name, run_id=run_id, extra=extra)
        log.info("cosmic: %d binaries at %s -> %d BBH mergers (%.1f s CPU, %.0f Msun represented)",
                 nbin, dict(theta), int(merged.sum()), cpu_s, mass)
        return events, {"cpu_s": cpu_s}

    def simulate(self, theta: Mapping[str, float], n: int, fidelity: str, seed: int) -> EventTable:
        """Evolve ``n`` massive binaries at design ``theta``; one event row per binary."""
        return self.simulate_detailed(theta, n, fidelity, seed)[0]
