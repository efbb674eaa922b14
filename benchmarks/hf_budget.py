"""What the closed loop buys for a fixed nominal budget; prints ONE JSON line.

On the built-in ``moderator`` (exact expected rates known), ``examples/moderator/run.yaml``
is run (in temporary run directories) with the same nominal CPU-hour budget under
strategies that differ only in the acquisition:

* ``mf_<kind>``: cost-aware multi-fidelity acquisition (LF or HF by value per CPU-hour);
* ``hf_<kind>``: target-fidelity (HF) runs only (``cost_aware: false``).

For each: the simulator's exact HF rate at the loop's θ*, its percentile among
``--reference`` random feasible designs (exact rates; lower is better), the reduction vs
the no-moderator baseline, the verified and predicted rates, the nominal HF and total
CPU-hours, and the wall time. Keys: ``<strategy>_<quantity>``; ``random_p5`` and
``random_median`` are the 5th percentile and median of the exact HF rate over the
random designs.

Run: ``python benchmarks/hf_budget.py [--kinds ei ivr] [--budget 4000] [--iterations 6] [--reference 300]``
(each loop takes 2-4 minutes on 2 busy cores; the reference rates about 0.3 s per design).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

import rarefy
from rarefy.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]


def run_strategy(raw: dict, out: Path, kind: str, cost_aware: bool, budget: float, iterations: int) -> dict:
    raw = json.loads(json.dumps(raw))
    raw["acquisition"].update(kind=kind, cost_aware=cost_aware)
    raw["loop"].update(budget_cpu_h=budget, iterations=iterations)
    cfg = config_from_dict(raw, base=ROOT / "examples" / "moderator")
    t0 = time.perf_counter()
    res = rarefy.run(cfg, out, progress=False).result
    return {"wall_s": time.perf_counter() - t0, **res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", default=["ei"], choices=["ivr", "maxvar", "ei", "lcb"])
    ap.add_argument("--budget", type=float, default=4000.0, help="nominal CPU-hours per loop, verification included")
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--reference", type=int, default=300, help="random feasible designs for the percentile")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    raw = yaml.safe_load((ROOT / "examples" / "moderator" / "run.yaml").read_text())
    raw["seed"] = args.seed
    sim = rarefy.simulators.get("moderator")
    designs = sim.space.sample(args.reference, method="random", seed=12345).to_dict(orient="records")
    ref = np.array([sim.expected_rate(d, "hf") for d in designs])
    out: dict[str, float | int | str] = {"budget_cpu_h": args.budget, "iterations": args.iterations,
                                         "random_p5": float(np.percentile(ref, 5)),
                                         "random_median": float(np.median(ref)), "reference": args.reference}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            for prefix, cost_aware in (("mf", True), ("hf", False)):
                name = f"{prefix}_{kind}"
                r = run_strategy(raw, Path(tmp) / name, kind, cost_aware, args.budget, args.iterations)
                exact = float(r["expected_rate"])
                out[f"{name}_exact_rate"] = exact
                out[f"{name}_percentile"] = float(100.0 * np.mean(ref < exact))
                out[f"{name}_reduction_exact"] = 1.0 - exact / sim.baseline_rate("hf")
                out[f"{name}_verified_rate"] = r["verified_rate"]
                out[f"{name}_predicted_rate"] = r["predicted_rate"]
                out[f"{name}_predicted_sigma"] = r["predicted_sigma"]
                out[f"{name}_hf_cpu_h"] = r["cost_cpu_h"].get("hf", 0.0)
                out[f"{name}_total_cpu_h"] = r["cost_cpu_h"]["total"]
                out[f"{name}_wall_s"] = r["wall_s"]
    print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
