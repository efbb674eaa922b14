"""CATHODE's null test (no signal) against the size of the sideband-flow ensemble.

For each seed one signal-free data set of :class:`rarefy.anomaly.data.BumpHunt`
(``--n-background`` events, SR [3.3, 3.7)) is drawn exactly as ``benchmarks/cathode.py``
draws it; ``max(--ensembles)`` sideband flows are fitted once (member seeds as in
:func:`rarefy.anomaly.cathode.fit_flow_ensemble`), and for each ensemble size K the
mixture of the first K flows is sampled in the SR (``--oversample`` per SR event) and
CATHODE's k-fold classifier and excess test are run: SR events above the 99th percentile
of the held-out samples' scores, against Binomial(N, 1 %). ``--idealized`` adds the same
test with true background samples (the calibration of the test itself).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/cathode_null.py --seeds 21 22 23 24 25 --ensembles 1 3 5

Results per seed are cached as JSON in ``--cache``; prints one JSON line with the counts
and one-sided binomial p-values per seed and pooled over seeds, per ensemble size.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np


def one(seed: int, n_background: int, ensembles: list[int], oversample: int, idealized: bool) -> dict:
    import torch

    from rarefy.anomaly.cathode import Cathode, ClassifierSettings, FlowEnsemble, FlowSettings, kfold_classify, null_test
    from rarefy.anomaly.data import BumpHunt

    torch.set_num_threads(1)
    hunt = BumpHunt()
    data = hunt.sample(n_background, 0.0, np.random.default_rng([seed, 0]))
    sr = hunt.in_sr(data.m)
    k_max = max(ensembles)
    t0 = time.perf_counter()
    cath = Cathode(hunt.sr, flow=FlowSettings(ensemble=k_max), oversample=oversample, seed=seed)
    flows = cath.fit_background(data.m, data.x).flows
    out: dict = {"seed": seed, "flow_s": time.perf_counter() - t0, "flow_epochs": [len(f.history) for f in flows]}
    for k in ensembles:
        t1 = time.perf_counter()
        _, xs = cath.sample_background(FlowEnsemble(flows[:k]), data.m[sr])
        r = kfold_classify(data.x[sr], xs, ClassifierSettings(), seed, name=f"CATHODE K={k}")
        out[f"K{k}"] = {**null_test(r.scores1, r.fold1, r.scores0, r.fold0), "seconds": time.perf_counter() - t1}
    if idealized:
        ref = hunt.sample_background(oversample * int(sr.sum()), np.random.default_rng([seed, 98]), hunt.sr)
        r = kfold_classify(data.x[sr], ref.x, ClassifierSettings(), seed, name="idealized")
        out["idealized"] = null_test(r.scores1, r.fold1, r.scores0, r.fold0)
    out["wall_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    from scipy.stats import binom

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23, 24, 25])
    ap.add_argument("--ensembles", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--oversample", type=int, default=4)
    ap.add_argument("--n-background", type=int, default=150_000)
    ap.add_argument("--idealized", action="store_true")
    ap.add_argument("--cache", type=Path, default=Path("benchmarks/.cache/cathode_null"))
    ap.add_argument("--shard", default="0/1", help="I/N: run only every N-th seed starting at I")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.cache.mkdir(parents=True, exist_ok=True)
    i_shard, n_shard = (int(v) for v in args.shard.split("/"))
    tag = f"n{args.n_background}_o{args.oversample}_K{'-'.join(map(str, args.ensembles))}"
    rows = {}
    for j, seed in enumerate(args.seeds):
        path = args.cache / f"{tag}_s{seed}.json"
        if not path.exists() and j % n_shard == i_shard and not args.summary_only:
            r = one(seed, args.n_background, args.ensembles, args.oversample, args.idealized)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(r))
            os.replace(tmp, path)
        if path.exists():
            rows[seed] = json.loads(path.read_text())
    out: dict = {"benchmark": "cathode_null", "n_background": args.n_background, "oversample": args.oversample,
                 "seeds": sorted(rows), "per_seed": rows, "pooled": {}}
    keys = [f"K{k}" for k in args.ensembles] + (["idealized"] if args.idealized else [])
    for key in keys:
        have = [r[key] for r in rows.values() if key in r]
        if have:
            n, above = sum(h["events"] for h in have), sum(h["above"] for h in have)
            out["pooled"][key] = {"events": n, "above": above, "expected": 0.01 * n,
                                  "p_value": float(binom.sf(above - 1, n, 0.01))}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
