"""Unfolding methods on known-truth pseudo-experiments: accuracy, calibration of the uncertainty, wall time.

For each seed one pseudo-experiment of the case (``--case gaussian``: :class:`rarefy.unfold.GaussianToy`;
``--case xlzd``: :class:`rarefy.unfold.xlzd.XLZDCase`, NEST) is drawn with ``--n-sim`` simulated and
``--n-data`` measured events; each method of ``--methods`` unfolds it with the same seed.
Histograms use the case's default binning (Gaussian: 20 equal bins over μ ± 3σ of the
truth; XLZD: 11 bins of 1 keV over 2–13 keV), and IBU bins the gen level the same way.

Per method, over the seeds:

* ``wasserstein``: mean Wasserstein-1 distance of the unfolded column to ``--n-truth`` fresh
  draws of the case's truth distribution (column unit). Not to the measured events' hidden
  gen values: those passed the detector and follow ε·p_true, not p_true;
* ``coverage``: per-bin coverage at 1 σ pooled over bins and seeds (calibrated Gaussian
  errors: 0.683), against the exact truth probabilities;
* ``chi2_ndf``: Σ over seeds and bins of (p̂ − p)²/sd² divided by the number of bins with
  sd > 0 (:func:`rarefy.unfold.metrics.chi2_per_ndf`; bins where the members agree exactly
  add nothing and are not counted); per seed also the per-bin pulls (p̂ − p)/sd;
* ``mean_rel_error``, ``width_rel_error``: mean over seeds of the relative errors of the
  unfolded mean and width (and their RMS, ``*_rms``);
* ``spread_vs_error``: RMS of the actual per-bin error |p̂ − p| over RMS of the reported
  uncertainty (the members' sd, or the ensemble mean's error for replicated members), pooled
  (1 when the uncertainty matches the error; > 1: overconfident);
* ``wall_s``: mean seconds per unfold (this process, one thread).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/unfold.py --case gaussian --seeds 1001-1020 --methods ibu

Evaluation seeds: Gaussian 1001–1020, XLZD 2001–2003; tune on development seeds 1–10 only.
``--settings '{"ibu": {"iterations": 8}}'`` sets a method's keyword settings. Prints ONE
JSON line (with a per-seed table per method); logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time

import numpy as np


def parse_seeds(text: list[str]) -> list[int]:
    """``1001-1020`` ranges and single seeds."""
    out: list[int] = []
    for part in text:
        for item in part.split(","):
            if "-" in item:
                a, b = item.split("-")
                out += list(range(int(a), int(b) + 1))
            elif item:
                out.append(int(item))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=["gaussian", "xlzd"], default="gaussian")
    ap.add_argument("--seeds", nargs="+", default=["1-10"])
    ap.add_argument("--methods", default="ibu", help="comma-separated method names")
    ap.add_argument("--n-sim", type=int, default=20_000)
    ap.add_argument("--n-data", type=int, default=5_000)
    ap.add_argument("--n-truth", type=int, default=100_000, help="fresh truth draws per seed for W1")
    ap.add_argument("--bins", type=int, default=None, help="histogram bins (default: the case's)")
    ap.add_argument("--settings", default="{}", help="JSON: method name -> keyword settings")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from rarefy.unfold import GaussianToy
    from rarefy.unfold import metrics as M
    from rarefy.unfold.registry import build_method

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - numpy-only methods
        pass
    if args.case == "gaussian":
        case = GaussianToy()
    else:
        from rarefy.unfold.xlzd import XLZDCase

        case = XLZDCase()
    col = case.names[0]
    edges = case.default_edges(args.bins) if args.bins else case.default_edges()
    p_true = case.bin_probabilities(edges)
    truth_m = case.moments()
    settings = json.loads(args.settings)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = parse_seeds(args.seeds)
    rows: dict[str, list[dict]] = {m: [] for m in methods}
    t_case = 0.0
    for seed in seeds:
        t0 = time.perf_counter()
        problem, _ = case.problem(args.n_sim, args.n_data, seed)
        truth_x = case.sample_truth(args.n_truth, np.random.default_rng([int(seed), 97]))
        t_case += time.perf_counter() - t0
        for name in methods:
            s = dict(settings.get(name, {}))
            if name == "ibu" and not {"edges", "range", "bins"} & set(s):
                s["edges"] = edges.tolist()
            method = build_method(name, s)
            t1 = time.perf_counter()
            res = method.unfold(problem, seed)
            wall = time.perf_counter() - t1
            mean, sd = res.histogram(col, edges)
            me = M.moment_errors(res, col, truth_m["mean"], truth_m["width"])
            ndf = int(np.sum(sd > 0))
            chi2_ndf = M.chi2_per_ndf(mean, sd, p_true)
            rows[name].append({
                "seed": seed, "wall_s": wall, "wasserstein": M.wasserstein(res, col, truth_x),
                "covered": int(np.sum(np.abs(mean - p_true) <= sd)), "bins": len(p_true),
                "chi2_ndf": chi2_ndf, "ndf": ndf, "chi2": chi2_ndf * ndf if ndf else 0.0,
                "pulls": [round(float((m - t) / s_), 3) if s_ > 0 else None for m, t, s_ in zip(mean, p_true, sd)],
                "sq_err": float(np.sum((mean - p_true) ** 2)), "sq_sd": float(np.sum(sd ** 2)),
                "mean_rel_error": me["mean_rel_error"], "width_rel_error": me["width_rel_error"],
            })
            logging.getLogger("unfold-bench").warning("%s seed %d: W1 %.4g, covered %d/%d, %.2f s", name, seed,
                                                      rows[name][-1]["wasserstein"], rows[name][-1]["covered"],
                                                      len(p_true), wall)
    table = {}
    for name, rs in rows.items():
        bins = sum(r["bins"] for r in rs)
        table[name] = {
            "wasserstein": float(np.mean([r["wasserstein"] for r in rs])),
            "coverage": sum(r["covered"] for r in rs) / bins,
            "chi2_ndf": sum(r["chi2"] for r in rs) / max(sum(r["ndf"] for r in rs), 1),
            "mean_rel_error": float(np.mean([r["mean_rel_error"] for r in rs])),
            "mean_rel_error_rms": float(math.sqrt(np.mean([r["mean_rel_error"] ** 2 for r in rs]))),
            "width_rel_error": float(np.mean([r["width_rel_error"] for r in rs])),
            "width_rel_error_rms": float(math.sqrt(np.mean([r["width_rel_error"] ** 2 for r in rs]))),
            "spread_vs_error": float(math.sqrt(sum(r["sq_err"] for r in rs) / max(sum(r["sq_sd"] for r in rs), 1e-300))),
            "wall_s": float(np.mean([r["wall_s"] for r in rs])),
            "settings": settings.get(name, {}),
            "per_seed": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in rs],
        }
    print(json.dumps({"case": args.case, "seeds": seeds, "n_sim": args.n_sim, "n_data": args.n_data,
                      "n_truth": args.n_truth, "column": col, "edges": edges.tolist(), "case_s_per_seed": t_case / max(len(seeds), 1),
                      "methods": table}))


if __name__ == "__main__":
    main()
