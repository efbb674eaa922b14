"""The built-in moderator simulator: design space, physics requirements, exact truth."""

from __future__ import annotations

import numpy as np
import pytest

import rarefy.simulators.moderator as mod
from rarefy import simulators

# best feasible LF design found by a constrained search (docs/moderator.md)
BEST = {"radius": 101.0, "thickness": 14.99, "npanels": 42, "theta": 0.37, "length": 18.06}
MID = {"radius": 150.0, "thickness": 6.0, "npanels": 30, "theta": 30.0, "length": 15.0}


@pytest.fixture(scope="module")
def sim():
    return simulators.get("moderator")


def test_space_matches_legend_reference(sim):
    space = sim.space
    assert space.names == ["radius", "thickness", "npanels", "theta", "length"]
    assert space.bounds.tolist() == [[90, 2, 4, 0, 1], [250, 15, 360, 90, 150]]
    assert space["npanels"].integer
    designs = space.sample(64, seed=0)
    assert len(designs) == 64 and space.is_feasible(designs).all()
    slack = space.constraint_slacks(designs)
    r_out = np.sqrt(designs.radius**2 + designs.length**2
                    + 2 * designs.radius * designs.length * np.cos(np.radians(designs.theta)))
    assert (r_out <= 265 + 1e-9).all() and (r_out - designs.radius <= 20 + 1e-9).all() and (slack >= 0).all()
    assert space.is_feasible(np.array([list(BEST.values())]))[0]
    # crossing panels are refused: many thick radial panels at a small radius
    assert not space.is_feasible(np.array([[90.0, 15, 360, 0, 10]]))[0]


def test_simulate_is_deterministic_and_has_physical_phi(sim):
    a = sim.simulate(MID, 5000, "lf", seed=5)
    b = sim.simulate(MID, 5000, "lf", seed=5)
    assert a.to_pandas().equals(b.to_pandas())
    assert a.phi_names == list(mod.PHI_COLUMNS)
    df = a.to_pandas()
    assert df["r0_cm"].between(*mod.LF_R).all() and df["z0_cm"].abs().max() <= mod.LF_HALF_Z
    assert (df["e0_mev"] > 0).all() and df["cosz"].between(-1, 1).all()
    assert not sim.simulate(MID, 5000, "lf", seed=6).to_pandas().equals(df)


def test_phi_matters_strongly(sim):
    ev = sim.simulate(MID, 20000, "lf", seed=1, with_truth=True)
    t = ev.to_pandas()["t_true"].to_numpy()
    assert t.std() > 2 * t.mean()                       # events at one design differ strongly
    assert np.quantile(t, 0.99) > 20 * np.quantile(t, 0.5)


def test_hf_is_clustered_along_tracks(sim):
    df = sim.simulate(MID, 4000, "hf", seed=2).to_pandas()
    # consecutive neutrons come from the same muon: their birth azimuths are close
    gaps = np.abs(np.angle(np.exp(1j * np.diff(df["phi0_rad"].to_numpy()))))
    assert np.median(gaps) < 0.3
    lf = sim.simulate(MID, 4000, "lf", seed=2).to_pandas()
    assert df["e0_mev"].mean() > 2 * lf["e0_mev"].mean()  # harder spectrum


def test_rates_scale_and_baseline(sim):
    for fid in ("lf", "hf"):
        base = sim.baseline_rate(fid)
        assert 1e-6 < base < 1e-4
        assert sim.expected_rate(None, fid) == base
    assert 1e-6 < sim.expected_rate(BEST, "lf") < 1e-4


def test_reduction_of_at_least_half_at_best_design(sim):
    assert sim.space.is_feasible(np.array([list(BEST.values())], dtype=float))[0]
    assert sim.expected_rate(BEST, "lf") / sim.baseline_rate("lf") < 0.5
    assert sim.expected_rate(BEST, "hf") < sim.baseline_rate("hf")


def test_interior_optimum_in_radius(sim):
    radii = np.arange(90.0, 250.1, 5.0)
    designs = np.array([[r, MID["thickness"], MID["npanels"], MID["theta"], MID["length"]] for r in radii])
    assert sim.space.is_feasible(designs).all()
    rates = np.array([sim.expected_rate(dict(MID, radius=r), "lf") for r in radii])
    i = int(np.argmin(rates))
    assert 0 < i < len(radii) - 1 and 100 <= radii[i] <= 200
    assert rates[0] > 1.05 * rates[i] and rates[-1] > 1.05 * rates[i]
    # at the best design the no-crossing constraint is what stops smaller radii
    assert not sim.space.is_feasible(np.array([[95.0, *list(BEST.values())[1:]]]))[0]
    assert sim.expected_rate(dict(BEST, radius=115.0), "lf") > sim.expected_rate(BEST, "lf")


