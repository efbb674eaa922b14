"""The optimiser-step floor per epoch: small data get smaller batches, large data are unchanged."""

from __future__ import annotations

import numpy as np
import pytest

import rarefy.nn.flows as flows
from rarefy.errors import InputError
from rarefy.nn.classifier import WeightedClassifier
from rarefy.nn.flows import FlowSettings, fit_flow


def _count_forward(clf: WeightedClassifier) -> list[int]:
    calls = [0]
    clf.model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize(("n", "min_steps", "steps"), [(12_000, 0, 3), (12_000, 24, 24), (2_000, 24, 8),
                                                        (200_000, 24, 49)])
def test_classifier_step_floor(n: int, min_steps: int, steps: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    w1 = (rng.random(n) < 0.5).astype(float)
    clf = WeightedClassifier(1, batch_size=4096, min_steps=min_steps, seed=0)
    calls = _count_forward(clf)
    clf.fit(x, w1, 1 - w1, epochs=1)
    assert calls[0] == steps          # 2,000 events: batches of 256 at least, so 8 steps


def test_classifier_step_floor_learns_on_small_data() -> None:
    # N(0.5, 1) against N(0, 1), 6,000 events, 3 epochs: log ratio = 0.5 x − 0.125
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0.5, 1.0, 3_000), rng.normal(0.0, 1.0, 3_000)])
    w1 = np.r_[np.ones(3_000), np.zeros(3_000)]
    grid = np.linspace(-1.0, 1.5, 6)
    err = {}
    for floor in (0, 24):
        clf = WeightedClassifier(1, lr=1e-2, batch_size=4096, min_steps=floor, lr_schedule="cosine", seed=1)
        clf.fit(x, w1, 1 - w1, epochs=3)
        err[floor] = float(np.max(np.abs(clf.logit(grid) - (0.5 * grid - 0.125))))
    assert err[24] < 0.15 < err[0]


def test_classifier_step_floor_rejects_negative() -> None:
    with pytest.raises(InputError, match="min_steps"):
        WeightedClassifier(1, min_steps=-1)


def test_flow_step_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = flows.Trainer

    def counting(model, opt, step, **kw):          # noqa: ANN001, ANN003, ANN202
        def counted(m, idx):                        # noqa: ANN001, ANN202
            seen.append(len(idx))
            return step(m, idx)
        return real(model, opt, counted, **kw)

    monkeypatch.setattr(flows, "Trainer", counting)
    x = np.random.default_rng(0).normal(size=(6_000, 1))
    fit_flow(x, None, FlowSettings(epochs=1, batch_size=2048), 0)
    assert len(seen) == 3
    seen.clear()
    fit_flow(x, None, FlowSettings(epochs=1, batch_size=2048, min_steps=10), 0)
    assert len(seen) == 10 and max(seen) == 600
