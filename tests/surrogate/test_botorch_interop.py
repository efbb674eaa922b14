"""rarefy surrogates are BoTorch models: posterior = predict, BoTorch acquisitions and optimize_acqf run on them."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from botorch.acquisition.analytic import LogExpectedImprovement, UpperConfidenceBound
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import WeightedMCMultiOutputObjective
from botorch.models.model import Model, ModelList
from botorch.optim import optimize_acqf
from botorch.posteriors.gpytorch import GPyTorchPosterior
from botorch.sampling import ListSampler, SobolQMCNormalSampler

import rarefy
from rarefy.jobs.fit import build_surrogate
from rarefy.surrogate.factory import load_surrogate

ROOT = Path(__file__).resolve().parents[2]


def _bounds(space) -> torch.Tensor:
    return torch.tensor([[p.low for p in space.parameters], [p.high for p in space.parameters]], dtype=torch.float64)


@pytest.fixture(scope="module")
def legend():
    cfg = rarefy.load_config(ROOT / "examples" / "legend" / "legend.yaml")
    table = rarefy.load_rate_table(cfg)
    cfg.surrogate.restarts = 2
    return build_surrogate(cfg).fit(table), table


@pytest.fixture(scope="module")
def bbh():
    cfg = rarefy.load_config(ROOT / "examples" / "bbh" / "infer.yaml")
    cfg.surrogate.degree = 2            # fixed degree: no cross-validation
    return build_surrogate(cfg).fit(rarefy.load_rate_table(cfg)), None


def _designs(sur, n: int, seed: int = 0) -> torch.Tensor:
    return torch.as_tensor(sur.space.sample(n, seed=seed).to_numpy(float))


@pytest.mark.parametrize("which", ["legend", "bbh"])
def test_posterior_is_predict_and_botorch_acquisitions_run(which, request):
    sur, _ = request.getfixturevalue(which)
    assert isinstance(sur, Model) and sur.num_outputs == 1 and sur.batch_shape == torch.Size([])
    x = _designs(sur, 6)
    mean, std = sur.predict(x)
    post = sur.posterior(x.unsqueeze(-2))                     # b × q=1 × d
    assert isinstance(post, GPyTorchPosterior)
    assert post.mean.shape == (6, 1, 1)
    torch.testing.assert_close(post.mean.squeeze(), mean, rtol=1e-10, atol=1e-10 * float(mean.abs().max()))
    torch.testing.assert_close(post.variance.squeeze(), std**2, rtol=1e-10, atol=1e-10 * float((std**2).max()))
    # joint q = 3 posterior over a batch of 2: the marginals are predict's too
    joint = sur.posterior(x.reshape(2, 3, -1))
    assert joint.mean.shape == (2, 3, 1)
    torch.testing.assert_close(joint.variance.reshape(-1), std**2, rtol=1e-8, atol=1e-8 * float((std**2).max()))
    # other fidelity by keyword
    lo = sur.posterior(x.unsqueeze(-2), fidelity=sur.fidelities[0])
    torch.testing.assert_close(lo.mean.squeeze(), sur.predict(x, sur.fidelities[0])[0], rtol=1e-10, atol=0.0)

    bounds = _bounds(sur.space)
    best = float(mean.min())
    for acq in (LogExpectedImprovement(sur, best_f=best, maximize=False),
                UpperConfidenceBound(sur, beta=4.0, maximize=False)):
        cand, val = optimize_acqf(acq, bounds=bounds, q=1, num_restarts=2, raw_samples=32)
        assert cand.shape == (1, sur.space.dim) and torch.isfinite(val).all()
        assert ((cand >= bounds[0]) & (cand <= bounds[1])).all()

    # two objectives (the surrogate and its negation's proxy: the low fidelity) in a ModelList
    model = ModelList(sur, sur.at_fidelity(sur.fidelities[0]))
    ref = -(torch.stack([mean.max(), sur.predict(x, sur.fidelities[0])[0].max()]) * 1.1)
    acq = qLogNoisyExpectedHypervolumeImprovement(
        model=model, ref_point=ref.tolist(), X_baseline=x, objective=WeightedMCMultiOutputObjective(-torch.ones(2)),
        sampler=ListSampler(SobolQMCNormalSampler(torch.Size([32]), seed=0),
                            SobolQMCNormalSampler(torch.Size([32]), seed=1)),
        prune_baseline=False, cache_root=False)
    cand, val = optimize_acqf(acq, bounds=bounds, q=1, num_restarts=2, raw_samples=32)
    assert torch.isfinite(val).all()


def test_a_surrogate_module_saves_loads_copies_and_pickles(legend, tmp_path):
    sur, _ = legend
    x = _designs(sur, 4, seed=2)
    mean, std = sur.predict(x)
    sur.save(tmp_path / "s")
    for other in (load_surrogate(tmp_path / "s"), copy.deepcopy(sur), pickle.loads(pickle.dumps(sur))):
        m2, s2 = other.predict(x)
        torch.testing.assert_close(m2, mean, rtol=1e-12, atol=0.0)
        torch.testing.assert_close(s2, std, rtol=1e-12, atol=0.0)
        torch.testing.assert_close(other.posterior(x[:, None]).mean.squeeze(), mean, rtol=1e-12, atol=0.0)


def test_pce_posterior_is_differentiable(bbh):
    sur, _ = bbh
    x = _designs(sur, 3).requires_grad_(True)
    sur.posterior(x.unsqueeze(-2)).mean.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        np.testing.assert_allclose(sur.posterior(x.detach().unsqueeze(-2)).mean.squeeze().numpy(),
                                   sur.predict(x.detach())[0].numpy(), rtol=1e-10)
