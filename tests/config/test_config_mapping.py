import numpy as np
import pandas as pd
import pytest

import rarefy
from rarefy import InputError, load_config, load_rate_table
from rarefy.config import config_from_dict


def test_resum_config_feeds_three_fidelities_from_one_file(legend_dir):
    cfg = load_config(legend_dir / "resum.yaml")
    table = load_rate_table(cfg)
    counts = table.frame["fidelity"].value_counts().to_dict()
    assert counts == {"lf-cnp": 309, "hf-cnp": 10, "hf": 10}
    f = table.frame
    # hf and hf-cnp rows come from the same file rows: same run ids and designs
    hf, hfc = f[f.fidelity == "hf"], f[f.fidelity == "hf-cnp"]
    assert hf["run_id"].tolist() == hfc["run_id"].tolist()
    np.testing.assert_array_equal(hf[cfg.space.build().names].to_numpy(), hfc[cfg.space.build().names].to_numpy())
    # std noise: var = y_cnp_err^2 ; counts noise: var = rate^2 / captures
    raw = pd.read_csv(legend_dir / "data" / "Ge77_rates_CNP_v1.6.csv", index_col=0)
    first_hf = raw[raw["Fidelity"] == 1].iloc[0]
    assert np.isclose(hfc["var"].iloc[0], first_hf["y_cnp_err"] ** 2)
    assert np.isclose(hf["var"].iloc[0], first_hf["y_rGe77[nuc/(kg*yr)]"] ** 2 / first_hf["y_raw"])
    assert np.isclose(hf["rate"].iloc[0], first_hf["y_rGe77[nuc/(kg*yr)]"])


def test_target_defaults_to_last_fidelity(legend_dir):
    cfg = load_config(legend_dir / "legend.yaml")
    assert cfg.target == cfg.fidelity_names[-1]


def _raw(tmp_path, **over):
    df = pd.DataFrame({"x": [0.1, 0.4, 0.8], "flag": ["lo", "hi", "lo"], "y": [1.0, 2.0, 3.0],
                       "k": [0, 4, 9], "n": [100, 100, 100]})
    df.to_parquet(tmp_path / "r.parquet")
    raw = {"space": {"parameters": {"x": {"low": 0, "high": 1}}},
           "data": {"paths": "r.parquet"},
           "fidelities": [{"name": "lo", "filter": {"flag": "lo"}, "value": "y", "noise": {"counts": "k", "events": "n"}},
                          {"name": "hi", "filter": {"flag": ["hi"]}, "value": "y"}]}
    raw.update(over)
    return raw


def test_parquet_string_filters_and_k_zero_rule(tmp_path):
    cfg = config_from_dict(_raw(tmp_path), base=tmp_path)
    t = load_rate_table(cfg)
    lo = t.frame[t.frame.fidelity == "lo"]
    np.testing.assert_allclose(lo["var"], [1 / 100**2, 9.0 / 9])
    assert (t.frame[t.frame.fidelity == "hi"]["var"] == 0).all()


@pytest.mark.parametrize("over, msg", [
    ({"target": "mid"}, "unknown fidelity 'mid' in 'target'"),
    ({"surrogate": {"kernel": "cubic"}}, "surrogate.kernel"),
    ({"fidelities": []}, "at least one fidelity"),
    ({"space": {"parameters": {"x": {"low": 1, "high": 0}}}}, "low < high"),
])
def test_config_errors_are_one_line(tmp_path, over, msg):
    with pytest.raises(InputError, match=msg) as info:
        config_from_dict(_raw(tmp_path, **over), base=tmp_path, source="c.yaml")
    assert "\n" not in str(info.value) and str(info.value).startswith("c.yaml")


def test_noise_needs_one_source(tmp_path):
    raw = _raw(tmp_path)
    raw["fidelities"][0]["noise"] = {"counts": "k", "std": "y"}
    with pytest.raises(InputError, match="at most one of std / variance / counts"):
        config_from_dict(raw, base=tmp_path)


def test_negative_counts_are_rejected(tmp_path):
    raw = _raw(tmp_path)
    pd.DataFrame({"x": [0.1, 0.4], "flag": ["lo", "hi"], "y": [1.0, 2.0], "k": [-1, 4], "n": [10, 10]}).to_parquet(tmp_path / "r.parquet")
    with pytest.raises(InputError, match=r"r.parquet, column 'k', row 0: value -1.0 must be >= 0"):
        load_rate_table(config_from_dict(raw, base=tmp_path))


def test_value_unit_is_optional_and_read(tmp_path):
    cfg = config_from_dict(_raw(tmp_path), base=tmp_path)
    assert [f.value_unit for f in cfg.fidelities] == ["", ""]
    raw = _raw(tmp_path)
    raw["fidelities"][1]["value_unit"] = "1/neutron"
    raw["space"]["parameters"]["x"]["unit"] = "cm"
    cfg = config_from_dict(raw, base=tmp_path)
    assert cfg.fidelity("hi").value_unit == "1/neutron"
    assert cfg.space.build()["x"].unit == "cm"


@pytest.mark.parametrize("example, value_unit", [
    ("legend/legend.yaml", "nuc/(kg yr)"), ("legend/resum.yaml", "nuc/(kg yr)"), ("moderator/run.yaml", "1/neutron"),
    ("moderator/run-denoised.yaml", "1/neutron"), ("moderator/simulate.yaml", "1/neutron"),
    ("moderator/denoise.yaml", "1/neutron")])
def test_examples_state_their_units(legend_dir, example, value_unit):
    cfg = load_config(legend_dir.parent / example)
    units = {p.name: p.unit for p in cfg.space.build().parameters}
    assert units["radius"] == units["thickness"] == units["length"] == "cm" and units["theta"] == "deg"
    assert units["npanels"] == ""  # a count
    assert cfg.fidelity(cfg.target).value_unit == value_unit
