"""rarefy's BoTorch acquisition functions: IVR / max-variance values, cost, the kriging believer, EI/LCB."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.analytic import UpperConfidenceBound

from rarefy import AR1Settings, AR1Surrogate, DesignSpace, Parameter, RateTable
from rarefy.acquisition import (Acquisition, CostAware, FidelityDiscount, FidelityPlan, IntegratedVarianceReduction,
                                KrigingBeliever, MaxVarianceReduction, OptimisticImprovement, RunNoise)


def _table(space: DesignSpace, seed: int = 0, noise: float = 1e-4) -> RateTable:
    rng = np.random.default_rng(seed)
    rows = []
    for name, n, scale, shift in (("lf", 20, 0.8, 0.05), ("hf", 6, 1.0, 0.0)):
        x = space.sample(n, method="sobol", seed=seed + n).to_numpy(dtype=float)
        u = space.to_unit(x)
        y = scale * (0.2 + (u[:, 0] - 0.7) ** 2 + (u[:, 1] - 0.3) ** 2) + shift + rng.normal(0, math.sqrt(noise), n)
        df = pd.DataFrame(x, columns=space.names)
        df["fidelity"], df["rate"], df["var"] = name, y, noise
        rows.append(df)
    return RateTable(pd.concat(rows, ignore_index=True), space)


@pytest.fixture(scope="module")
def fitted():
    space = DesignSpace([Parameter("a", 0.0, 2.0), Parameter("b", -1.0, 1.0)])
    table = _table(space)
    return space, AR1Surrogate(space, ["lf", "hf"], AR1Settings(restarts=1, max_iter=40), seed=0).fit(table), table


def _x(space: DesignSpace, n: int = 16, seed: int = 4) -> torch.Tensor:
    return torch.as_tensor(space.sample(n, seed=seed).to_numpy(float).copy())


@pytest.mark.parametrize("fidelity", ["lf", "hf"])
def test_variance_reductions_are_non_negative_and_vanish_where_certain(fitted, fidelity):
    space, sur, _ = fitted
    x = _x(space)
    noise = RunNoise(1000, sur.noise_variance(fidelity))
    ivr = IntegratedVarianceReduction(sur, fidelity, _x(space, 32, seed=9), noise)
    mv = MaxVarianceReduction(sur, fidelity, noise)
    for acq in (ivr, mv):
        assert isinstance(acq, AcquisitionFunction)
        v = acq(x.unsqueeze(-2))
        assert v.shape == (16,) and (v >= 0).all() and (v > 0).any()
    # a pending noise-free target run at x[0] makes the target there certain: nothing left to learn at x[0]
    certain = KrigingBeliever(sur, x[:1], torch.tensor([1]), torch.tensor([0.0], dtype=torch.float64))
    before, after = mv(x[:1, None]), MaxVarianceReduction(certain, fidelity, noise)(x[:1, None])
    assert float(after) <= 1e-6 * float(before)
    if fidelity == "hf":  # another run where y_T is known teaches nothing anywhere
        after = IntegratedVarianceReduction(certain, fidelity, ivr.reference, noise)(x[:1, None])
        assert float(after) <= 1e-6 * float(ivr(x[:1, None]))
    # max-variance at the target without noise is the posterior variance
    plain = MaxVarianceReduction(sur, "hf", lambda m: torch.zeros_like(m))(x.unsqueeze(-2))
    torch.testing.assert_close(plain, sur.predict(x)[1] ** 2, rtol=1e-8, atol=1e-14)


def test_kriging_believer_keeps_the_mean_and_shrinks_the_variance(fitted):
    space, sur, _ = fitted
    x = _x(space)
    bel = KrigingBeliever(sur, x[:2], torch.tensor([0, 1]), torch.tensor([1e-4, 1e-4], dtype=torch.float64))
    p0, p1 = sur.posterior(x.unsqueeze(-2)), bel.posterior(x.unsqueeze(-2))
    torch.testing.assert_close(p1.mean, p0.mean)
    assert (p1.variance <= p0.variance + 1e-15).all() and (p1.variance[:2] < 0.5 * p0.variance[:2]).all()


def test_cost_aware_value_is_plain_value_over_cost(fitted):
    space, sur, _ = fitted
    x = _x(space).unsqueeze(-2)
    base = MaxVarianceReduction(sur, "lf", RunNoise(1000, 0.0))
    torch.testing.assert_close(CostAware(base, 4.0)(x), base(x) / 4.0)
    with pytest.raises(ValueError):
        CostAware(base, 0.0)


def test_ei_and_lcb_are_the_closed_forms(fitted):
    space, sur, table = fitted
    x = _x(space)
    mean, std = sur.predict(x)
    plans = {"lf": FidelityPlan("lf", 1000, 1.0), "hf": FidelityPlan("hf", 1000, 20.0)}
    ei = Acquisition(sur, plans, kind="ei", cost_aware=False, observed=table.designs())
    z = (ei.incumbent - mean) / std
    normal = torch.distributions.Normal(0.0, 1.0)
    expected = std * (z * normal.cdf(z) + torch.exp(normal.log_prob(z)))
    # (the variance near a training design is a difference of nearly equal numbers: compare on the EI scale)
    torch.testing.assert_close(ei.value(x, "hf"), expected, rtol=1e-6, atol=1e-8 * float(expected.max()))
    lcb = Acquisition(sur, plans, kind="lcb", cost_aware=False, beta=2.0, observed=table.designs())
    torch.testing.assert_close(lcb.value(x, "hf"), -(mean - 2.0 * std), rtol=1e-10, atol=1e-14)
    # cost-aware LCB: the optimistic improvement, fidelity-discounted, per CPU-hour
    ca = Acquisition(sur, plans, kind="lcb", cost_aware=True, beta=2.0, observed=table.designs())
    inner = OptimisticImprovement(UpperConfidenceBound(sur, beta=4.0, maximize=False), ca.incumbent)
    want = FidelityDiscount(inner, "lf", RunNoise(1000, sur.noise_variance("lf")))(x.unsqueeze(-2)) / 1.0
    torch.testing.assert_close(ca.value(x, "lf"), want, rtol=1e-8, atol=1e-14)
    assert (ca.value(x, "hf") >= 0).all()
