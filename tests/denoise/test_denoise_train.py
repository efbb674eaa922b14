"""Denoiser training: split by run, determinism, resume, early stopping, bad input, streaming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from denoise_synth import config, synth

from rarefy import DesignSpace
from rarefy.denoise import EventData, aggregate, load_model, parquet_shards, score, split_runs, train
from rarefy.nn.checkpoint import load_checkpoint
from rarefy.errors import InputError

SPACE = DesignSpace.from_bounds({"t": (0.0, 1.0)})


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)


def test_split_by_run_is_deterministic_and_disjoint() -> None:
    ids = [f"run{i}" for i in range(20)]
    a = split_runs(ids, (0.7, 0.15, 0.15), seed=4)
    assert a == split_runs(list(reversed(ids)), (0.7, 0.15, 0.15), seed=4)
    assert a != split_runs(ids, (0.7, 0.15, 0.15), seed=5)
    assert sorted(a[0] + a[1] + a[2]) == sorted(ids) and len(a[1]) == 3 and len(a[2]) == 3
    with pytest.raises(InputError):
        split_runs(ids, (0.0, 0.5, 0.5))


RESUME_CFG = config(imbalance=[{"epochs": 2, "positive_ratio": 0.2, "max_reuse": 3},
                               {"epochs": 2, "positive_ratio": 0.05}],
                    mixup={"enabled": True, "fraction": 0.1, "distribution": "beta", "a": 2.0, "b": 2.0},
                    early_stopping={"patience": 10})


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    data = synth()
    full = train(data, RESUME_CFG, out=tmp_path / "a", space=SPACE, seed=3)
    assert full.finished and full.epochs_run == 4
    part = train(data, RESUME_CFG, out=tmp_path / "b", space=SPACE, seed=3, stop_after_epochs=2)
    assert not part.finished and part.epochs_run == 2
    ck = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert ck["epoch"] == 2 and ck["phase"] == 1 and ck["generator"].dtype == torch.uint8
    assert not (tmp_path / "b" / "model.pt").exists()
    resumed = train(data, RESUME_CFG, out=tmp_path / "b", space=SPACE, seed=3)
    assert resumed.finished and resumed.epochs_run == 4
    assert_same(weights(resumed.model), weights(full.model))
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in full.history])
    assert all(r["mixed"] > 0 for r in full.history)
    # a finished run is not trained again; a different seed in the same folder is refused
    again = train(data, RESUME_CFG, out=tmp_path / "b", space=SPACE, seed=3)
    assert again.epochs_run == 4 and len(again.history) == 4
    with pytest.raises(InputError, match="other data, config or seed"):
        train(data, RESUME_CFG, out=tmp_path / "b", space=SPACE, seed=4)
    # outputs: model file loads back to the same weights, tensorboard-free config wrote no events dir
    model, norm, cfg = load_model(tmp_path / "a")
    assert_same(weights(model), weights(full.model))
    assert cfg.mixup.enabled and (tmp_path / "a" / "history.json").exists()


def test_cosine_schedule_of_a_factorised_model_resumes_exactly(tmp_path: Path) -> None:
    data = synth()
    cfg = config(epochs=4, lr=0.01, lr_schedule="cosine", early_stopping={"enabled": False},
                 model={"kind": "factorised", "encoder": [8], "decoder": [16], "rank": 2, "design_widths": [4]})
    full = train(data, cfg, out=tmp_path / "a", space=SPACE, seed=5)
    assert [r["lr"] for r in full.history] == pytest.approx([0.01, 0.01 * (1 + 2 ** -0.5) / 2, 0.005,
                                                             0.01 * (1 - 2 ** -0.5) / 2])
    train(data, cfg, out=tmp_path / "b", space=SPACE, seed=5, stop_after_epochs=1)
    resumed = train(data, cfg, out=tmp_path / "b", space=SPACE, seed=5)
    assert resumed.finished and resumed.best_epoch == 3           # no early stopping: the last weights
    assert_same(weights(resumed.model), weights(full.model))
    model, _, loaded = load_model(tmp_path / "a")
    assert loaded.model.kind == "factorised" and loaded.model.design_widths == [4]
    assert_same(weights(model), weights(full.model))


def test_deterministic_for_a_seed() -> None:
    data = synth(4, 200)
    cfg = config(epochs=2, early_stopping={"enabled": False})
    a = train(data, cfg, space=SPACE, seed=1)
    b = train(data, cfg, space=SPACE, seed=1)
    c = train(data, cfg, space=SPACE, seed=2)
    assert_same(weights(a.model), weights(b.model))
    assert not torch.allclose(a.model.decoder[0].weight, c.model.decoder[0].weight)


def test_early_stopping_restores_best_weights() -> None:
    # labels independent of φ and few events: a wide net at a high learning rate overfits
    data = synth(4, 120, seed=2)
    data.y[:] = (np.random.default_rng(0).random(data.n) < 0.3).astype(np.float32)
    base = dict(model={"encoder": [64, 64], "decoder": [64, 64]}, lr=0.03, batch_size=64)
    res = train(data, config(epochs=30, early_stopping={"patience": 2}, **base), seed=0)
    assert res.stopped_early and res.epochs_run < 30
    vals = [r["val_loss"] for r in res.history]
    assert res.best_epoch == int(np.argmin(vals)) and res.best_epoch < res.epochs_run - 1
    # the same trajectory without early stopping, cut at the best epoch / at the last epoch
    no_es = {"enabled": False}
    at_best = train(data, config(epochs=res.best_epoch + 1, early_stopping=no_es, **base), seed=0)
    at_last = train(data, config(epochs=res.epochs_run, early_stopping=no_es, **base), seed=0)
    assert_same(weights(res.model), weights(at_best.model))
    assert not torch.allclose(res.model.decoder[0].weight, at_last.model.decoder[0].weight)


def test_bad_input_fails_before_training(tmp_path: Path) -> None:
    data = synth(4, 100)
    with pytest.raises(InputError, match="unknown loss 'hinge'; known losses: bce"):
        train(data, config(loss="hinge"), out=tmp_path / "o")
    with pytest.raises(InputError, match="no events"):
        EventData.from_arrays(np.zeros((0, 1)), np.zeros((0, 2)), np.zeros(0), [])
    with pytest.raises(InputError, match="no φ columns"):
        EventData.from_arrays(np.zeros((3, 1)), np.zeros((3, 0)), np.zeros(3), ["a"] * 3)
    with pytest.raises(InputError, match="outcome"):
        EventData.from_arrays(np.zeros((3, 1)), np.zeros((3, 1)), np.array([0, 2, 1]), ["a"] * 3)
    shard = tmp_path / "r0.parquet"
    pd.DataFrame({"t": [0.5] * 4, "e": [1.0, 2, 3, 4], "outcome": [0, 1, 0, 0], "run_id": "r0"}).to_parquet(shard)
    with pytest.raises(InputError, match=r"missing the column\(s\) \['z'\]"):
        train(parquet_shards([shard], ["t"], ["e", "z"]), config(), out=tmp_path / "o")
    empty = tmp_path / "r1.parquet"
    pd.DataFrame({"t": [], "e": [], "outcome": [], "run_id": []}).to_parquet(empty)
    with pytest.raises(InputError, match="no events"):
        train(parquet_shards([empty], ["t"], ["e"]), config(), out=tmp_path / "o")
    with pytest.raises(InputError, match="no events"):
        train(lambda: iter(()), config(), out=tmp_path / "o")
    with pytest.raises(InputError, match="needs validation runs"):
        train(synth(1, 100), config(), out=tmp_path / "o")
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_streaming_parquet_shards_train_score_aggregate(tmp_path: Path) -> None:
    data = synth(5, 200)
    paths = []
    for r, rid in enumerate(data.run_ids):
        lo, hi = data.run_starts[r], data.run_starts[r + 1]
        frame = pd.DataFrame({"t": data.theta[r, 0], "e": data.phi[lo:hi, 0], "z": data.phi[lo:hi, 1],
                              "outcome": data.y[lo:hi].astype(int), "run_id": rid})
        paths.append(tmp_path / f"{rid}.parquet")
        frame.to_parquet(paths[-1])
    source = parquet_shards(paths, ["t"], ["e", "z"], fidelity="lf")
    res = train(source, config(epochs=2, tensorboard=True), out=tmp_path / "out", space=SPACE)
    assert res.finished and np.isfinite([r["train_loss"] for r in res.history]).all()
    assert list((tmp_path / "out" / "tensorboard").glob("events.out.tfevents.*"))
    streamed = score(tmp_path / "out", source)
    in_memory = score(tmp_path / "out", data)
    # chunking changes the fold deal, not the model: both are valid probabilities of the same events
    assert streamed.n == in_memory.n == data.n and ((streamed.p > 0) & (streamed.p < 1)).all()
    table = aggregate(streamed, SPACE)
    assert table.fidelities == ["lf-denoised"] and len(table) == 5
    assert (table.frame["n"] == 200).all() and (table.frame["var"] > 0).all()
