"""BBH formation efficiency ε(Z) of the COSMIC adapter at fixed α_CE = 1 and default kicks.

    nice -n 10 python benchmarks/bbh_efficiency.py --out examples/bbh/data/efficiency.parquet

Evolves massive binaries with :class:`rarefy.simulators.cosmic.CosmicBBH` (the ``cosmic``
extra) at a grid of metallicities Z, with α_CE = 1 and σ_BH = σ_NS = 265 km/s (COSMIC's
default Maxwellian dispersion, ``bhsigmafrac = 1``), in chunks of ``--chunk`` binaries,
cycling over the Z grid so that a stopped run still covers every Z. After every chunk the
table of all chunks so far is rewritten (atomically) to ``--out``: one row per chunk with
``log10_z``, ``k`` (BBH mergers), ``n`` (binaries), ``msun`` (star-forming mass the chunk
represents, M☉: n × the sampler's mass per evolved binary), ``cpu_s`` and ``seed``.

ε(Z) = Σk / Σmsun over the chunks of one Z (M☉⁻¹), with Poisson error √Σk / Σmsun.
``docs/figures/resolve_figures.py`` draws it. Prints one JSON line: binaries, mergers and
CPU seconds per Z, and the CPU time per binary.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time

import numpy as np
import pandas as pd

from rarefy.io import atomic_path
from rarefy.simulators.cosmic import CosmicBBH

Z_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 6e-3, 0.01, 0.017, 0.03)
# binaries per Z (more where mergers are rare)
N_PER_Z = (2000, 2000, 2000, 4000, 6000, 8000, 10000, 8000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the binaries per Z")
    ap.add_argument("--seed", type=int, default=7000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    sim = CosmicBBH()
    todo = {z: round(n * args.scale) for z, n in zip(Z_GRID, N_PER_Z)}
    rows: list[dict[str, float]] = []
    seed = args.seed
    t0 = time.time()
    while any(v > 0 for v in todo.values()):
        for z in Z_GRID:
            n = min(args.chunk, todo[z])
            if n <= 0:
                continue
            theta = {"log10_z": math.log10(z), "alpha_ce": 1.0, "sigma_bh": 265.0, "sigma_ns": 265.0}
            events, info = sim.simulate_detailed(theta, n, "hf", seed)
            df = events.to_pandas()
            rows.append({"log10_z": theta["log10_z"], "z": z, "alpha_ce": 1.0, "sigma_bh": 265.0,
                         "sigma_ns": 265.0, "k": int(df["outcome"].sum()), "n": len(df),
                         "msun": float(df["msun_per_binary"].sum()), "cpu_s": float(info["cpu_s"]),
                         "seed": seed})
            todo[z] -= n
            seed += 1
            with atomic_path(args.out) as tmp:
                pd.DataFrame(rows).to_parquet(tmp, index=False)
    tab = pd.DataFrame(rows).groupby("z").agg(k=("k", "sum"), n=("n", "sum"), msun=("msun", "sum"),
                                              cpu_s=("cpu_s", "sum"))
    out = {"benchmark": "bbh_efficiency", "wall_s": round(time.time() - t0, 1),
           "cpu_s_per_binary": round(float(tab.cpu_s.sum() / tab.n.sum()), 4),
           "per_z": {f"{z:g}": {"k": int(r.k), "n": int(r.n), "eps_per_msun": float(r.k / r.msun),
                                 "cpu_s": round(float(r.cpu_s), 1)} for z, r in tab.iterrows()}}
    print(json.dumps(out))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
