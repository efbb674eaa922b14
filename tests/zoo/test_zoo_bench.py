"""The model-zoo registry, config checks and ``rarefy bench`` end to end on a tiny toy campaign."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import rarefy
from rarefy.cli import app
from rarefy.config import load_config
from rarefy.errors import InputError
from rarefy.zoo import registry
from rarefy.zoo.base import EventBatch
from rarefy.jobs.bench import METRIC_KEYS, apply_imbalance
from rarefy.zoo.isolation_forest import IsolationForestBackend
from rarefy.zoo.metrics import roc_auc
from rarefy.zoo.supervised import TorchModuleBackend

runner = CliRunner()

SPACE = {"parameters": {"x": {"low": 0, "high": 1}, "y": {"low": 0, "high": 1}}}
FIDS = [{"name": "lf", "value": "rate", "filter": {"fidelity": "lf"}, "noise": {"counts": "k", "events": "n"}}]


def config(backends: list[dict], **bench) -> dict:
    return {"name": "toy-bench", "seed": 3, "space": SPACE, "fidelities": FIDS,
            "simulator": {"kind": "python", "target": "rarefy.simulators.testing:toy"},
            "campaign": {"runs": [{"fidelity": "lf", "runs": 12, "events": 3000}], "executor": {"kind": "sync"}},
            "bench": {"backends": backends, "split": [0.5, 0.25, 0.25], **bench}}


def write(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


# ------------------------------------------------------------------ registry
def test_registry_names_and_lazy_import():
    assert set(registry.BUILTIN) == {"cnp", "attentive_np", "autoencoder", "vae", "isolation_forest", "flow_ratio",
                                     "ft_transformer", "bdt_ft_transformer", "nre"}
    assert registry.get_backend("isolation_forest") is IsolationForestBackend
    with pytest.raises(InputError, match="unknown backend 'nope'; known: .*isolation_forest"):
        registry.get_backend("nope")
    with pytest.raises(InputError, match="needs an 'import_path'"):
        registry.get_backend("custom")


def test_register_by_import_path_and_missing_module(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register("first_phi", "zoo_custom_module:FirstPhiBackend")
    cls = registry.get_backend("first_phi")
    assert cls.__name__ == "FirstPhiBackend"
    b = registry.make_backend("first_phi", {"scale": 2.0}, seed=1)
    ev = EventBatch(np.array([[0.5, 3.0]], np.float32), np.zeros(1, np.uint8), np.zeros(1, np.int64), ("t", "u"), 1)
    assert b.fit(ev).score(ev)[0] == pytest.approx(6.0)
    registry.register("ghost", "rarefy.zoo.does_not_exist:Ghost")
    with pytest.raises(InputError, match="backend 'ghost' is not available: cannot import module"):
        registry.get_backend("ghost")
    with pytest.raises(InputError, match="must look like"):
        registry.register("bad", "no_colon_here")


def test_custom_import_path_kinds():
    cls, factory = registry.resolve("custom", "zoo_custom_module:TinyMLP")
    assert cls is TorchModuleBackend
    b = factory(seed=0, module={"hidden": 4}, epochs=1)
    assert isinstance(b, TorchModuleBackend) and b.options.module == {"hidden": 4}
    assert registry.resolve("custom", "zoo_custom_module:FirstPhiBackend")[0].__name__ == "FirstPhiBackend"
    with pytest.raises(InputError, match="neither a backend class"):
        registry.resolve("custom", "math:pi")
    with pytest.raises(InputError, match="cannot import module 'no_such_module_xyz'"):
        registry.resolve("custom", "no_such_module_xyz:Net")
    with pytest.raises(InputError, match="has no attribute 'Nope'"):
        registry.resolve("custom", "zoo_custom_module:Nope")


# ------------------------------------------------------------------ config
def test_config_rejects_bad_backend_paths(tmp_path):
    with pytest.raises(InputError, match="needs an 'import_path'"):
        load_config(write(tmp_path / "b.yaml", config([{"name": "custom"}])))
    with pytest.raises(InputError, match="only for 'custom'"):
        load_config(write(tmp_path / "c.yaml", config([{"name": "cnp", "import_path": "a:B"}])))
    with pytest.raises(InputError, match="labels must be unique"):
        load_config(write(tmp_path / "d.yaml", config([{"name": "isolation_forest"}, {"name": "isolation_forest"}])))


@pytest.mark.parametrize("backends, message", [
    ([{"name": "transformerz"}], r"bench.backends.0 \(transformerz\): unknown backend 'transformerz'"),
    ([{"name": "isolation_forest"}, {"name": "custom", "import_path": "no_such_module_xyz:Net"}],
     r"bench.backends.1 \(custom\): cannot import module 'no_such_module_xyz'"),
    ([{"name": "isolation_forest", "options": {"n_trees": 5}}], r"bench.backends.0 \(isolation_forest\): .*bad options \['n_trees'\]"),
    ([{"name": "custom", "import_path": "zoo_custom_module:TinyMLP", "options": {"epochs": 0}}],
     r"bench.backends.0 \(custom\): .*epochs"),
])
def test_bad_bench_config_fails_before_any_simulation_or_training(tmp_path, backends, message):
    cfg = write(tmp_path / "bench.yaml", config(backends))
    out = tmp_path / "out"
    res = runner.invoke(app, ["bench", str(cfg), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert message.split(" ")[0].replace("\\", "") in res.output
    with pytest.raises(InputError, match=message):
        rarefy.bench(cfg, out)
    assert not (out / "events").exists() and not (out / "bench.json").exists()


# ------------------------------------------------------------------ bench
def test_apply_imbalance_keeps_the_requested_positives():
    y = np.zeros(10000, np.uint8)
    y[:100] = 1
    b = EventBatch(np.zeros((10000, 1), np.float32), y, np.zeros(10000, np.int64), ("a",), 0)
    parts = apply_imbalance({"train": b, "val": b.subset(np.arange(1000)), "test": b}, 1e-3, [5, 2, 20], seed=0)
    assert [int(p.y.sum()) for p in parts.values()] == [10, 2, 20]      # round(1e-3·1e4)=10; min 2 of 100; min 20
    assert len(parts["train"]) == 10000 - 90 and int((parts["train"].y == 0).sum()) == 9900


def test_bench_custom_model_by_import_path_end_to_end(tmp_path):
    """Acceptance: a user's torch module from a test module, named only by import path, is benched."""
    backends = [
        {"name": "custom", "label": "tiny_mlp", "import_path": "zoo_custom_module:TinyMLP",
         "options": {"module": {"hidden": 8}, "epochs": 6, "batches_per_epoch": 30, "batch_size": 512, "lr": 0.01,
                     "tensorboard": False}},
        {"name": "custom", "label": "first_phi", "import_path": "zoo_custom_module:FirstPhiBackend"},
        {"name": "isolation_forest", "options": {"n_estimators": 50}},
    ]
    cfg = write(tmp_path / "bench.yaml", config(backends))
    out = tmp_path / "out"
    res = runner.invoke(app, ["bench", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "tiny_mlp" in res.output and "PR-AUC" in res.output
    result = json.loads((out / "bench.json").read_text())
    assert list(result) == ["tiny_mlp", "first_phi", "isolation_forest"]
    for entry in result.values():
        assert tuple(entry) == METRIC_KEYS
        assert entry["train_s"] >= 0 and entry["score_s"] >= 0
    meta = json.loads((out / "bench_meta.json").read_text())
    split = meta["split"]
    assert not set(split["train"]) & set(split["test"]) and not set(split["val"]) & set(split["test"])
    assert sum(d["events"] for d in meta["data"].values()) == 12 * 3000
    assert meta["backends"]["first_phi"]["ece_on"] == "platt(val)"
    assert meta["backends"]["tiny_mlp"]["ece_on"] == "probability"
    assert (out / "pr_curves.png").stat().st_size > 1000
    assert (out / "backends" / "tiny_mlp" / "model" / "backend.pt").exists()
    # toy: P(signal | u) ∝ u, so scoring by u gives ROC-AUC ≈ 2/3; the learnt MLP gets there too
    assert 0.6 < result["first_phi"]["roc_auc"] < 0.75
    assert result["tiny_mlp"]["roc_auc"] > 0.6
    assert result["tiny_mlp"]["ece"] < 0.05
    # the figures are those of the saved model on the test runs
    from rarefy.jobs.bench import load_bench_events, split_events

    events, ids = load_bench_events(out / "events", ["lf"], None)
    parts, _ = split_events(events, ids, [0.5, 0.25, 0.25], 3)
    loaded = TorchModuleBackend.load(out / "backends" / "tiny_mlp" / "model")
    assert roc_auc(parts["test"].y, loaded.score(parts["test"])) == pytest.approx(result["tiny_mlp"]["roc_auc"])


def test_bench_runs_every_builtin_backend(tmp_path):
    """All nine built-in backends train, score and save through ``rarefy bench`` (tiny settings)."""
    torch_fast = {"epochs": 2, "batches_per_epoch": 5, "batch_size": 256, "tensorboard": False}
    classifier = {**torch_fast, "imbalance": [{"epochs": 1, "positive_ratio": 0.05}, {"epochs": 1}]}
    cnp = {"epochs": 2, "batches_per_epoch": 5, "batch_size": 256, "tensorboard": False, "context_size": 16,
           "context_per_batch": 64, "min_context": 2}
    backends = [
        {"name": "cnp", "options": {**cnp, "model": {"encoder": [8], "decoder": [8]}}},
        {"name": "attentive_np", "options": {**cnp, "model": {"encoder": [8], "decoder": [8]}}},
        {"name": "autoencoder", "options": {**torch_fast, "hidden": [8], "latent": 2}},
        {"name": "vae", "options": {**torch_fast, "hidden": [8], "latent": 2}},
        {"name": "isolation_forest", "options": {"n_estimators": 20}},
        {"name": "flow_ratio", "options": {"transforms": 1, "hidden": [8], "epochs": 2, "signal_epochs": 2,
                                           "max_batches": 3}},
        {"name": "ft_transformer", "options": {**classifier, "d_token": 4, "n_layers": 1, "d_ffn": 8}},
        {"name": "bdt_ft_transformer", "options": {**classifier, "d_token": 4, "n_layers": 1, "d_ffn": 8,
                                                   "n_trees": 3, "num_leaves": 4}},
        {"name": "nre", "options": {**classifier, "hidden": [8, 8]}},
    ]
    assert {b["name"] for b in backends} == set(registry.BUILTIN)
    res = rarefy.bench(load_config(write(tmp_path / "bench.yaml", config(backends, save_models=False))),
                       tmp_path / "out")
    assert not res.failed, res.failed
    result = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert list(result) == [b["name"] for b in backends]
    for name, entry in result.items():
        assert tuple(entry) == METRIC_KEYS and entry["roc_auc"] is not None, name
    # the torch backends trained with the one trainer: checkpoints and history in their work folders
    for name in ("autoencoder", "vae", "ft_transformer", "bdt_ft_transformer", "nre"):
        assert (tmp_path / "out" / "backends" / name / "work" / "fit" / "history.json").exists(), name
