"""Multi-objective loop (rarefy.jobs.pareto): Pareto utilities, objective statistics, a tiny end-to-end run on xlzd."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rarefy.config import config_from_dict
from rarefy.errors import InputError
from rarefy.acquisition.multi_objective import hypervolume, non_dominated, reference_point
from rarefy.jobs.pareto import column_statistic


def test_non_dominated_and_hypervolume():
    y = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, 0.5], [2.5, 0.0]])
    assert non_dominated(y).tolist() == [True, True, False, True, False]
    # staircase up to (2, 2), by hand: 0.5*(2-1) + 0.5*(2-0.5) + 1*(2-0) = 3.25
    assert hypervolume(y, [2.0, 2.0]) == pytest.approx(3.25)
    assert hypervolume(np.array([[3.0, 3.0]]), [2.0, 2.0]) == 0.0  # outside the reference box


def test_column_statistics_and_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(10.0, 2.0, 20_000)
    m, vm = column_statistic(x, "mean")
    s, vs = column_statistic(x, "std")
    r, vr = column_statistic(np.append(x, np.nan), "rel_std")
    assert m == pytest.approx(10.0, abs=4 * math.sqrt(vm))
    assert s == pytest.approx(2.0, abs=4 * math.sqrt(vs))
    assert math.sqrt(vs) == pytest.approx(2.0 / math.sqrt(2 * 20_000), rel=0.05)  # normal: σ/sqrt(2n)
    assert r == pytest.approx(s / m, rel=1e-3) and vr > 0


def test_reference_point_default_and_configured():
    cfg = config_from_dict(_config(iterations=0))
    vals = np.array([[-3.0, 0.6], [-2.0, 0.8]])
    ref = reference_point(cfg.objectives, vals)
    assert ref == pytest.approx([-1.9, 0.82])
    cfg.objectives[0].reference = -1.5
    assert reference_point(cfg.objectives, vals)[0] == -1.5


def test_reference_point_does_not_depend_on_the_unit():
    cfg = config_from_dict(_config(iterations=0))
    vals = np.array([[-3.0, 0.6], [-2.0, 0.8]])
    for scale in (1e-12, 1e-3, 1e6):
        assert reference_point(cfg.objectives, vals * scale) == pytest.approx(reference_point(cfg.objectives, vals)
                                                                               * scale, rel=1e-12)


def test_one_objective_is_refused():
    raw = _config(iterations=0)
    raw["objectives"] = raw["objectives"][:1]
    with pytest.raises(InputError, match="two or more objectives"):
        config_from_dict(raw)
    raw = _config(iterations=0)
    raw["objectives"][1].pop("column")
    with pytest.raises(InputError, match="needs an event 'column'"):
        config_from_dict(raw)


def _config(iterations: int = 1) -> dict:
    return {
        "name": "tiny", "seed": 3,
        "space": {"parameters": {"drift_field": {"low": 25, "high": 600, "unit": "V/cm"},
                                 "gas_field": {"low": 6, "high": 11, "unit": "kV/cm"},
                                 "g1": {"low": 0.08, "high": 0.2}, "e_lifetime": {"low": 2000, "high": 20000, "unit": "us"}}},
        "fidelities": [{"name": "lf", "value": "rate", "filter": {"fidelity": "lf"}, "events": 80},
                       {"name": "hf", "value": "rate", "filter": {"fidelity": "hf"}, "events": 200}],
        "target": "hf",
        "surrogate": {"kind": "ar1", "restarts": 1, "max_iter": 40},
        "simulator": {"kind": "builtin", "name": "xlzd"},
        "campaign": {"runs": [{"fidelity": "lf", "runs": 5}, {"fidelity": "hf", "runs": 3, "designs": "lf"}],
                     "executor": "sync"},
        "objectives": [{"name": "leakage", "statistic": "rate", "log10": True},
                       {"name": "resolution", "statistic": "rel_std", "column": "e_qbb_kev", "scale": 100,
                        "max": 1.5, "unit": "%"}],
        "pareto": {"mc_samples": 16, "candidates": 48, "starts": 2, "steps": 2, "front_candidates": 64,
                   "front_max": 6},
        "loop": {"iterations": iterations, "batch": 2},
    }


def test_tiny_multiobjective_run_writes_front_report_and_resumes(tmp_path):
    pytest.importorskip("nestpy")
    import rarefy

    cfg = config_from_dict(_config(iterations=1))
    res = rarefy.run(cfg, tmp_path / "run", progress=False)
    r = json.loads((tmp_path / "run" / "result.json").read_text())
    assert r["iterations"] == 1 and r["runs"] == {"lf": 5, "hf": 5}
    assert 1 <= len(r["pareto_set"]) <= 6
    space = cfg.space.build()
    for p in r["pareto_set"]:
        x = np.array([[p["theta"][n] for n in space.names]])
        assert space.is_feasible(x).all()
        assert p["objectives"]["resolution"]["mean"] <= 1.5  # the outcome constraint holds on the front
        assert all(p["objectives"][o]["sigma"] > 0 for o in ("leakage", "resolution"))
    means = np.array([[p["objectives"][o]["mean"] for o in ("leakage", "resolution")] for p in r["pareto_set"]])
    assert non_dominated(means).all()
    assert r["hypervolume"] >= 0
    assert (tmp_path / "run" / "report" / "pareto.png").stat().st_size > 10_000
    assert (tmp_path / "run" / "report" / "front_designs.png").exists()
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3 and ".png\"" not in page  # one file, no links
    for header in ("drift_field [V/cm]", "e_lifetime [us]", "resolution [%]", "log10 leakage"):
        assert f"<th>{header}</th>" in page
    assert "config sha256" in page and r["provenance"]["config_sha256"] in page
    assert (tmp_path / "run" / "surrogates" / "leakage" / "model.json").exists()
    again = rarefy.run(cfg, tmp_path / "run", progress=False)  # finished: nothing is simulated again
    assert again.executed == 0 and res.executed == 10
    # qLogNParEGO on the same surrogates (loaded back from the run directory): feasible, distinct proposals
    from rarefy.acquisition.multi_objective import propose_pareto
    from rarefy.surrogate import AR1Surrogate

    surs = {o.name: AR1Surrogate.load(tmp_path / "run" / "surrogates" / o.name) for o in cfg.objectives}
    settings = cfg.pareto.model_copy(update={"acquisition": "qparego"})
    frame = __import__("pandas").read_parquet(tmp_path / "run" / "objectives.parquet")
    observed = frame[space.names].to_numpy(float)
    props = propose_pareto(surs, cfg.objectives, space, "hf", observed, np.array([-1.0, 2.0]), q=2,
                           settings=settings, seed=1)
    xs = np.stack([x for x, _ in props])
    assert len(props) == 2 and space.is_feasible(xs).all() and not np.allclose(xs[0], xs[1])
