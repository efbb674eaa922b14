"""``xlzd``: an XLZD-like liquid-xenon TPC simulated with NEST (nestpy), for field optimisation.

Requires the ``nest`` extra (``pip install "rarefy[nest]"``, i.e. ``nestpy``). nestpy is
imported lazily, so registering the simulator costs nothing where the extra is absent.
The choices below are described at more length in ``docs/xlzd.md``.

**Detector.** NEST's LZ detector definition ``LZ_WS2024`` (geometry, light-collection
and S1/S2 corrections, PMTs, gas gap, S2 gain and Fano factor, thresholds), with the four
design parameters θ written into it. Yields and fluctuations: NEST's **global** default
ER/NR models (``yields="nest"``, the default), fitted to data across drift fields, since
this study varies the field; ``yields="lz_ws2024"`` uses LZ's WS2024 fit (made at one
field, 96.5 V/cm) instead.

**Design θ** (designer ranges of :func:`xlzd_space`; physical ranges, checked before any
run, in brackets):

=================  ===================  ===================================================
θ                  range                NEST
=================  ===================  ===================================================
``drift_field``    25 – 600 V/cm        uniform drift field for yields, recombination and
                   [10, 4000]           drift velocity (``inField`` of ``runNESTvec``)
``gas_field``      6 – 11 kV/cm         extraction field in the gas gap (``E_gas``); sets
                   (0, 20]              NEST's extraction efficiency (0.40 – 0.93) and g2
``g1``             0.08 – 0.20 phd/ph   photon detection efficiency (``g1``)
                   (0, 1]
``e_lifetime``     2000 – 20000 µs      electron lifetime (``eLife_us``)
                   (0, 1e6]
=================  ===================  ===================================================

**Events** (one row per ER event of the dark-matter window, so that ``k/n`` *is* the
leakage fraction):

* *ER leakage (objective 1, the event outcome).* ER (``beta``) recoils flat in
  1–15 keV, uniform in a fiducial cylinder (r < 0.8 R, 10–90 % of the drift length).
  Events are kept when 3 ≤ S1c ≤ 80 phd and S2c > 0 (NEST's S2 threshold); drawing
  continues until ``n`` are kept. The outcome is 1 when log10(S2c/S1c) is below the NR
  band median at the event's S1c.
* *NR band* (per run, ``n`` NR events at the same θ, flat in 1–150 keVnr, same fiducial
  volume and window): events are put into S1 bins of equal population
  (``clip(n_nr // 400, 4, 40)`` bins), the median log10(S2c/S1c) and the median
  log10(S1c) of each bin are taken, and the median at any S1 is the linear interpolation
  in log10(S1c) between the bin points (constant beyond the outer ones).
* *Energy resolution (objective 2, auxiliary column ``e_qbb_kev``).* ``n`` ββ-like ER
  events at Qββ = 2458 keV in the same fiducial volume, each reconstructed with the
  combined energy scale E = W · (S1c/g1 + S2c/g2), W = NEST's work function at the
  liquid density and g2 = NEST's extraction efficiency × single-electron size at this θ.
  Row i carries the i-th Qββ event (NaN when NEST gave no S1 or S2). The run's
  resolution σ_E/E = std/mean over the valid values (:func:`relative_std`, with the
  analytic standard error of a std).

**Fidelities**: ``lf`` (2,000 events per run) and ``hf`` (20,000), the same physics with
different Monte-Carlo noise. Nominal cost: 1.6e-8 CPU-h per event (≈ 57 µs of CPU for one
ER window event with its share of the rejected ones, one NR band event and one Qββ
event), measured for 20,000-event runs on the project's busy 2-core reference machine
(nestpy 2.1.3); a run also has a fixed ≈ 0.1 s overhead (detector set-up).

Determinism: NEST draws from one global generator, which ``runNESTvec`` reseeds on each
call; every call gets its own seed derived from the run's ``seed``
(:class:`numpy.random.SeedSequence`), positions come from a seeded numpy Generator.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..data.events import EventTable
from ..errors import InputError
from ..optional import require
from ..space import DesignSpace, Parameter
from .base import Fidelities, Fidelity

__all__ = ["XLZD", "xlzd_space", "physical_space", "check_theta", "check_space", "band_at", "band_median",
           "relative_std", "THETA_NAMES", "PHI_COLUMNS", "PHYSICAL_RANGES",
           "Q_BB_KEV"]

log = logging.getLogger(__name__)

THETA_NAMES = ("drift_field", "gas_field", "g1", "e_lifetime")
PHI_COLUMNS = ("energy_kev", "s1c_phd", "log10_s2c_s1c", "r_mm", "z_mm")
Q_BB_KEV = 2458.0                     # Xe-136 Q-value
ER_WINDOW_KEV = (1.0, 15.0)           # flat ER spectrum of the dark-matter window
NR_RANGE_KEV = (1.0, 150.0)           # flat NR spectrum for the band (covers S1 up to 80 phd at g1 = 0.08)
S1_WINDOW_PHD = (3.0, 80.0)           # analysis window in S1c
FIDUCIAL_R = 0.8                      # fraction of the TPC radius
FIDUCIAL_Z = (0.1, 0.9)               # fraction of the drift length (from the cathode)
EVENTS_PER_BAND_BIN = 400
BAND_BINS = (4, 40)
COST_CPU_H_PER_EVENT = 1.6e-8         # measured, see the module docstring
#: physical range [low, high] of each θ, and whether the low end is excluded
PHYSICAL_RANGES: dict[str, tuple[float, float, bool, str]] = {
    "drift_field": (10.0, 4000.0, False, "V/cm"),
    "gas_field": (0.0, 20.0, True, "kV/cm"),
    "g1": (0.0, 1.0, True, "phd/photon"),
    "e_lifetime": (0.0, 1.0e6, True, "us"),
}
_PHYSICS_NOTES = {
    "drift_field": "NEST's yield and recombination models are fitted to data between about 10 V/cm and a few kV/cm",
    "gas_field": "the extraction field in the gas gap must be positive (and below breakdown, ~20 kV/cm)",
    "g1": "g1 is a detection probability per photon",
    "e_lifetime": "the electron lifetime must be positive",
}


def xlzd_space() -> DesignSpace:
    """The XLZD field-optimisation design space: drift field (V/cm), gas field (kV/cm), g1, electron lifetime (µs)."""
    return DesignSpace([
        Parameter("drift_field", 25.0, 600.0, unit="V/cm"),
        Parameter("gas_field", 6.0, 11.0, unit="kV/cm"),
        Parameter("g1", 0.08, 0.20, unit="phd/photon"),
        Parameter("e_lifetime", 2000.0, 20000.0, unit="us"),
    ])


def physical_space() -> DesignSpace:
    """NEST's physical ranges as a DesignSpace (open lower ends closed at a tiny positive value).

    This is :attr:`XLZD.space`, what a campaign checks designs against; configs may use any
    sub-range (the examples use :func:`xlzd_space`).
    """
    return DesignSpace([
        Parameter("drift_field", 10.0, 4000.0, unit="V/cm"),
        Parameter("gas_field", 1e-3, 20.0, unit="kV/cm"),
        Parameter("g1", 1e-4, 1.0, unit="phd/photon"),
        Parameter("e_lifetime", 1e-3, 1e6, unit="us"),
    ])


def check_theta(theta: Mapping[str, float]) -> dict[str, float]:
    """θ as floats, or :class:`InputError` naming the parameter that is missing or outside NEST's physical range."""
    missing = [k for k in THETA_NAMES if k not in theta]
    if missing:
        raise InputError(f"xlzd simulator: θ lacks {missing} (needs {list(THETA_NAMES)})", column=missing[0])
    out = {}
    for name in THETA_NAMES:
        value = float(theta[name])
        lo, hi, open_low, unit = PHYSICAL_RANGES[name]
        ok = math.isfinite(value) and (value > lo if open_low else value >= lo) and value <= hi
        if not ok:
            bracket = "(" if open_low else "["
            raise InputError(f"xlzd simulator: {name} = {value:g} {unit} is outside NEST's physical range "
                             f"{bracket}{lo:g}, {hi:g}] {unit} ({_PHYSICS_NOTES[name]})", column=name)
        out[name] = value
    return out


