"""Discrete φ columns as categorical heads: exact marginals and θ dependence, determinism, files, old generators."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rarefy.config import GenerateConfig
from rarefy.data.events import EventTable
from rarefy.errors import InputError
from rarefy.generate import Generator, fit_generator
from rarefy.generate.discrete import DiscreteHeads, select_discrete
from rarefy.space import DesignSpace, Parameter

OLD = Path(__file__).parent / "data" / "old_generator"
CFG = {"epochs": 12, "batch_size": 256, "flow": {"transforms": 2, "hidden": [32, 32]}, "discrete_hidden": [32, 32],
       "patience": None}


def flags(n_runs: int = 12, n: int = 2000, seed: int = 0) -> tuple[EventTable, DesignSpace]:
    """x ~ N(0, 1); a flag d ~ Bernoulli(sigmoid(4x + 6a − 3)) (depends on x and on the design a); a rarer
    flag e = d · Bernoulli(0.1 + 0.4a) (only ever 1 when d is: like the moderator's thermalised / escaped)."""
    space = DesignSpace([Parameter("a", 0.0, 1.0)])
    rng = np.random.default_rng(seed)
    tables = []
    for i in range(n_runs):
        a = (i + rng.random()) / n_runs
        x = rng.normal(0.0, 1.0, n)
        d = (rng.random(n) < 1.0 / (1.0 + np.exp(-(4.0 * x + 6.0 * a - 3.0)))).astype(float)
        e = d * (rng.random(n) < 0.1 + 0.4 * a)
        tables.append(EventTable.from_arrays({"a": a}, {"x": x, "d": d, "e": e}, np.zeros(n, np.int8),
                                             fidelity="lf", run_id=f"run-{i}"))
    return EventTable.concat(tables), space


def exact(a: float) -> dict[str, float]:
    """P(d = 1), P(e = 1) and P(d = 1 | x < 0) at design a (quadrature over x on a fine grid)."""
    x = np.linspace(-8.0, 8.0, 200_001)
    w = np.exp(-0.5 * x**2)
    p = 1.0 / (1.0 + np.exp(-(4.0 * x + 6.0 * a - 3.0)))
    neg = x < 0
    pd = float((w * p).sum() / w.sum())
    return {"d": pd, "e": pd * (0.1 + 0.4 * a), "d_given_x_neg": float((w * p)[neg].sum() / w[neg].sum())}


def errors(gen: Generator, designs: tuple[float, ...] = (0.15, 0.5, 0.85), n: int = 40_000) -> dict[str, float]:
    """Largest |generated − exact| over the designs of each probability, and the fraction of e = 1 with d = 0."""
    out = {"d": 0.0, "e": 0.0, "d_given_x_neg": 0.0, "e_without_d": 0.0}
    for i, a in enumerate(designs):
        s = gen.sample_array({"a": a}, n, seed=i)
        got = {"d": s[:, 1].mean(), "e": s[:, 2].mean(), "d_given_x_neg": s[s[:, 0] < 0, 1].mean()}
        for k, v in exact(a).items():
            out[k] = max(out[k], abs(float(got[k]) - v))
        out["e_without_d"] = max(out["e_without_d"], float(np.mean((s[:, 2] > 0) & (s[:, 1] == 0))))
    return out


def test_heads_reproduce_the_discrete_marginals_and_their_theta_dependence():
    events, space = flags()
    gen = fit_generator(events, space, GenerateConfig(**CFG), seed=0).generator
    assert gen.discrete is not None and gen.discrete.columns == ["d", "e"] and gen.phi_names == ["x", "d", "e"]
    lo, hi = gen.sample_array({"a": 0.15}, 40_000, seed=1), gen.sample_array({"a": 0.85}, 40_000, seed=2)
    assert set(np.unique(lo[:, 1:])) <= {0.0, 1.0}
    # P(d = 1) rises from 0.26 to 0.74 between the designs, P(e = 1) from 0.04 to 0.32: reproduced to 0.02
    for s, a in ((lo, 0.15), (hi, 0.85)):
        ex = exact(a)
        assert abs(s[:, 1].mean() - ex["d"]) < 0.02 and abs(s[:, 2].mean() - ex["e"]) < 0.02
        assert abs(s[s[:, 0] < 0, 1].mean() - ex["d_given_x_neg"]) < 0.02   # and its dependence on x
        assert np.mean((s[:, 2] > 0) & (s[:, 1] == 0)) < 0.002              # e only where d
    # the exact discrete likelihood: the heads' probabilities over every (d, e) sum to one
    z = torch.randn(5, 1)
    ctx = torch.rand(5, 1)
    total = sum(torch.exp(gen.discrete.log_prob(z, ctx, torch.tensor([[i, j]] * 5))) for i in (0, 1) for j in (0, 1))
    torch.testing.assert_close(total, torch.ones(5))


@pytest.mark.slow
def test_heads_beat_dequantisation_on_the_same_budget():
    events, space = flags()
    heads = errors(fit_generator(events, space, GenerateConfig(**CFG), seed=0).generator)
    deq = errors(fit_generator(events, space, GenerateConfig(discrete="dequantise", **CFG), seed=0).generator)
    assert max(heads[k] for k in ("d", "e", "d_given_x_neg")) < 0.02
    assert sum(heads.values()) < 0.5 * sum(deq.values()), (heads, deq)


def test_same_seed_same_events_and_files_round_trip(tmp_path):
    events, space = flags(n_runs=4, n=500)
    cfg = GenerateConfig(**{**CFG, "epochs": 2})
    fit = fit_generator(events, space, cfg, seed=3)
    gen = fit.generator
    again = fit_generator(events, space, cfg, seed=3).generator
    theta = {"a": 0.4}
    s = gen.sample_array(theta, 3000, seed=1)
    np.testing.assert_array_equal(s, again.sample_array(theta, 3000, seed=1))
    assert not np.array_equal(s[:, 1:], gen.sample_array(theta, 3000, seed=2)[:, 1:])
    assert "val_nll_discrete" in fit.history[-1] and gen.info["categorical"] == ["d", "e"]
    gen.save(tmp_path / "g")
    meta = json.loads((tmp_path / "g" / "generator.json").read_text())
    assert meta["discrete"]["columns"] == ["d", "e"] and meta["discrete"]["values"] == [[0.0, 1.0], [0.0, 1.0]]
    back = Generator.load(tmp_path / "g")
    np.testing.assert_array_equal(back.sample_array(theta, 3000, seed=1), s)
    unit = np.full((len(s), 1), 0.4)
    np.testing.assert_allclose(back.log_prob(unit, s), gen.log_prob(unit, s), rtol=1e-6)
    s[0, 1] = 7.0                                                   # a value the column never took: probability 0
    assert back.log_prob(unit[:2], s[:2])[0] == -np.inf and np.isfinite(back.log_prob(unit[:2], s[:2])[1])
    (tmp_path / "g" / "discrete.pt").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="discrete heads' weights"):
        Generator.load(tmp_path / "g")


