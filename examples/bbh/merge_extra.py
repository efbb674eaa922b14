"""Fold the runs of simulate-extra.yaml into examples/bbh/data (see simulate-extra.yaml).

    python examples/bbh/merge_extra.py runs/bbh-extra

Writes, atomically:

* ``data/rates_extra.parquet``: the extra campaign's rates with run ids prefixed ``x-``
  (both campaigns number their runs from run-00000) and a ``split`` column: ``test`` for
  its HF runs (held out by benchmarks/bbh_coverage.py), ``train`` for its LF runs.
  Only finished runs are included (a campaign stopped early gives a smaller table).
* ``data/delays.parquet``: one row per simulated BBH merger of both campaigns (θ,
  ``fidelity``, ``run_id``, ``t_merge_myr``): the delay-time distribution of the full
  merger-rate model (``infer.rate_model: full``), from every event shard at hand
  (``data/events`` of the first campaign and all shards of the extra one).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from rarefy.io import atomic_path
from rarefy.simulators.cosmic import THETA_NAMES

HERE = Path(__file__).resolve().parent


def _write(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def main(run_dir: str) -> None:
    run = Path(run_dir)
    rates = pd.read_parquet(run / "rates.parquet")
    rates["run_id"] = "x-" + rates["run_id"].astype(str)
    rates["split"] = rates["fidelity"].map({"hf": "test", "lf": "train"})
    _write(rates, HERE / "data" / "rates_extra.parquet")
    rows = []
    for prefix, folder in (("", HERE / "data" / "events"), ("x-", run / "events")):
        for shard in sorted(folder.glob("*.parquet")):
            ev = pd.read_parquet(shard, columns=[*THETA_NAMES, "fidelity", "outcome", "t_merge_myr"])
            ev = ev[ev["outcome"] == 1].drop(columns="outcome")
            ev["run_id"] = prefix + shard.stem
            rows.append(ev)
    delays = pd.concat(rows, ignore_index=True)
    _write(delays, HERE / "data" / "delays.parquet")
    print(f"{len(rates)} extra runs ({(rates.fidelity == 'hf').sum()} HF test), {len(delays)} merger delay times")


if __name__ == "__main__":
    main(sys.argv[1])
