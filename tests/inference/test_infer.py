"""Inference: closed-form marginal likelihood, emcee posterior, outputs, CLI, bad input."""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad
from typer.testing import CliRunner

import rarefy
from rarefy.cli import app
from rarefy.config import config_from_dict
from rarefy.errors import InputError
from rarefy.inference.likelihood import RateLikelihood, marginal_loglike, split_normal_logpdf


@pytest.mark.parametrize("mu,sd", [(10.0, 3.0), (30.0, 8.0), (-5.0, 2.0), (17.0, 0.5)])
def test_marginal_likelihood_matches_quadrature(mu, sd):
    f = lambda r: np.exp(split_normal_logpdf(r, 17, 10, 6.7) - 0.5 * ((r - mu) / sd) ** 2) / np.sqrt(2 * np.pi) / sd
    num = quad(f, -300, 300, points=[17, mu], limit=400)[0]
    assert marginal_loglike(np.array([mu]), np.array([sd]), 17, 10, 6.7)[0] == pytest.approx(np.log(num), rel=1e-6)


def test_split_normal_generative_model_matches_likelihood():
    lik, rng = RateLikelihood(), np.random.default_rng(0)
    obs = np.array([lik.sample_observation(20.0, rng) for _ in range(20000)])
    assert np.mean(obs < 20.0) == pytest.approx(10 / 16.7, abs=0.01)  # mass below R: width `plus`


def _config(tmp_path, steps=1200):
    # toy "formation efficiency": rate per event rises with x1, flat in x2
    rng = np.random.default_rng(1)
    x = rng.uniform([0, 0], [1, 1], size=(40, 2))
    rate = 1e-3 * (0.2 + 1.6 * x[:, 0])
    frame = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "rate": rate + rng.normal(0, 2e-5, 40), "sd": 2e-5})
    frame.to_csv(tmp_path / "rates.csv", index=False)
    return {
        "seed": 3,
        "space": {"parameters": {"x1": {"low": 0, "high": 1}, "x2": {"low": 0, "high": 1}}},
        "data": {"paths": [str(tmp_path / "rates.csv")]},
        "fidelities": [{"name": "hf", "value": "rate", "noise": {"std": "sd"}}],
        "surrogate": {"kind": "pce", "degree": 2},
        # R = rate / 1000 Msun * 0.015 * 1e9 = 1.5e4 * rate: 3 ... 27 Gpc^-3 yr^-1 over x1
        "infer": {"msun_per_event": 1000.0, "walkers": 16, "steps": steps, "burn": steps // 3,
                  "observation": {"rate": 15.0, "plus": 1.0, "minus": 1.0}},
    }


def test_infer_writes_posterior_corner_summary(tmp_path):
    cfg = config_from_dict(_config(tmp_path))
    res = rarefy.infer(cfg, tmp_path / "run")
    out = tmp_path / "run"
    for name in ("posterior.nc", "corner.png", "summary.json", "config.yaml", "surrogate/model.json"):
        assert (out / name).exists(), name
    s = json.loads((out / "summary.json").read_text())
    # R = 15 ± 1 -> x1 = (15/1.5e4 - 0.2)/1.6 ≈ 0.5 (± 0.04); x2 unconstrained (uniform prior)
    p = s["parameters"]
    assert p["x1"]["median"] == pytest.approx(0.5, abs=0.03)
    assert p["x1"]["ci68"][0] < 0.5 < p["x1"]["ci68"][1] and p["x1"]["ci68"][1] - p["x1"]["ci68"][0] < 0.15
    assert p["x2"]["ci95"][1] - p["x2"]["ci95"][0] > 0.8
    assert p["x1"]["ci95"][0] <= p["x1"]["ci68"][0] <= p["x1"]["median"] <= p["x1"]["ci68"][1] <= p["x1"]["ci95"][1]
    assert s["max_rhat"] < 1.05 and set(s["rhat"]) == {"x1", "x2"}
    idata = az.from_netcdf(out / "posterior.nc")
    assert idata.posterior["x1"].shape == (16, 800)
    # deterministic per seed
    again = rarefy.infer(cfg, tmp_path / "run2")
    assert np.array_equal(again.sampler.chains, res.sampler.chains)


def test_infer_cli_and_bad_input(tmp_path):
    import yaml

    raw = _config(tmp_path, steps=60)
    (tmp_path / "infer.yaml").write_text(yaml.safe_dump(raw))
    r = CliRunner().invoke(app, ["infer", str(tmp_path / "infer.yaml"), "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cli" / "summary.json").exists()
    raw["infer"]["priors"] = {"nope": {"kind": "uniform"}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    r = CliRunner().invoke(app, ["infer", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "nope" in r.output and not (tmp_path / "bad").exists()
    raw["infer"] = {"msun_per_event": 1.0, "steps": 10, "burn": 20}
    with pytest.raises(InputError, match="burn"):
        config_from_dict(raw)


def test_degenerate_starting_points_are_refused_before_any_fit(tmp_path, monkeypatch):
    import yaml

    import rarefy.inference.run as run_module

    raw = _config(tmp_path, steps=60)
    raw["infer"]["priors"] = {"x1": {"kind": "normal", "mu": 0.5, "sigma": 1e-300}}  # every walker at one x1
    (tmp_path / "infer.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(run_module, "_surrogate", lambda cfg: pytest.fail("fitted before the priors were checked"))
    r = CliRunner().invoke(app, ["infer", str(tmp_path / "infer.yaml"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().count("\n") == 0 and "starting points drawn from the prior are degenerate (x1)" in r.stderr
    assert not (tmp_path / "out").exists()


def test_prior_ppf_maps_the_unit_cube_to_the_priors(tmp_path):
    from scipy.stats import truncnorm

    from rarefy.data.mapping import load_rate_table
    from rarefy.jobs.fit import build_surrogate
    from rarefy.inference.run import make_posterior

    raw = _config(tmp_path)
    raw["infer"]["priors"] = {"x1": {"kind": "uniform", "low": 0.2, "high": 0.6},
                              "x2": {"kind": "normal", "mu": 0.3, "sigma": 0.2}}
    cfg = config_from_dict(raw)
    sur = build_surrogate(cfg).fit(load_rate_table(cfg))
    post = make_posterior(cfg, sur)
    u = np.array([[0.0, 0.5], [0.5, 0.1], [1.0, 0.9]])
    x = post.prior_ppf(u)
    assert x[:, 0].tolist() == pytest.approx([0.2, 0.4, 0.6])
    a, b = (0 - 0.3) / 0.2, (1 - 0.3) / 0.2
    assert x[:, 1] == pytest.approx(truncnorm.ppf([0.5, 0.1, 0.9], a, b, loc=0.3, scale=0.2))
    assert np.isfinite(post(x)).all()       # every mapped point lies inside the prior's support
