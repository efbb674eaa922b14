"""Throughput of a RESuM-size conditional neural process (``kind: cnp``) on CPU; prints ONE JSON line.

Figures (samples = target events per second):

- ``step_train``: forward + backward + Adam step of the model alone, batch 3000
  targets, with the trainer's default context budget (1024 context events per batch);
- ``step_infer``: decoder-only scoring pass of 3000 targets (context already encoded);
- ``e2e_train``: :func:`rarefy.denoise.train` on in-memory data (sampling, context
  gathering, normalisation, loss, optimiser: one epoch of ``--batches`` batches);
- ``e2e_score``: :func:`rarefy.denoise.score` of every event (2 folds);
- ``stream_train`` / ``stream_score``: the same two, streaming the events from one Parquet
  shard per run (:func:`rarefy.denoise.parquet_shards`, read every epoch), the path for
  data larger than memory.

Usage: ``python benchmarks/cnp_throughput.py [--threads 2] [--events 1000000]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from rarefy import EventStore, EventTable
from rarefy.denoise import EventData, build_model, get_loss, parquet_shards, score, train


def _rate(fn, n_samples: int, repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return n_samples * repeats / (time.perf_counter() - t)


def _pipeline_rates(source: object, cfg: dict, n: int) -> tuple[float, float]:
    """Samples/s of one training epoch of :func:`train` on ``source`` and of scoring its ``n`` events."""
    res = train(source, cfg, seed=0)
    h0 = res.history[0]
    t = time.perf_counter()
    score(res, source)
    return h0["samples"] / h0["wall_s"], n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d_theta, d_phi, batch, n_groups, m = 2, 4, 3000, 32, 32

    model = build_model("cnp", d_theta, d_phi)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    loss_fn = get_loss("bce")
    ctx_x = torch.randn(n_groups, m, d_theta + d_phi)
    ctx_y = (torch.rand(n_groups, m) < 0.01).float()
    mask = torch.ones(n_groups, m, dtype=torch.bool)
    x = torch.randn(batch, d_theta + d_phi)
    grp = torch.randint(0, n_groups, (batch,))
    y = (torch.rand(batch) < 0.01).float()

    def step() -> None:
        mu, lv = model(ctx_x, ctx_y, mask, x, grp)
        loss = loss_fn(mu, lv, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with torch.no_grad():
        h = model.encode(ctx_x, ctx_y, mask)
        rep = model.pool(h, mask)

    @torch.no_grad()
    def infer() -> None:
        model.decode(model.target_features(h, ctx_x, mask, rep, x, grp))

    step_train = _rate(step, batch, args.repeats)
    step_infer = _rate(infer, batch, args.repeats * 3)

    rng = np.random.default_rng(0)
    per_run = args.events // args.runs
    n = per_run * args.runs
    data = EventData(theta=rng.random((args.runs, d_theta)), phi=rng.standard_normal((n, d_phi), dtype=np.float32),
                     y=(rng.random(n) < 1e-3).astype(np.float32), run_starts=np.arange(args.runs + 1) * per_run,
                     run_ids=[f"r{i:03d}" for i in range(args.runs)])
    cfg = {"epochs": 1, "batches_per_epoch": args.batches, "val_events_per_run": 1000, "progress": False,
           "tensorboard": False, "early_stopping": {"enabled": False}}
    e2e_train, e2e_score = _pipeline_rates(data, cfg, n)

    with tempfile.TemporaryDirectory() as tmp:   # one Parquet shard per run, as `rarefy simulate` writes them
        theta_cols, phi_cols = [f"t{j}" for j in range(d_theta)], [f"p{j}" for j in range(d_phi)]
        paths = []
        for r, rid in enumerate(data.run_ids):
            lo, hi = int(data.run_starts[r]), int(data.run_starts[r + 1])
            table = EventTable.from_arrays(dict(zip(theta_cols, data.theta[r])), dict(zip(phi_cols, data.phi[lo:hi].T)),
                                           data.y[lo:hi].astype(np.int8), run_id=rid)
            paths.append(EventStore.write_shard(tmp, rid, table))
        stream_train, stream_score = _pipeline_rates(parquet_shards(paths, theta_cols, phi_cols), cfg, n)
    print(json.dumps({
        "benchmark": "cnp_throughput", "threads": args.threads, "batch": batch,
        "params": sum(p.numel() for p in model.parameters()),
        "step_train_samples_per_s": round(step_train), "step_infer_samples_per_s": round(step_infer),
        "e2e_train_samples_per_s": round(e2e_train), "e2e_score_samples_per_s": round(e2e_score),
        "stream_train_samples_per_s": round(stream_train), "stream_score_samples_per_s": round(stream_score),
        "events": n, "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
