"""The model-zoo bench on the moderator events; prints ONE JSON line.

Runs ``rarefy.bench(CONFIG, OUT)`` (default ``examples/moderator/bench.yaml``: the campaign is
simulated into ``OUT/events`` when ``bench.run_dir`` is not set) and reports

- ``wall_s`` / ``cpu_s``: the whole call (simulation, loading, every backend), seconds of
  wall-clock and of process CPU (all threads; the campaign runs in-process, ``executor: sync``);
- ``wall_simulate_s``: of which simulating (0 when ``OUT/events`` is already complete);
- ``backends``: ``bench.json`` as written (per backend: pr_auc, roc_auc,
  precision_at_recall_0.40 / 0.48, ece, train_s, score_s);
- ``failed``: backends that raised, with the error;
- ``data``: events / positives / rate per split; ``loadavg_start`` / ``loadavg_end``.

Acceptance: on the 1e-4-level set the whole bench takes at most 20 minutes on
2 CPU cores. Usage: ``python benchmarks/zoo_bench.py [--config PATH] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import rarefy

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "examples" / "moderator" / "bench.yaml"))
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="zoo-bench-"))
    load0 = os.getloadavg()[0]
    t_sim = [0.0]
    stage_t: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "simulate":
            if done == 0:
                stage_t["sim"] = time.perf_counter()
            else:
                t_sim[0] = time.perf_counter() - stage_t["sim"]

    w0, c0 = time.perf_counter(), time.process_time()
    result = rarefy.bench(args.config, out, progress=progress)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(json.dumps({"benchmark": "zoo_bench", "config": os.path.relpath(args.config, ROOT), "out": str(out),
                      "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "wall_simulate_s": round(t_sim[0], 1),
                      "backends": {k: {m: (None if v is None else float(f"{v:.4g}")) for m, v in e.items()}
                                   for k, e in result.metrics.items()},
                      "failed": result.failed, "data": result.meta["data"],
                      "loadavg_start": round(load0, 2), "loadavg_end": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