def test_expected_rate_matches_monte_carlo(sim):
    for fid in ("lf", "hf"):
        phi = sim.sample_phi(400_000, fid, np.random.default_rng(9))
        t = sim.capture_probability(MID, phi)
        err = t.std() / np.sqrt(len(t))
        assert abs(t.mean() - sim.expected_rate(MID, fid)) < 4 * err


def test_qmc_rule_relative_error_below_1e3(sim, monkeypatch):
    fine = mod.Moderator()
    monkeypatch.setattr(mod, "QMC_LOG2", 20)
    monkeypatch.setattr(mod, "QMC_SEED", 12345)
    for fid in ("lf", "hf"):
        for theta in (None, BEST):
            ref = fine.expected_rate(theta, fid)
            assert abs(sim.expected_rate(theta, fid) / ref - 1) < 1e-3


def test_expected_rate_is_smooth(sim):
    for name, grid in (("radius", np.linspace(100, 140, 41)), ("theta", np.linspace(10, 50, 41)),
                       ("thickness", np.linspace(3, 9, 41))):
        rates = np.array([sim.expected_rate(dict(MID, **{name: v}), "lf") for v in grid])
        first = np.diff(rates)
        second = np.diff(rates, 2)
        tol = 1e-4 * rates.mean()
        # no jumps: no step is much larger than its neighbours; slopes change gradually
        step = np.abs(first)
        neighbours = np.maximum(np.r_[step[1], step[:-1]], np.r_[step[1:], step[-2]])
        assert (step <= 2 * neighbours + tol).all(), name
        assert np.abs(second).max() < 0.3 * step.max() + tol, name


def test_hf_correlated_with_lf_but_biased(sim):
    designs = sim.space.sample(48, seed=4)
    lf = np.array([sim.expected_rate(r.to_dict(), "lf") for _, r in designs.iterrows()])
    hf = np.array([sim.expected_rate(r.to_dict(), "hf") for _, r in designs.iterrows()])
    corr = np.corrcoef(lf, hf)[0, 1]
    assert 0.7 < corr < 0.95
    assert np.mean(hf / lf) > 1.1                         # biased: HF is not a rescaled LF


def test_interactions_between_parameters(sim):
    def r(**kw):
        return sim.expected_rate(dict(MID, **kw), "lf")
    # the effect of thickness depends on the radius (leak of thermal neutrons near the array)
    near = r(radius=95, thickness=12) / r(radius=95, thickness=3)
    far = r(radius=200, thickness=12) / r(radius=200, thickness=3)
    assert abs(near - far) > 0.1


def test_track_record_is_consistent_with_the_birth_level_probability(sim):
    """ncross/thermalised/escaped are a track record: averaged over them, t is t(θ, φ_birth)."""
    ev = sim.simulate(MID, 400_000, "lf", seed=4, with_truth=True)
    frame = ev.to_pandas()
    assert {"ncross", "thermalised", "escaped"} <= set(ev.phi_names)
    assert set(np.unique(frame.thermalised)) <= {0, 1} and (frame.escaped <= frame.thermalised).all()
    assert (frame.thermalised[frame.ncross == 0] == 0).all()          # no panel crossed, never thermalised
    assert 0.01 < frame.thermalised.mean() < 0.99
    birth = {k: frame[k].to_numpy() for k in mod.BIRTH_COLUMNS}
    t_birth = sim.capture_probability(MID, birth)
    # the per-event truth given the track averages (over the track draws) to the birth-level t
    assert frame.t_true.mean() == pytest.approx(t_birth.mean(), rel=0.03)
    assert frame.t_true.mean() == pytest.approx(sim.expected_rate(MID, "lf"), rel=0.03)
    # given the track, the design's effect is visible in every event: thermalised, non-escaped ones never capture
    stuck = (frame.thermalised == 1) & (frame.escaped == 0)
    assert stuck.any() and frame.t_true[stuck].max() == 0.0 and frame.outcome[stuck].sum() == 0
