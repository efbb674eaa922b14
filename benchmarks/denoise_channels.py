"""Does a trained moderator denoiser get each capture channel's design dependence right?

Prints ONE JSON line. The moderator's capture probability given the track record
(docs/moderator.md) has two live channels:

* fast neutrons (``thermalised = 0``): ``t = G·f_fast(E)``, no design dependence at all;
* escaped thermal neutrons (``thermalised = escaped = 1``): ``t = G·0.12·exp(−(R − 45 cm)/30 cm)``,
  a factor of ~100 between radius 92 and 230 cm. This channel sets the rate of the most
  extreme designs (thin panels close to the array), and so the spread of the HF rate that
  ``benchmarks/hf_budget.py`` is judged against.

The script draws ``--events`` LF neutrons with their track at one mid design, then moves
only the radius (the φ and track of every event stay fixed) and compares, per channel, the
denoiser's mean probability with the exact ``capture_probability``. Keys:
``<channel>_truth`` / ``<channel>_model`` (mean per-event probability at each radius in
``radii``) and ``<channel>_slope_ratio``: the model's log-slope in radius over the true one
(least squares over the radii; 1 is right, 0 means the model sees no radius dependence;
for ``fast`` the true slope is 0, so the model's slope itself is reported as
``fast_log_slope``, per cm).

Run: ``python benchmarks/denoise_channels.py MODEL_DIR [MODEL_DIR ...]`` with the training
folder(s) of ``rarefy train`` (several: an ensemble, averaged as ``rarefy denoise`` does;
for an ensemble run, its ``member-*`` folders).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml

import rarefy
from rarefy.denoise import average_scores, score
from rarefy.denoise.data import EventData

RADII = (92.0, 120.0, 150.0, 190.0, 230.0)
ROOT = Path(__file__).resolve().parents[1]
PHI = list(yaml.safe_load((ROOT / "examples" / "moderator" / "denoise.yaml").read_text())["denoise"]["phi"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path, help="training folders (model.pt) of rarefy train")
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sim = rarefy.simulators.get("moderator")
    names = sim.space.names
    base = dict(zip(names, (150.0, 5.0, 40.0, 10.0, 10.0)))   # feasible, mid-range
    table = sim.simulate(base, args.events, "lf", seed=args.seed, with_truth=True).table.to_pandas()
    th, es = table["thermalised"].to_numpy(), table["escaped"].to_numpy()
    out: dict[str, object] = {"design": base, "radii": list(RADII), "events": args.events,
                              "models": [str(m) for m in args.models]}
    for channel, mask in (("fast", th == 0), ("escaped", (th == 1) & (es == 1))):
        sub = table[mask]
        phi = sub[PHI].to_numpy(np.float32)
        truth, model = [], []
        for radius in RADII:
            theta = {**base, "radius": radius}
            truth.append(float(np.mean(sim.capture_probability(theta, sub))))
            data = EventData(np.array([[theta[n] for n in names]]), phi, np.zeros(len(sub), np.float32),
                             np.array([0, len(sub)]), ["r-0"], list(names), PHI, ["lf"], None)
            model.append(float(average_scores([score(m, data, seed=1) for m in args.models]).p.mean()))
        out[f"{channel}_events"] = int(mask.sum())
        out[f"{channel}_truth"] = [float(f"{v:.4g}") for v in truth]
        out[f"{channel}_model"] = [float(f"{v:.4g}") for v in model]
        slope_model = float(np.polyfit(RADII, np.log(model), 1)[0])
        if channel == "fast":
            out["fast_log_slope"] = float(f"{slope_model:.4g}")
        else:
            out[f"{channel}_slope_ratio"] = float(f"{slope_model / np.polyfit(RADII, np.log(truth), 1)[0]:.4g}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
