"""Acceptance run of the denoiser; prints ONE JSON line.

Runs the three steps of ``examples/moderator/denoise.yaml`` through the Python API::

    rarefy.simulate(config, out)        # 200 + 50 LF runs of 50,000 neutrons, 8 HF runs
    rarefy.train_denoiser(config, out)  # the denoiser on the 200 train/val LF runs
    rarefy.denoise_run(out)             # lf-denoised, hf-denoised rows in out/rates.parquet

then compares, on the held-out LF runs (``split == "test"``), the denoised rate
(``lf-denoised``) and the raw rate k/n (``lf``) with the exact expected rate
``moderator.expected_rate(θ, "lf")`` (per neutron):

- ``pearson_denoised`` / ``pearson_raw``: Pearson r with the expected rate;
- ``mse_denoised`` / ``mse_raw``: mean squared error against the expected rate after an affine
  map ``a + b·estimate`` fitted (least squares) on the ``split == "train"`` runs;
  ``mse_ratio = mse_raw / mse_denoised``;
- ``pearson_oracle`` / ``mse_oracle`` / ``mse_ratio_oracle``: the same for the *oracle*
  rate, the exact per-event capture probability ``t(θ, φ)`` averaged over each run's own
  events — what a perfect denoiser would output, so the bound for any learner (it keeps
  only the φ-sampling noise of the run's events);
- ``wall_simulate_s``, ``wall_train_s``, ``wall_denoise_s``, ``wall_total_s``: seconds per
  step (the expected rates, ~0.1 s per design, are not counted);
- ``loadavg_start`` / ``loadavg_end``: 1-minute load average of the machine (shared cores).

Usage: ``python benchmarks/denoise_acceptance.py [--out DIR] [--config PATH] [--threads 2] [--set KEY=VALUE ...]``
(``--set denoise.model.kind=cnp`` trains a conditional neural process instead of the factorised
classifier); ``--out`` of an existing run resumes: finished steps are cheap to repeat;
``--evaluate-only --out DIR`` scores an existing, denoised run directory without re-running
any step and prints no timings; a run directory of an older version, with ``lf-cnp`` rows,
is read too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

import rarefy
from rarefy import simulators
from rarefy.data.rundir import denoised_base

log = logging.getLogger("denoise_acceptance")

ROOT = Path(__file__).resolve().parents[1]


def _affine_mse(est_fit: np.ndarray, truth_fit: np.ndarray, est: np.ndarray, truth: np.ndarray) -> float:
    """MSE of ``a + b·est`` against ``truth``, with (a, b) fitted by least squares on the fit set."""
    b, a = np.polyfit(est_fit, truth_fit, 1)
    return float(np.mean((a + b * est - truth) ** 2))


def oracle_rates(run_dir: Path, frame: pd.DataFrame) -> np.ndarray:
    """Exact ``t(θ, φ)`` averaged over each run's own events (rows of ``frame``: θ columns, ``run_id``)."""
    sim = simulators.get("moderator")
    names = list(sim.space.names)
    out = []
    for rid, theta in zip(frame.index.astype(str), frame[names].to_numpy(float)):
        table = pq.read_table(rarefy.EventStore.shard_path(run_dir, rid), columns=list(sim.phi_names))
        phi = {c: table.column(c).to_numpy().astype(np.float64) for c in sim.phi_names}
        out.append(float(np.mean(sim.capture_probability(dict(zip(names, theta)), phi))))
    return np.asarray(out)


def evaluate(run_dir: Path, fidelity: str = "lf") -> dict[str, float]:
    """Pearson r and affine-mapped MSE of ``<fidelity>-denoised``, raw k/n and the oracle against the exact expected rate."""
    frame = pd.read_parquet(run_dir / "rates.parquet")
    sim = simulators.get("moderator")
    raw = frame[frame["fidelity"] == fidelity].set_index("run_id")
    den = frame[frame["fidelity"].astype(str).map(denoised_base) == fidelity].set_index("run_id")
    runs = raw.index.intersection(den.index)
    raw, den = raw.loc[runs], den.loc[runs]
    names = list(sim.space.names)
    truth = np.array([sim.expected_rate(dict(zip(names, row)), fidelity) for row in raw[names].to_numpy(float)])
    split = raw["split"].to_numpy()
    test, train = split == "test", split == "train"
    out: dict[str, float] = {"n_test": int(test.sum()), "n_train": int(train.sum())}
    for key, est in (("denoised", den["rate"].to_numpy(float)), ("raw", raw["rate"].to_numpy(float)),
                     ("oracle", oracle_rates(run_dir, raw))):
        out[f"pearson_{key}"] = float(np.corrcoef(est[test], truth[test])[0, 1])
        out[f"mse_{key}"] = _affine_mse(est[train], truth[train], est[test], truth[test])
        out[f"pearson_{key}_train"] = float(np.corrcoef(est[train], truth[train])[0, 1])
    out["mse_ratio"] = out["mse_raw"] / out["mse_denoised"]
    out["mse_ratio_oracle"] = out["mse_raw"] / out["mse_oracle"]
    out["truth_mean"] = float(truth[test].mean())
    out["truth_cv"] = float(truth[test].std() / truth[test].mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "examples" / "moderator" / "denoise.yaml"))
    ap.add_argument("--out", default=None, help="run directory (default: a fresh temporary folder)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training and scoring")
    ap.add_argument("--evaluate-only", action="store_true", help="only score the existing run directory --out")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, as 'rarefy --set' (e.g. denoise.model.kind=cnp)")
    args = ap.parse_args()
    if args.evaluate_only:
        if not args.out:
            ap.error("--evaluate-only needs --out")
        result = {"run_dir": args.out, **evaluate(Path(args.out))}
        print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in result.items()}))
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)   # the LocalCluster is chatty
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="rarefy-denoise-")) / "run"
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    sim = rarefy.simulate(args.config, out, progress=False, overrides=args.overrides)
    t1 = time.perf_counter()
    tr = rarefy.train_denoiser(args.config, out, overrides=args.overrides)
    t2 = time.perf_counter()
    dn = rarefy.denoise_run(out)
    t3 = time.perf_counter()
    load1 = os.getloadavg()[0]
    result: dict[str, object] = {"run_dir": str(out), "runs": sim.n_done, "overrides": args.overrides}
    result.update(evaluate(out))
    result.update(wall_simulate_s=round(t1 - t0, 1), wall_train_s=round(t2 - t1, 1), wall_denoise_s=round(t3 - t2, 1),
                  wall_total_s=round(t3 - t0, 1), epochs_run=tr.train.epochs_run, best_epoch=tr.train.best_epoch,
                  events_scored=dn.n_events, cpu_count=os.cpu_count(), threads=args.threads,
                  loadavg_start=round(load0, 2), loadavg_end=round(load1, 2))
    print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in result.items()}))


if __name__ == "__main__":
    main()
