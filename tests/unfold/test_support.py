"""The bounded generation level's logit coordinates."""

from __future__ import annotations

import numpy as np

from rarefy.unfold import GaussianToy
from rarefy.unfold.support import from_u, inside, log_du_dx, simulated_range, to_u


def test_logit_coordinates_round_trip_and_their_jacobian():
    prob, _ = GaussianToy().problem(2000, 500, seed=1)
    support = simulated_range(prob)
    lo, hi = support
    assert lo[0] < prob.sim_gen.min() and hi[0] > prob.sim_gen.max()
    x = np.linspace(lo[0] + 1e-3, hi[0] - 1e-3, 50)[:, None]
    np.testing.assert_allclose(from_u(to_u(x, support), support), x, rtol=1e-12)
    h = 1e-6
    numeric = np.log((to_u(x + h, support) - to_u(x - h, support))[:, 0] / (2 * h))
    np.testing.assert_allclose(log_du_dx(x, support), numeric, rtol=1e-5)
    out = np.array([[lo[0] - 1.0], [0.5 * (lo[0] + hi[0])], [hi[0] + 1.0]])
    np.testing.assert_array_equal(inside(out, support), [False, True, False])
    # without a support u is x and the Jacobian is 1
    np.testing.assert_array_equal(to_u(out, None), out)
    np.testing.assert_array_equal(log_du_dx(out, None), 0.0)
