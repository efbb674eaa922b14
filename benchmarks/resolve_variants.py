"""Which assumption moves the metallicity posterior of examples/bbh: one `rarefy infer` per variant.

    nice -n 10 python benchmarks/resolve_variants.py --out runs/resolve-variants

Every variant is ``rarefy infer examples/bbh/infer.yaml`` (or ``infer-full.yaml``) with
``--set`` overrides and the *same* surrogate (fitted once, by the first variant, and reused
through ``infer.surrogate``), so the variants differ only in the rate model:

- ``msun_per_event``: the star-forming mass per evolved massive binary under other
  normalisation conventions (quadrature in ``docs/figures/resolve_figures.py``): the adapter's
  (Kroupa 0.08–150 M☉, binary fraction 0.5, q ∈ [0.1, 1]) 498 M☉; the IMF extended to
  0.01 M☉ 521 M☉; binary fraction 1 304 M☉; COMPAS's cosmic-integration defaults (IMF
  0.01–200 M☉, binary fraction 0.7, q ∈ [0, 1]) 436 M☉; and the mass of the evolved
  binaries alone (no singles or light stars, the mean m1 + m2 of the evolved binaries of
  ``examples/bbh/data/events``) 47.3 M☉.
- ``sfrd0``: 0.01 instead of 0.015 M☉ yr⁻¹ Mpc⁻³.
- ``msun_per_event`` = 9.7 M☉ (ε × 51): whether RESOLVE's Z follows once ε(0.0172) is the
  1.13e-6 M☉⁻¹ that R = 17 needs.
- narrow priors around α_CE = 1, σ_BH = σ_NS = 265 km/s (the fixed values of
  ``benchmarks/bbh_efficiency.py``).
- the full rate model (delay times, metallicity spread, metallicity evolution) and its parts
  (spread 0.1 dex instead of 0.4; no evolution of the median metallicity; both).

Writes one run directory per variant under ``--out`` and prints one JSON line: per variant
the overrides, the median and central 68% interval of Z, max R-hat and the wall time.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import rarefy

ROOT = Path(__file__).resolve().parents[1]
SIMPLE = ROOT / "examples" / "bbh" / "infer.yaml"
FULL = ROOT / "examples" / "bbh" / "infer-full.yaml"
NARROW = ["infer.priors.alpha_ce.kind=normal", "infer.priors.alpha_ce.mu=1.0", "infer.priors.alpha_ce.sigma=0.2",
          "infer.priors.sigma_bh.kind=normal", "infer.priors.sigma_bh.mu=265", "infer.priors.sigma_bh.sigma=30",
          "infer.priors.sigma_ns.kind=normal", "infer.priors.sigma_ns.mu=265", "infer.priors.sigma_ns.sigma=30"]

VARIANTS: list[tuple[str, Path, list[str]]] = [
    ("base", SIMPLE, []),
    ("imf_to_0.01", SIMPLE, ["infer.msun_per_event=521.1"]),
    ("binary_fraction_1", SIMPLE, ["infer.msun_per_event=304.0"]),
    ("compas_convention", SIMPLE, ["infer.msun_per_event=435.9"]),
    ("evolved_binaries_only", SIMPLE, ["infer.msun_per_event=47.3"]),
    ("sfrd0_0.01", SIMPLE, ["infer.sfrd0=0.01"]),
    ("alpha1_sigma265", SIMPLE, NARROW),
    # ε × 51: the factor by which the PCE's prior-mean ε(0.0172) falls short of 1.13e-6 M☉⁻¹
    ("eps_x51", SIMPLE, ["infer.msun_per_event=9.7"]),
    ("full", FULL, []),
    # a narrow spread instead of none: with σ_Z = 0 the model has one point per delay time
    # (hundreds), and the surrogate's joint covariance over them makes sampling hours long
    ("full_narrow_spread", FULL, ["infer.full.z_spread_dex=0.1", "infer.full.grid=32"]),
    ("full_no_evolution", FULL, ["infer.full.z_evolution=false"]),
    ("full_delays_only", FULL, ["infer.full.z_spread_dex=0.1", "infer.full.grid=32", "infer.full.z_evolution=false"]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for the run directories")
    ap.add_argument("--only", nargs="*", help="variant names (default: all)")
    ap.add_argument("--surrogate", help="a run directory whose surrogate/ to reuse (default: the first variant's)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    surrogate = Path(args.surrogate).resolve() if args.surrogate else None
    results = {}
    for name, config, overrides in VARIANTS:
        if args.only and name not in args.only:
            continue
        sets = list(overrides) + ([f"infer.surrogate={surrogate}"] if surrogate else [])
        t0 = time.perf_counter()
        res = rarefy.infer(config, out / name, overrides=sets)
        wall = time.perf_counter() - t0
        if surrogate is None:
            surrogate = (out / name).resolve()
        z = res.summary["parameters"]["z"]
        results[name] = {"config": str(config.relative_to(ROOT)), "set": list(overrides),
                         "z_median": round(z["median"], 5), "z_ci68": [round(v, 5) for v in z["ci68"]],
                         "max_rhat": round(res.summary["max_rhat"], 4), "wall_s": round(wall, 1)}
        logging.getLogger(__name__).warning("%s: Z = %.4g (%.4g-%.4g)", name, z["median"], *z["ci68"])
    print(json.dumps({"benchmark": "resolve_variants", "variants": results}))


if __name__ == "__main__":
    main()
