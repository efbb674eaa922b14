"""The xlzd simulator (NEST): agreement with nestpy's own band and per-event tools, errors, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

nestpy = pytest.importorskip("nestpy")

import rarefy  # noqa: E402
from rarefy.config import config_from_dict  # noqa: E402
from rarefy.errors import InputError  # noqa: E402
from rarefy.simulators.xlzd import (  # noqa: E402
    Q_BB_KEV, XLZD, band_at, band_median, check_theta, relative_std, xlzd_space,
)

# reference design: a low drift field, where the leakage is large enough to measure with few events
REF = {"drift_field": 40.0, "gas_field": 8.3, "g1": 0.112, "e_lifetime": 9000.0}


def _getband_reference(s1: np.ndarray, s2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NR band from nestpy.GetBand (execNEST's S1 binning): mean S1 and mean log10(S2/S1) of each S1 bin.

    This build's GetBand returns, per S1 bin, the list of log10(S2) of its events, in input
    order. A second call with S2 = 1000·S1 returns 3 + log10(S1) for the same events (the
    binning depends on S1 only), so log10(S2/S1) follows event by event.
    """
    y_bins = nestpy.GetBand(list(s1), list(s2), False, 1)
    x_bins = nestpy.GetBand(list(s1), list(1000.0 * s1), False, 1)
    xs, ys = [], []
    for xb, yb in zip(x_bins, y_bins):
        xb = np.asarray([v for v in xb if v > -900], float) - 3.0
        yb = np.asarray([v for v in yb if v > -900], float)
        assert len(xb) == len(yb)
        if len(yb) >= 5:
            xs.append(np.mean(10**xb))
            ys.append(np.mean(yb - xb))
    return np.asarray(xs), np.asarray(ys)


def test_leakage_agrees_with_nestpy_getband_band():
    sim = XLZD()
    n = 20_000
    events = sim.simulate(REF, n, "hf", seed=7)
    k = events.k
    leak, leak_se = k / n, math.sqrt(k) / n
    # reference: independent NEST samples, NR band by nestpy.GetBand (bin means, linear interpolation in S1)
    det = sim.detector(REF)
    rng = np.random.default_rng(123)
    nr = sim._window_events(det, "nr", n, REF["drift_field"], [1001 + i for i in range(20)], rng)
    er = sim._window_events(det, "er", n, REF["drift_field"], [2001 + i for i in range(20)], rng)
    bx, by = _getband_reference(nr["s1"], nr["s2"])
    assert len(bx) > 20
    ref_k = int(np.sum(np.log10(er["s2"] / er["s1"]) < np.interp(er["s1"], bx, by)))
    ref, ref_se = ref_k / n, math.sqrt(ref_k) / n
    assert k >= 30 and ref_k >= 30  # a real rare-event rate, measured to ~15%
    assert abs(leak - ref) < 3.0 * math.hypot(leak_se, ref_se), (leak, ref, leak_se, ref_se)


def _nest_chain_energies(sim: XLZD, theta: dict, n: int, seed: int) -> np.ndarray:
    """Combined energies at Qββ from NEST's own per-event chain (FullCalculation, GetS1, GetS2: what execNEST does)."""
    det = sim.detector(theta)
    nc = nestpy.NESTcalc(det)
    rho = nc.density_liquid
    field = theta["drift_field"]
    g2_params = nc.CalculateG2(0)
    g2 = g2_params[3]  # extraction efficiency x single-electron size
    v_drift = nc.SetDriftVelocity(det.T_Kelvin, rho, field, det.p_bar)
    w_kev = nestpy.NESTcalc.WorkFunction(rho, 131.293, True).Wq_eV * 1e-3
    nestpy.RandomGen.rndm().set_seed(seed)
    pos = sim.positions(det, n, np.random.default_rng(seed))
    out = np.empty(n)
    beta = nestpy.interactions.beta
    for i in range(n):
        x, y, z = pos[i]
        # FullCalculation's positional order is NR yields, NR/ER widths, ER yields
        res = nc.FullCalculation(beta, Q_BB_KEV, rho, field, 131.293, 54.0, list(nestpy.default_nr_parameters),
                                 list(nestpy.default_nr_er_width_parameters), list(nestpy.default_er_parameters),
                                 False)
        dt = (det.TopDrift - z) / v_drift
        s1 = nc.GetS1(res.quanta, x, y, z, x, y, z, v_drift, v_drift, beta, i, field, Q_BB_KEV,
                      nestpy.S1CalculationMode.Hybrid, 0, [], [])
        s2 = nc.GetS2(res.quanta.electrons, x, y, z, x, y, z, dt, v_drift, i, field,
                      nestpy.S2CalculationMode.Full, 0, [], [], g2_params)
        s1c, s2c = s1[5], s2[7]  # corrected S1 and S2 in phd
        out[i] = w_kev * (s1c / det.g1 + s2c / g2) if (s1c > 0 and s2c > 0) else np.nan
    return out


