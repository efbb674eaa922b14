"""Does the surrogate depend on the rate's unit? One JSON line.

Copies the LEGEND example with its rate column multiplied by each scale c (the count-noise
variance rate²/captures scales with it), runs ``rarefy.fit(..., cv=K)`` on each copy and
reports the cross-validated MSE divided by c², its ratio to the unscaled MSE, and the 2σ
coverage. A unit-free surrogate gives a ratio of 1 at every scale.

Usage::

    python benchmarks/unit_invariance.py [--scales 1e-11 1e-15 1e6] [--cv 5] [--out runs/bench-units]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import pandas as pd
import yaml

import rarefy

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "legend" / "legend.yaml"


def scaled_copy(scale: float, folder: Path) -> Path:
    """The LEGEND config and data in ``folder``, with every fidelity's value column times ``scale``."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    values = {f["value"] for f in raw["fidelities"]}
    renamed = raw["data"].get("columns", {})
    columns = {src for src, name in renamed.items() if name in values} | values  # as named in the files
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for rel in raw["data"]["paths"]:
        frame = pd.read_csv(EXAMPLE.parent / rel)
        for col in columns & set(frame.columns):
            frame[col] = frame[col] * scale
        frame.to_csv(folder / Path(rel).name, index=False)
        paths.append(Path(rel).name)
    raw["data"]["paths"] = paths
    path = folder / "legend.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1e-11, 1e-15, 1e6])
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-units"))
    args = parser.parse_args()
    logging.getLogger("rarefy").setLevel(logging.WARNING)
    if args.out.exists():
        shutil.rmtree(args.out)
    t0 = time.perf_counter()
    rows = {}
    for scale in [1.0, *args.scales]:
        cfg = scaled_copy(scale, args.out / f"data-{scale:g}")
        res = rarefy.fit(cfg, args.out / f"fit-{scale:g}", cv=args.cv)
        m = res.cv.metrics
        rows[f"{scale:g}"] = {"mse_over_scale2": m["mse"] / scale**2, "coverage_2sigma": m["coverage_2sigma"]}
    ref = rows["1"]["mse_over_scale2"]
    for row in rows.values():
        row["ratio"] = row["mse_over_scale2"] / ref
    worst = max(abs(r["ratio"] - 1) for r in rows.values())
    print(json.dumps({"benchmark": "unit_invariance", "cv": args.cv, "scales": rows,
                      "max_relative_change": worst, "wall_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
