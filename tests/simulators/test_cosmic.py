"""The COSMIC binary-black-hole adapter: a tiny population evolved for real (needs the ``cosmic`` extra)."""

from __future__ import annotations

import numpy as np
import pytest

import rarefy
from rarefy.errors import InputError
from rarefy.simulators.cosmic import PHI_COLUMNS, THETA_NAMES, CosmicBBH, cosmic_space, default_bse

pytest.importorskip("cosmic", reason="the 'cosmic' extra (cosmic-popsynth) is not installed: pip install '.[cosmic]'")

THETA = {"log10_z": -3.0, "alpha_ce": 1.0, "sigma_bh": 100.0, "sigma_ns": 265.0}


@pytest.fixture(scope="module")
def sim() -> CosmicBBH:
    return rarefy.simulators.get("cosmic")


@pytest.fixture(scope="module")
def events(sim):
    return sim.simulate(THETA, 200, "lf", seed=5)


def test_tiny_population_gives_a_correct_event_table(events):
    assert len(events) == 200
    assert events.theta_names == list(THETA_NAMES)
    assert events.phi_names == list(PHI_COLUMNS)
    df = events.to_pandas()
    for k, v in THETA.items():
        assert np.all(df[k] == v)
    assert set(np.unique(df["outcome"])) <= {0, 1}
    assert (df["fidelity"] == "lf").all()
    # the mass cut: both ZAMS masses above 8 Msun, below the 150 Msun IMF limit, m2 <= m1
    assert (df["m1_msun"] > 8).all() and (df["m2_msun"] > 8).all() and (df["m1_msun"] <= 150).all()
    assert (df["m2_msun"] <= df["m1_msun"] * (1 + 1e-9)).all()
    assert (df["porb_day"] > 0).all() and (df["sep_rsun"] > 0).all()
    assert ((df["ecc"] >= 0) & (df["ecc"] < 1)).all()
    assert (df[["vkick1_kms", "vkick2_kms"]] >= 0).all().all()
    # merger delay times exist exactly for the mergers and lie within a Hubble time
    merged = df["outcome"] == 1
    assert df.loc[merged, "t_merge_myr"].between(0, 13_700).all()
    assert df.loc[~merged, "t_merge_myr"].isna().all()
    # represented star-forming mass per evolved binary: hundreds of Msun (singles + light binaries cut away)
    m = df["msun_per_binary"].iloc[0]
    assert 200 < m < 2000 and np.allclose(df["msun_per_binary"], m)
    # BBH mergers at Z = 1e-3 are rare but present: a few per cent of massive binaries at most
    assert 0 <= events.k <= 20


def test_deterministic_per_seed(sim, events):
    again = sim.simulate(THETA, 200, "lf", seed=5)
    a, b = events.to_pandas(), again.to_pandas()
    assert a.fillna(-1).equals(b.fillna(-1))


def test_theta_maps_onto_bse(sim):
    bse, cols = sim.bse_settings({**THETA, "alpha_ce": 3.0, "sigma_bh": 500.0, "sigma_ns": 250.0})
    defaults = default_bse()
    assert bse["alpha1"] == [3.0, 3.0] and bse["sigma"] == 250.0 and bse["kickflag"] == 1
    assert cols["bhsigmafrac"] == pytest.approx(2.0)
    assert bse["bhflag"] == defaults["bhflag"] and bse["windflag"] == defaults["windflag"]
    with pytest.raises(InputError, match="lacks"):
        sim.bse_settings({"alpha_ce": 1.0})


def test_kick_dispersions_reach_cosmic(sim):
    """No kicks at σ = 0 (up to 20 km/s ECSN); large ones at σ_BH = σ_NS = 1000 km/s."""
    calm = sim.simulate({**THETA, "sigma_bh": 0.0, "sigma_ns": 0.0}, 60, "lf", seed=1).to_pandas()
    wild = sim.simulate({**THETA, "sigma_bh": 1000.0, "sigma_ns": 1000.0}, 60, "lf", seed=1).to_pandas()
    assert calm[["vkick1_kms", "vkick2_kms"]].to_numpy().max() < 100
    assert wild[["vkick1_kms", "vkick2_kms"]].to_numpy().max() > 500


def test_space_and_fidelities(sim):
    space = cosmic_space()
    assert space.names == list(THETA_NAMES)
    assert 10 ** space.parameters[0].low == pytest.approx(1e-4)
    assert sim.fidelities.names == ["lf", "hf"]
    assert sim.fidelities["hf"].events_per_run > sim.fidelities["lf"].events_per_run
    with pytest.raises(InputError):
        sim.simulate({**THETA, "log10_z": 0.0}, 10, "lf", seed=0)


def _kroupa_msun_per_massive_binary() -> float:
    """Star-forming mass per binary with both ZAMS masses > 8 M☉, by quadrature.

    COSMIC's sampler as the adapter calls it: primaries from Kroupa (2001) on 0.08–150 M☉
    (slopes 1.3 below 0.5 M☉, 2.3 above), binary fraction 0.5, q uniform on [0.1, 1].
    """
    from scipy.integrate import quad

    def imf(m: float) -> float:
        return (m / 0.5) ** -1.3 if m < 0.5 else (m / 0.5) ** -2.3

    n = quad(imf, 0.08, 0.5)[0] + quad(imf, 0.5, 150)[0]
    mean_m1 = (quad(lambda m: m * imf(m), 0.08, 0.5)[0] + quad(lambda m: m * imf(m), 0.5, 150, limit=200)[0]) / n
    p_massive = quad(lambda m: imf(m) * min(1.0, (1 - 8 / m) / 0.9), 8, 150, limit=200)[0] / n
    return mean_m1 * (1 + 0.5 * 0.55) / (0.5 * p_massive)


def test_mass_per_binary_counts_only_the_binaries_kept(sim):
    """The sampler returns more massive binaries than asked for (it stops after the batch that
    reaches n); its total mass belongs to all of them, not to the n kept.

    With seed 11 and n = 1,000 it returns 1,068: dividing the whole mass by the 1,000 kept
    gives 531 M☉ per binary (+6%); the mass per returned binary is 497 M☉, within the ~3%
    sampling scatter of the 500.1 M☉ of the IMF quadrature.
    """
    expected = _kroupa_msun_per_massive_binary()
    assert expected == pytest.approx(500.1, abs=0.1)
    assert sim.msun_per_binary(1000, seed=11) == pytest.approx(expected, rel=0.02)
