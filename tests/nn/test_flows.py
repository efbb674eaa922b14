"""DensityFlow: sampling from given base draws."""

from __future__ import annotations

import numpy as np
import pytest

from rarefy.nn.flows import DensityFlow, FlowSettings, fit_flow


def test_sample_from_given_base_draws_matches_log_prob():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(2000, 1))
    x = c + 0.5 * rng.normal(size=(2000, 1))
    flow = fit_flow(x, c, FlowSettings(transforms=2, hidden=(16,), bins=6, epochs=2, batch_size=256), 1)
    base = rng.standard_normal((len(c), 1))
    xs, lp = flow.sample(c, base=base, with_log_prob=True)
    np.testing.assert_allclose(lp, flow.log_prob(xs, c), rtol=1e-4, atol=1e-4)
    # the transform is monotone in the base draw at fixed context
    xs2 = flow.sample(c, base=base + 0.1)
    assert np.all(xs2 > xs)
    np.testing.assert_array_equal(xs, flow.sample(c, base=base))
    with pytest.raises(ValueError):
        DensityFlow(x, None, FlowSettings(), 0).sample(n=3, base=base[:3])