def test_resolution_agrees_with_nest_event_chain():
    sim = XLZD()
    n = 3000
    events = sim.simulate(REF, n, "hf", seed=11)
    res, se = relative_std(events.to_pandas()["e_qbb_kev"].to_numpy(float))
    ref_e = _nest_chain_energies(sim, REF, n, seed=99)
    ref, ref_se = relative_std(ref_e)
    assert 0.003 < res < 0.02
    assert abs(np.nanmean(ref_e) / Q_BB_KEV - 1) < 0.02  # the combined scale is calibrated
    assert abs(res - ref) < 3.0 * math.hypot(se, ref_se), (res, ref, se, ref_se)


def test_relative_std_error_matches_bootstrap():
    rng = np.random.default_rng(0)
    x = 100.0 + rng.standard_t(6, 4000)  # heavy-ish tails: the kurtosis term matters
    r, se = relative_std(x)
    boot = [np.std(s, ddof=1) / np.mean(s) for s in (rng.choice(x, len(x)) for _ in range(400))]
    assert r == pytest.approx(np.std(x, ddof=1) / np.mean(x))
    assert se == pytest.approx(np.std(boot), rel=0.2)


def test_band_median_is_the_conditional_median():
    rng = np.random.default_rng(1)
    s1 = 10 ** rng.uniform(0.5, 1.9, 20_000)
    y = 2.0 - 0.3 * np.log10(s1) + 0.1 * rng.standard_normal(len(s1))
    band = band_median(s1, y)
    grid = np.array([5.0, 10.0, 40.0])
    np.testing.assert_allclose(band_at(band, grid), 2.0 - 0.3 * np.log10(grid), atol=0.01)


def test_deterministic_and_outcome_is_below_the_band():
    sim = rarefy.simulators.get("xlzd")
    a = sim.simulate(REF, 300, "lf", seed=3).to_pandas()
    b = sim.simulate(REF, 300, "lf", seed=3).to_pandas()
    assert a.equals(b)
    assert len(a) == 300 and ((a["s1c_phd"] >= 3) & (a["s1c_phd"] <= 80)).all()
    assert (a["outcome"] == (a["log10_s2c_s1c"] < a["nr_median"]).astype(int)).all()


@pytest.mark.parametrize("bad, name", [
    ({"drift_field": -100.0}, "drift_field"),
    ({"drift_field": 5.0}, "drift_field"),
    ({"gas_field": 0.0}, "gas_field"),
    ({"g1": 1.5}, "g1"),
    ({"e_lifetime": -1.0}, "e_lifetime"),
    ({"g1": float("nan")}, "g1"),
])
def test_unphysical_theta_is_a_clear_error(bad, name):
    with pytest.raises(InputError, match=f"{name} = .* outside NEST's physical range"):
        check_theta({**REF, **bad})
    with pytest.raises(InputError, match=name):
        XLZD().simulate({**REF, **bad}, 100, "lf", seed=0)


def test_unphysical_space_fails_before_any_run(tmp_path):
    space = xlzd_space()
    params = {p.name: {"low": p.low, "high": p.high, "unit": p.unit} for p in space.parameters}
    params["drift_field"]["low"] = -50.0
    cfg = config_from_dict({
        "space": {"parameters": params},
        "fidelities": [{"name": "lf", "value": "rate", "filter": {"fidelity": "lf"}}],
        "simulator": {"kind": "builtin", "name": "xlzd"},
        "campaign": {"runs": [{"fidelity": "lf", "runs": 2, "events": 50}], "executor": "sync"},
    })
    with pytest.raises(InputError, match="drift_field = -50 V/cm is outside NEST's physical range"):
        rarefy.simulate(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "events").exists()


def test_rarefy_run_with_a_negative_field_exits_2_before_any_run(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from rarefy.cli import app

    raw = {
        "space": {"parameters": {"drift_field": {"low": -100, "high": 600}, "gas_field": {"low": 6, "high": 11},
                                 "g1": {"low": 0.08, "high": 0.2}, "e_lifetime": {"low": 2000, "high": 20000}}},
        "fidelities": [{"name": "hf", "value": "rate", "filter": {"fidelity": "hf"}, "events": 100}],
        "simulator": {"kind": "builtin", "name": "xlzd"},
        "campaign": {"runs": [{"fidelity": "hf", "runs": 2}], "executor": "sync"},
        "objectives": [{"name": "leakage", "statistic": "rate", "log10": True},
                       {"name": "resolution", "statistic": "rel_std", "column": "e_qbb_kev"}],
        "loop": {"iterations": 1, "batch": 1},
    }
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert "drift_field = -100 V/cm is outside NEST's physical range" in res.output
    assert not (tmp_path / "run" / "events").exists() and not (tmp_path / "run" / "catalog.sqlite").exists()
