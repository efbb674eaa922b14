"""The fast sampler inverts the zuko flow exactly (up to float32 rounding)."""

import pytest
import torch

from rarefy.generate.model import build_flow
from rarefy.generate.sampling import FlowSampler
from rarefy.nn.seeding import seeded


@pytest.mark.parametrize("kind", ["nsf", "maf"])
@pytest.mark.parametrize("passes", [None, 2])
@pytest.mark.parametrize("features", [2, 3, 5])
def test_the_sampler_inverts_the_flow_as_zuko_does(kind, passes, features):
    with seeded(3):
        flow = build_flow(features, 4, kind, transforms=3, hidden=(16, 16), bins=6, passes=passes).eval()
        with torch.no_grad():   # weights away from their initialisation, as after training
            for p in flow.parameters():
                p.add_(0.15 * torch.randn_like(p))
        context = torch.rand(4)
        z = 2.5 * torch.randn(4000, features)   # many draws beyond the spline's bound B = 5 as well
    with torch.inference_mode():
        want = flow(context).transform.inv(z)
        got = FlowSampler(flow, context).inverse(z)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=2e-4, atol=2e-4)


def test_the_sampler_draws_the_flow_at_its_context():
    with seeded(0):
        flow = build_flow(2, 1, "nsf", transforms=2, hidden=(8,), bins=4).eval()
    c = torch.tensor([0.3])
    with seeded(5):
        a = FlowSampler(flow, c).sample(1000)
    with seeded(5):
        b = FlowSampler(flow, c).sample(1000)
    with seeded(5):
        z = torch.randn(1000, 2)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with torch.inference_mode():
        torch.testing.assert_close(a, flow(c).transform.inv(z), rtol=2e-4, atol=2e-4)


def test_a_single_phi_column_falls_back_to_zukos_sampling():
    import numpy as np

    from rarefy.config import GenerateConfig
    from rarefy.data.events import EventTable
    from rarefy.generate import fit_generator
    from rarefy.space import DesignSpace, Parameter

    space = DesignSpace([Parameter("a", 0.0, 1.0)])
    rng = np.random.default_rng(0)
    tables = [EventTable.from_arrays({"a": a}, {"x": rng.normal(4 * a, 0.3, 300)}, np.zeros(300, np.int8),
                                     fidelity="lf", run_id=f"run-{i}") for i, a in enumerate(rng.random(4))]
    gen = fit_generator(EventTable.concat(tables), space, GenerateConfig(epochs=1, flow={"hidden": [8]}),
                        seed=0).generator
    with pytest.raises(TypeError):
        FlowSampler(gen.flow, torch.tensor([0.5]))
    x = gen.sample_array({"a": 0.5}, 100, seed=2)
    assert x.shape == (100, 1) and np.isfinite(x).all()
    np.testing.assert_array_equal(x, gen.sample_array({"a": 0.5}, 100, seed=2))