def check_space(space: DesignSpace) -> None:
    """Raise :class:`InputError` when a design space's bounds leave NEST's physical ranges (before any run)."""
    for p in space.parameters:
        if p.name in PHYSICAL_RANGES:
            for bound in (p.low, p.high):
                check_theta({**{k: _REFERENCE[k] for k in THETA_NAMES}, p.name: bound})


_REFERENCE = {"drift_field": 193.0, "gas_field": 8.3, "g1": 0.112, "e_lifetime": 9000.0}


def band_median(s1: np.ndarray, log_ratio: np.ndarray, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """NR band median: (median log10 S1 per bin, median log10(S2/S1) per bin), bins of equal population in S1.

    ``n_bins`` defaults to ``clip(len // 400, 4, 40)``. Use :func:`band_at` to interpolate.
    """
    s1 = np.asarray(s1, float)
    y = np.asarray(log_ratio, float)
    if len(s1) < 8:
        raise ValueError(f"the NR band needs at least 8 events in the window, got {len(s1)}")
    nb = n_bins or int(np.clip(len(s1) // EVENTS_PER_BAND_BIN, *BAND_BINS))
    x = np.log10(s1)
    order = np.argsort(x, kind="stable")
    groups = np.array_split(order, nb)
    cx = np.array([np.median(x[g]) for g in groups])
    cy = np.array([np.median(y[g]) for g in groups])
    return cx, cy


def band_at(band: tuple[np.ndarray, np.ndarray], s1: np.ndarray) -> np.ndarray:
    """The band median at S1 values ``s1`` (phd): linear in log10 S1, constant beyond the outer bin points."""
    cx, cy = band
    return np.interp(np.log10(np.asarray(s1, float)), cx, cy)


def relative_std(values: np.ndarray) -> tuple[float, float]:
    """(std/mean, its standard error) of the finite ``values``.

    The error is the delta method on the sample moments: Var(s²) = (m4 − s⁴ (n−3)/(n−1)) / n
    (the analytic variance of a sample variance, any distribution), SE(s) = SE(s²)/(2s), and
    SE(R)² = (SE(s)/m)² + R² · (s²/n)/m² (the mean's own error; the small covariance is ignored).
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n < 4:
        return float("nan"), float("nan")
    m = float(v.mean())
    s2 = float(v.var(ddof=1))
    s = math.sqrt(s2)
    m4 = float(np.mean((v - m) ** 4))
    var_s2 = max(m4 - s2**2 * (n - 3) / (n - 1), 0.0) / n
    se_s = math.sqrt(var_s2) / (2.0 * s) if s > 0 else 0.0
    r = s / m
    se = math.sqrt((se_s / m) ** 2 + r**2 * (s2 / n) / m**2)
    return r, se


def _seeds(seed: int, n: int) -> list[int]:
    state = np.random.SeedSequence(int(seed) & ((1 << 63) - 1)).generate_state(n, dtype=np.uint32)
    return [int(s % (2**31 - 2)) + 1 for s in state]


@dataclass
class XLZD:
    """Built-in XLZD-like TPC on NEST (see the module docstring and docs/xlzd.md).

    Parameters
    ----------
    yields:
        ``"nest"`` (NEST's global ER/NR yield and width models, default) or ``"lz_ws2024"``.
    lf_events, hf_events:
        Default events per ``lf`` / ``hf`` run.

    :attr:`space` is NEST's physical range (:func:`physical_space`); the designer's
    ranges are :func:`xlzd_space`.
    """

    yields: str = "nest"
    lf_events: int = 2_000
    hf_events: int = 20_000
    space: DesignSpace = field(default_factory=physical_space)

    phi_names = PHI_COLUMNS

    def __post_init__(self) -> None:
        if self.yields not in ("nest", "lz_ws2024"):
            raise InputError(f"xlzd simulator: yields must be 'nest' or 'lz_ws2024', got {self.yields!r}")
        self.fidelities = Fidelities([
            Fidelity("lf", 0, COST_CPU_H_PER_EVENT, int(self.lf_events), "few events per run"),
            Fidelity("hf", 1, COST_CPU_H_PER_EVENT, int(self.hf_events), "many events per run"),
        ])

    # ------------------------------------------------------------ detector
    check_theta = staticmethod(check_theta)
    check_space = staticmethod(check_space)

    def detector(self, theta: Mapping[str, float]) -> Any:
        """A fresh nestpy ``LZ_WS2024`` detector with θ written into it."""
        nestpy = require("nestpy")

        th = check_theta(theta)
        det = nestpy.detectors.LZ_WS2024()
        det.g1 = th["g1"]
        det.E_gas = th["gas_field"]
        det.eLife_us = th["e_lifetime"]
        params = det.extraction_parameters
        if not params["valid"] or params["ExtEff"] <= 0:
            raise InputError(f"xlzd simulator: gas_field = {th['gas_field']:g} kV/cm gives no electron extraction "
                             "in NEST", column="gas_field")
        return det

    def _params(self, det: Any) -> dict[str, Any]:
        nestpy = require("nestpy")

        if self.yields == "lz_ws2024":
            return {"er_yield_params": list(det.er_parameters), "nr_yield_params": list(det.nr_parameters),
                    "width_params": list(det.nr_er_width_parameters)}
        return {"er_yield_params": list(nestpy.default_er_parameters),
                "nr_yield_params": list(nestpy.default_nr_parameters),
                "width_params": list(nestpy.default_nr_er_width_parameters)}

    @staticmethod
    def positions(det: Any, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` positions (mm, shape (n, 3)) uniform in the fiducial cylinder."""
        r = FIDUCIAL_R * det.radius * np.sqrt(rng.random(n))
        a = rng.random(n) * 2.0 * math.pi
        z = det.TopDrift * (FIDUCIAL_Z[0] + (FIDUCIAL_Z[1] - FIDUCIAL_Z[0]) * rng.random(n))
        return np.column_stack([r * np.cos(a), r * np.sin(a), z])

    def _nest(self, det: Any, kind: str, energies: np.ndarray, pos: np.ndarray, field_v_cm: float,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
        nestpy = require("nestpy")

        inter = {"er": nestpy.interactions.beta, "nr": nestpy.interactions.NR}[kind]
        arr = nestpy.array.runNESTvec(det, inter, np.ascontiguousarray(energies, dtype=float),
                                      np.ascontiguousarray(pos, dtype=float), inField=float(field_v_cm),
                                      seed=int(seed), **self._params(det))
        return np.asarray(arr["s1c_phd"], dtype=float), np.asarray(arr["s2c_phd"], dtype=float)

    @staticmethod
    def in_window(s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        """Events inside the dark-matter analysis window: 3 ≤ S1c ≤ 80 phd and S2c > 0."""
        return (s1 >= S1_WINDOW_PHD[0]) & (s1 <= S1_WINDOW_PHD[1]) & (s2 > 0)

    def _window_events(self, det: Any, kind: str, n: int, field_v_cm: float, seeds: list[int],
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw flat-spectrum recoils until ``n`` fall in the analysis window."""
        lo, hi = ER_WINDOW_KEV if kind == "er" else NR_RANGE_KEV
        parts: list[dict[str, np.ndarray]] = []
        have, acc, i = 0, 0.7, 0
        while have < n:
            if i >= len(seeds):
                raise RuntimeError(f"xlzd simulator: fewer than {n} {kind.upper()} events fell in the S1 window "
                                   f"after {i} batches (acceptance {acc:.3g})")
            m = int(math.ceil((n - have) / max(acc, 0.02) * 1.1)) + 16
            e = lo + (hi - lo) * rng.random(m)
            pos = self.positions(det, m, rng)
            s1, s2 = self._nest(det, kind, e, pos, field_v_cm, seeds[i])
            ok = self.in_window(s1, s2)
            acc = max(float(ok.mean()), 1e-3)
            take = np.flatnonzero(ok)[: n - have]
            parts.append({"energy_kev": e[take], "s1": s1[take], "s2": s2[take], "pos": pos[take]})
            have += len(take)
            i += 1
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def g2(self, det: Any) -> float:
        """NEST's g2 (phd per ionisation electron: extraction efficiency × single-electron size)."""
        return float(det.extraction_parameters["g2"])

    def work_function_kev(self, det: Any) -> float:
        """NEST's W (keV per quantum) at the detector's liquid density."""
        nestpy = require("nestpy")

        return float(nestpy.NESTcalc.WorkFunction(det.density_liquid, 131.293, True).Wq_eV) * 1e-3

    def qbb_energies(self, det: Any, n: int, field_v_cm: float, seed: int, rng: np.random.Generator) -> np.ndarray:
        """Combined-energy reconstruction (keV) of ``n`` Qββ ER events; NaN where S1 or S2 is missing."""
        pos = self.positions(det, n, rng)
        s1, s2 = self._nest(det, "er", np.full(n, Q_BB_KEV), pos, field_v_cm, seed)
        e = self.work_function_kev(det) * (s1 / det.g1 + s2 / self.g2(det))
        return np.where((s1 > 0) & (s2 > 0), e, np.nan)

    def er_events(self, theta: Mapping[str, float], energies_kev: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        """NEST ER (β) events at the given recoil energies (keV) at design ``theta``, each at a position uniform
        in the fiducial cylinder; deterministic for ``seed``.

        Returns arrays of the events' length: ``s1c_phd`` and ``s2c_phd`` (corrected pulse
        areas, phd), ``energy_kev`` (the combined energy W · (S1c/g1 + S2c/g2), keV), ``passed``
        (inside the analysis window, :meth:`in_window`: 3 ≤ S1c ≤ 80 phd and S2c > 0, which also
        applies NEST's S1 and S2 thresholds) and ``r_mm``, ``z_mm`` (position). S1c, S2c and the
        energy are NaN where the event did not pass.
        """
        th = check_theta(theta)
        e = np.ascontiguousarray(energies_kev, dtype=float).reshape(-1)
        if e.size and (not np.all(np.isfinite(e)) or np.any(e <= 0)):
            raise InputError("xlzd simulator: ER energies must be positive and finite (keV)")
        det = self.detector(th)
        seeds = _seeds(seed, 2)
        pos = self.positions(det, e.size, np.random.default_rng(seeds[0]))
        if e.size:
            s1, s2 = self._nest(det, "er", e, pos, th["drift_field"], seeds[1])
        else:
            s1, s2 = np.empty(0), np.empty(0)
        passed = self.in_window(s1, s2)
        energy = self.work_function_kev(det) * (s1 / det.g1 + s2 / self.g2(det))
        nan = np.nan
        return {"s1c_phd": np.where(passed, s1, nan), "s2c_phd": np.where(passed, s2, nan),
                "energy_kev": np.where(passed, energy, nan), "passed": passed,
                "r_mm": np.hypot(pos[:, 0], pos[:, 1]), "z_mm": pos[:, 2]}

    # ------------------------------------------------------------- simulate
    def simulate_detailed(self, theta: Mapping[str, float], n: int, fidelity: str, seed: int,
                          run_id: str | None = None) -> tuple[EventTable, dict[str, float]]:
        """Simulate one run of ``n`` rows at ``theta``: (events, {"cpu_s": CPU seconds of this thread})."""
        name = self.fidelities[fidelity].name
        th = check_theta(theta)
        if n < 8:
            raise InputError(f"xlzd simulator: need at least 8 events per run (the NR band needs them), got n={n}")
        t0 = time.thread_time()
        det = self.detector(th)
        seeds = _seeds(seed, 64)
        rng = np.random.default_rng(seeds[0])
        f = th["drift_field"]
        nr = self._window_events(det, "nr", n, f, seeds[1:21], rng)
        band = band_median(nr["s1"], np.log10(nr["s2"] / nr["s1"]))
        er = self._window_events(det, "er", n, f, seeds[21:41], rng)
        log_ratio = np.log10(er["s2"] / er["s1"])
        median = band_at(band, er["s1"])
        outcome = (log_ratio < median).astype(np.int8)
        e_qbb = self.qbb_energies(det, n, f, seeds[41], rng)
        cpu_s = time.thread_time() - t0
        pos = er["pos"]
        phi = {"energy_kev": er["energy_kev"], "s1c_phd": er["s1"], "log10_s2c_s1c": log_ratio,
               "r_mm": np.hypot(pos[:, 0], pos[:, 1]), "z_mm": pos[:, 2]}
        extra = {"nr_median": median, "e_qbb_kev": e_qbb}
        events = EventTable.from_arrays(th, phi, outcome, fidelity=name, run_id=run_id, extra=extra)
        log.info("xlzd: %d events at %s -> leakage %d/%d, σ_E/E %.4g (%.2f s CPU)", n, th, int(outcome.sum()), n,
                 relative_std(e_qbb)[0], cpu_s)
        return events, {"cpu_s": cpu_s}

    def simulate(self, theta: Mapping[str, float], n: int, fidelity: str, seed: int) -> EventTable:
        """One run: ``n`` ER window events (outcome: below the NR median), Qββ energies in ``e_qbb_kev``."""
        return self.simulate_detailed(theta, n, fidelity, seed)[0]

    # ---------------------------------------------------------- objectives
    def objectives(self, theta: Mapping[str, float], n: int = 200_000, seed: int = 0) -> dict[str, float]:
        """Both objectives at ``theta`` from one large run: leakage and σ_E/E (fractions) with their σ."""
        events = self.simulate(theta, n, "hf", seed)
        k, m = events.k, events.n
        res, res_se = relative_std(events.to_pandas()["e_qbb_kev"].to_numpy(float))
        return {"leakage": k / m, "leakage_sigma": math.sqrt(max(k, 1)) / m, "resolution": res,
                "resolution_sigma": res_se, "k": k, "n": m}