def test_dequantise_keeps_every_column_in_the_flow_and_a_saved_old_generator_loads(tmp_path):
    events, space = flags(n_runs=4, n=500)
    gen = fit_generator(events, space, GenerateConfig(**{**CFG, "epochs": 1}, discrete="dequantise"), seed=0).generator
    assert gen.discrete is None and gen.features.names == ["x", "d", "e"] and gen.info["categorical"] == []
    # a generator written before discrete heads existed (no 'discrete' key, no discrete.pt)
    shutil.copytree(OLD, tmp_path / "old")
    assert "discrete" not in json.loads((tmp_path / "old" / "generator.json").read_text())
    old = Generator.load(tmp_path / "old")
    assert old.discrete is None and old.phi_names == ["x", "d", "e"]
    s = old.sample_array({"a": 0.5}, 500, seed=0)
    np.testing.assert_array_equal(s, old.sample_array({"a": 0.5}, 500, seed=0))
    assert set(np.unique(s[:, 1])) <= {0.0, 1.0}


def test_auto_picks_few_valued_integer_columns_and_leaves_the_flow_one():
    rng = np.random.default_rng(0)
    phi = np.column_stack([rng.normal(size=100), rng.integers(0, 3, 100), rng.integers(0, 50, 100)]).astype(float)
    names, integer = ["x", "k", "many"], [False, True, True]
    assert select_discrete(phi, names, integer, "auto", 32) == [1]
    assert select_discrete(phi, names, integer, "auto", 64) == [1, 2]
    assert select_discrete(phi, names, integer, "dequantise", 32) == []
    assert select_discrete(phi[:, 1:], names[1:], integer[1:], "auto", 64) == []   # nothing left for the flow
    heads = DiscreteHeads(names, ["k"], [[0.0, 1.0, 2.0]], 2, 1, [8])
    phi_c, idx = heads.split(phi)
    np.testing.assert_array_equal(heads.join(phi_c, idx), phi)
