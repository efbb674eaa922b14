"""Acquisition and design optimisation: feasibility, fidelity choice, batches, known optima."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rarefy import AR1Settings, AR1Surrogate, DesignSpace, Parameter, RateTable
from rarefy.acquisition import Acquisition, FidelityPlan, proposals_frame
from rarefy.config import OptimizeConfig
from rarefy.errors import InputError
from rarefy.optim.design import Baseline, optimize_design
from rarefy.optim.search import feasible_pool, local_pool, maximize

FAST = AR1Settings(restarts=1, max_iter=40)


def bowl(x: np.ndarray) -> np.ndarray:
    """Target: a bowl with its minimum 0.2 at (0.7, 0.3) (scaled to parameter units below)."""
    return 0.2 + (x[:, 0] - 0.7) ** 2 + (x[:, 1] - 0.3) ** 2


def make_table(space: DesignSpace, n_lf: int = 24, n_hf: int = 8, seed: int = 0, noise: float = 1e-4) -> RateTable:
    rng = np.random.default_rng(seed)
    rows = []
    for name, n, scale, shift in (("lf", n_lf, 0.8, 0.05), ("hf", n_hf, 1.0, 0.0)):
        x = space.sample(n, method="sobol", seed=seed + n).to_numpy(dtype=float)
        u = space.to_unit(x)
        y = scale * bowl(u) + shift + rng.normal(0, math.sqrt(noise), n)
        df = pd.DataFrame(x, columns=space.names)
        df["fidelity"], df["rate"], df["var"] = name, y, noise
        rows.append(df)
    return RateTable(pd.concat(rows, ignore_index=True), space)


PLANS = {"lf": FidelityPlan("lf", 1000, 1.0), "hf": FidelityPlan("hf", 1000, 20.0)}


@pytest.fixture(scope="module")
def fitted() -> tuple[DesignSpace, AR1Surrogate, RateTable]:
    space = DesignSpace([Parameter("a", 0.0, 2.0), Parameter("b", -1.0, 1.0)], constraints=["a + b <= 1.8"])
    table = make_table(space)
    return space, AR1Surrogate(space, ["lf", "hf"], FAST, seed=0).fit(table), table


@pytest.mark.parametrize("kind", ["ivr", "maxvar", "ei", "lcb"])
@pytest.mark.parametrize("cost_aware", [False, True])
def test_proposals_are_feasible_and_deterministic(fitted, kind, cost_aware):
    space, sur, table = fitted
    props = []
    for _ in range(2):
        acq = Acquisition(sur, PLANS, kind=kind, cost_aware=cost_aware, observed=table.designs(), n_reference=16)
        props.append(acq.propose(2, candidates=64, starts=2, steps=5, seed=3))
    frame = proposals_frame(props[0], space)
    assert len(frame) == 2
    assert space.is_feasible(frame).all()
    assert props[0] == props[1]
    if not cost_aware:
        assert set(frame["fidelity"]) == {"hf"}
    assert np.isfinite(frame["value"]).all()


def test_cost_aware_prefers_the_cheap_correlated_fidelity(fitted):
    space, sur, table = fitted
    acq = Acquisition(sur, {"lf": FidelityPlan("lf", 1000, 1.0), "hf": FidelityPlan("hf", 1000, 1e4)},
                      kind="ivr", n_reference=16)
    (p,) = acq.propose(1, candidates=64, starts=2, steps=3)
    assert p.fidelity == "lf"
    acq = Acquisition(sur, {"lf": FidelityPlan("lf", 1000, 1e4), "hf": FidelityPlan("hf", 1000, 1.0)},
                      kind="ivr", n_reference=16)
    (p,) = acq.propose(1, candidates=64, starts=2, steps=3)
    assert p.fidelity == "hf"


def test_cost_aware_value_is_value_per_cpu_hour(fitted):
    space, sur, _ = fitted
    x = torch.as_tensor(space.sample(5, seed=1).to_numpy(float))
    a1 = Acquisition(sur, {"lf": FidelityPlan("lf", 1000, 2.0), "hf": FidelityPlan("hf", 1000, 1.0)}, kind="maxvar")
    a2 = Acquisition(sur, {"lf": FidelityPlan("lf", 1000, 8.0), "hf": FidelityPlan("hf", 1000, 1.0)}, kind="maxvar")
    with torch.no_grad():
        assert torch.allclose(a1.value(x, "lf"), 4.0 * a2.value(x, "lf"))


def test_maxvar_matches_posterior_variance_without_noise(fitted):
    space, sur, _ = fitted
    plans = {"lf": FidelityPlan("lf", 10**12, 1.0), "hf": FidelityPlan("hf", 10**12, 1.0)}
    acq = Acquisition(sur, plans, kind="maxvar", cost_aware=False)
    acq.nugget = {"lf": 0.0, "hf": 0.0}
    x = torch.as_tensor(space.sample(6, seed=2).to_numpy(float))
    with torch.no_grad():
        _, std = sur.predict(x, "hf")
        val = acq.value(x, "hf")
    np.testing.assert_allclose(val.numpy(), (std**2).numpy(), rtol=1e-6)


def test_pending_run_removes_its_own_variance(fitted):
    """Kriging believer: after a pending noise-free HF run at x, max-variance at x is ~0 (and drops nearby)."""
    space, sur, _ = fitted
    plans = {"lf": FidelityPlan("lf", 10**12, 1.0), "hf": FidelityPlan("hf", 10**12, 1.0)}
    acq = Acquisition(sur, plans, kind="maxvar", cost_aware=False)
    acq.nugget = {"lf": 0.0, "hf": 0.0}
    x0 = np.array([1.9, -0.9])
    near = torch.tensor([[1.9, -0.9], [1.85, -0.85], [0.1, 0.9]], dtype=torch.float64)
    with torch.no_grad():
        before = acq.value(near, "hf")
        acq.add_pending(x0, "hf")
        after = acq.value(near, "hf")
    assert after[0] < 1e-3 * before[0]
    assert after[1] < before[1]
    assert after[2] == pytest.approx(float(before[2]), rel=0.05)


def test_batch_spreads_out(fitted):
    space, sur, _ = fitted
    acq = Acquisition(sur, PLANS, kind="maxvar", cost_aware=False)
    props = acq.propose(3, candidates=128, starts=2, steps=5)
    x = np.array([[p.theta["a"], p.theta["b"]] for p in props])
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)[np.triu_indices(3, 1)]
    assert d.min() > 0.05


def test_budget_limits_the_batch(fitted):
    _, sur, _ = fitted
    acq = Acquisition(sur, PLANS, kind="ivr", n_reference=16)
    props = acq.propose(4, candidates=32, starts=1, steps=0, budget_cpu_h=2.5)
    assert sum(p.cost_cpu_h for p in props) <= 2.5 and all(p.fidelity == "lf" for p in props) and len(props) == 2
    assert Acquisition(sur, PLANS, kind="ivr", n_reference=16).propose(2, candidates=16, budget_cpu_h=0.5) == []


def test_cost_aware_without_cost_is_an_input_error(fitted):
    _, sur, _ = fitted
    with pytest.raises(InputError, match="cost"):
        Acquisition(sur, {"lf": FidelityPlan("lf", 10), "hf": FidelityPlan("hf", 10)}, kind="ivr")
    with pytest.raises(InputError, match="no fidelity can be proposed"):
        Acquisition(sur, {"lf": FidelityPlan("lf", 0), "hf": FidelityPlan("hf", 0)}, kind="ivr")
    with pytest.raises(InputError, match="unknown acquisition kind"):
        Acquisition(sur, PLANS, kind="pi")


def test_optimizer_finds_the_bowl_minimum(fitted):
    space, sur, table = fitted
    res = optimize_design(sur, OptimizeConfig(candidates=256, starts=4, steps=30), observed=table.designs(),
                          baseline=Baseline(0.4, 0.0))
    # minimum of the bowl at unit (0.7, 0.3) -> (1.4, -0.4), inside the constraint a + b <= 1.8
    assert res.theta["a"] == pytest.approx(1.4, abs=0.15)
    assert res.theta["b"] == pytest.approx(-0.4, abs=0.15)
    assert res.rate == pytest.approx(0.2, abs=0.03)
    assert res.reduction == pytest.approx(1 - res.rate / 0.4)
    assert res.sigma > 0 and res.reduction_sigma > 0


def test_optimizer_respects_an_active_constraint():
    space = DesignSpace([Parameter("a", 0.0, 2.0), Parameter("b", -1.0, 1.0)], constraints=["a <= 0.8 - b"])
    sur = AR1Surrogate(space, ["lf", "hf"], FAST).fit(make_table(space))
    res = optimize_design(sur, OptimizeConfig(candidates=256, starts=4, steps=40))
    x = np.array([[res.theta["a"], res.theta["b"]]])
    assert space.is_feasible(x).all()
    assert res.theta["a"] + res.theta["b"] == pytest.approx(0.8, abs=0.08)  # on the boundary


def test_maximize_keeps_integers_and_constraints():
    space = DesignSpace([Parameter("n", 1, 50, integer=True), Parameter("w", 0.0, 1.0)], constraints=["n * w <= 10"])
    pool = feasible_pool(space, 64, seed=0)

    def fn(x: torch.Tensor) -> torch.Tensor:  # wants n and w large: the constraint binds
        return x[:, 0] / 50 + x[:, 1]

    res = maximize(space, fn, pool=pool, starts=3, steps=30)
    assert space.is_feasible(res.x[None]).all() and float(res.x[0]).is_integer()
    assert res.x[0] * res.x[1] == pytest.approx(10, rel=0.1)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    c=st.floats(0.3, 1.5),
    k=st.integers(1, 6),
    w_int=st.booleans(),
    kind=st.sampled_from(["ivr", "maxvar", "ei", "lcb"]),
    cost_aware=st.booleans(),
    q=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_property_proposals_satisfy_constraints(c, k, w_int, kind, cost_aware, q, seed):
    """Random constrained spaces (one integer parameter optional), random acquisition set-ups: always feasible."""
    params = [Parameter("a", 0.0, 1.0), Parameter("b", 0.0, 1.0),
              Parameter("m", 1, 8, integer=True) if w_int else Parameter("m", 1.0, 8.0)]
    space = DesignSpace(params, constraints=[f"a + b <= {c}", f"m * a <= {k}", "b >= 0.1 * a"])
    table = make_table(space, n_lf=10, n_hf=4, seed=seed)
    sur = AR1Surrogate(space, ["lf", "hf"], AR1Settings(restarts=1, max_iter=15), seed=seed).fit(table)
    acq = Acquisition(sur, PLANS, kind=kind, cost_aware=cost_aware, observed=table.designs(), n_reference=8, seed=seed)
    props = acq.propose(q, candidates=32, starts=2, steps=6, seed=seed)
    frame = proposals_frame(props, space)
    assert len(frame) == q
    assert space.is_feasible(frame).all()
    if w_int:
        assert all(float(v).is_integer() for v in frame["m"])
    # θ* too: the design optimiser (mean or UCB, Sobol + observed + local candidates, gradient refinement)
    opt = optimize_design(sur, OptimizeConfig(objective="ucb" if seed % 2 else "mean", candidates=32, starts=2,
                                  steps=8), seed=seed, observed=table.designs())
    assert space.is_feasible(pd.DataFrame([opt.theta])).all()
    if w_int:
        assert float(opt.theta["m"]).is_integer()


def test_local_pool_is_feasible_and_near_its_centres():
    space = DesignSpace([Parameter("a", 0.0, 1.0), Parameter("n", 1, 20, integer=True)], constraints=["a * n <= 6"])
    centres = np.array([[0.3, 10.0], [0.9, 3.0]])
    pool = local_pool(space, centres, 200, seed=1, scale=0.05)
    assert 100 < len(pool) <= 200 and space.is_feasible(pool).all()
    assert np.all(np.isclose(pool[:, 1], np.round(pool[:, 1])))
    u = space.to_unit(pool)[:, None, :] - space.to_unit(centres)[None, :, :]
    assert np.all(np.min(np.abs(u).max(-1), axis=1) < 0.3)  # every point is near one of the centres
    np.testing.assert_array_equal(pool, local_pool(space, centres, 200, seed=1, scale=0.05))


def test_opportunity_cost_of_a_run_slot(fitted):
    """With budget to spare per run slot, cheap runs are divided by the slot's cost, not their own."""
    space, sur, table = fitted
    acq = Acquisition(sur, PLANS, kind="maxvar", cost_aware=True, observed=table.designs())
    x = torch.tensor(table.designs()[:3], dtype=torch.float64)
    base_lf, base_hf = acq.value(x, "lf"), acq.value(x, "hf")
    acq.slot_cost_cpu_h = 10.0  # between the LF (1) and HF (20) run costs
    torch.testing.assert_close(acq.value(x, "lf"), base_lf / 10.0)
    torch.testing.assert_close(acq.value(x, "hf"), base_hf)


def test_denoised_fidelity_plan_simulates_its_base():
    from rarefy.acquisition import fidelity_plans
    from rarefy.config import config_from_dict
    import yaml
    from pathlib import Path

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "moderator" / "run.yaml").read_text())
    raw["fidelities"].insert(1, {"name": "lf-denoised", "value": "rate", "filter": {"fidelity": "lf-denoised"}})
    raw["denoise"] = {}
    cfg = config_from_dict(raw)
    plans = fidelity_plans(cfg.fidelities, cfg.acquisition.events, rarefy_simulator())
    assert plans["lf-denoised"].simulated == "lf" and plans["lf-denoised"].events == plans["lf"].events
    assert plans["lf-denoised"].cost_cpu_h == plans["lf"].cost_cpu_h and plans["hf"].simulated == "hf"


def rarefy_simulator():
    import rarefy

    return rarefy.simulators.get("moderator")
