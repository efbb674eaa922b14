"""The generic trainer alone, on a tiny regression model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rarefy.errors import InputError
from rarefy.nn.checkpoint import load_checkpoint
from rarefy.nn.early_stopping import EarlyStopping
from rarefy.nn.seeding import seeded
from rarefy.nn.trainer import Trainer

X = torch.linspace(-2, 2, 256)[:, None]
Y = torch.sin(2 * X)


def net() -> torch.nn.Module:
    with seeded(0):  # dropout makes the step itself random
        return torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Dropout(0.2),
                                   torch.nn.Linear(16, 1))


def batches(epoch: int) -> list[torch.Tensor]:
    perm = np.random.default_rng([4, epoch]).permutation(len(X))
    return [torch.from_numpy(perm[i:i + 32]) for i in range(0, len(X), 32)]


def step(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
    return torch.mean((model(X[idx]) - Y[idx]) ** 2)


def val(model: torch.nn.Module) -> float:
    return float(torch.mean((model(X) - Y) ** 2))


def trainer(model: torch.nn.Module, ckpt: Path | None, **kw) -> Trainer:
    args = dict(epochs=6, validate=val, early_stopping=EarlyStopping(patience=10), lr_schedule="cosine", seed=3,
                checkpoint=ckpt, fingerprint="tiny", grad_clip=1.0)
    args.update(kw)
    return Trainer(model, lambda p: torch.optim.Adam(p, lr=0.02), step, **args)


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path: Path) -> None:
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    full_model = net()
    full = trainer(full_model, tmp_path / "a.pt").fit(batches)
    assert full.finished and full.epochs_run == 6
    # the caller's global random state is left alone
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])

    def crash(row: dict) -> None:
        if row["epoch"] == 2:
            raise KeyboardInterrupt  # killed after epoch 2's checkpoint
    with pytest.raises(KeyboardInterrupt):
        trainer(net(), tmp_path / "b.pt", on_epoch=crash).fit(batches)
    ck = load_checkpoint(tmp_path / "b.pt")
    assert ck["epoch"] == 3 and not ck["finished"]
    torch.manual_seed(123)  # whatever the global state, the checkpoint's generator decides
    part_model = net()
    resumed = trainer(part_model, tmp_path / "b.pt").fit(batches)
    assert resumed.finished and resumed.epochs_run == 6 and len(resumed.history) == 6
    for k, v in full_model.state_dict().items():
        assert torch.equal(v, part_model.state_dict()[k]), k
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    # stop_after_epochs, then go on
    m = net()
    first = trainer(m, tmp_path / "c.pt").fit(batches, stop_after_epochs=4)
    assert not first.finished and first.epochs_run == 4
    trainer(m, tmp_path / "c.pt").fit(batches)
    for k, v in full_model.state_dict().items():
        assert torch.equal(v, m.state_dict()[k]), k
    # a finished run is not trained again; another fingerprint is refused
    again = trainer(net(), tmp_path / "a.pt").fit(batches)
    assert again.epochs_run == 6 and len(again.history) == 6
    with pytest.raises(InputError, match="other data"):
        trainer(net(), tmp_path / "a.pt", fingerprint="other").fit(batches)


def test_early_stopping_restores_the_best_weights() -> None:
    scores = iter([3.0, 2.0, 1.0, 1.5, 2.5, 0.5, 0.1])
    seen: list[dict[str, torch.Tensor]] = []

    def scripted(model: torch.nn.Module) -> dict[str, float]:
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"val_loss": next(scores)}

    model = net()
    state = trainer(model, None, epochs=7, validate=scripted, early_stopping=EarlyStopping(patience=2)).fit(batches)
    assert state.stopped_early and state.finished and state.epochs_run == 5
    assert state.best_epoch == 2 and state.best_val_loss == 1.0
    assert state.history[-1]["stopped_early"]
    for k, v in seen[2].items():
        assert torch.equal(model.state_dict()[k], v), k
    assert not torch.equal(model.state_dict()["0.weight"], seen[4]["0.weight"])


def test_without_validation_the_last_epoch_is_kept() -> None:
    model = net()
    state = trainer(model, None, epochs=3, validate=None, early_stopping=None).fit(batches)
    assert state.best_epoch == 2 and not state.stopped_early
    assert all(math.isnan(r.get("val_loss", math.nan)) for r in state.history)


@pytest.mark.parametrize("kind", ["cosine", "constant"])
def test_learning_rate_schedule(kind: str) -> None:
    state = trainer(net(), None, epochs=4, lr_schedule=kind).fit(batches)
    want = [0.02 * (0.5 * (1 + math.cos(math.pi * e / 4)) if kind == "cosine" else 1.0) for e in range(4)]
    assert [r["lr"] for r in state.history] == pytest.approx(want, rel=1e-12)


def test_non_finite_loss_and_empty_epochs() -> None:
    with pytest.raises(FloatingPointError, match="not finite at epoch 0"):
        Trainer(net(), lambda p: torch.optim.SGD(p, lr=0.1), lambda m, b: m(X).sum() * float("nan"),
                epochs=2).fit(lambda e: [0])
    with pytest.raises(InputError, match="no training batches"):
        Trainer(net(), lambda p: torch.optim.SGD(p, lr=0.1), step, epochs=2).fit(lambda e: [])


def test_tensorboard_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    trainer(net(), None, epochs=2, tensorboard=tmp_path / "tb").fit(batches)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
