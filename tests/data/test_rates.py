import numpy as np
import pandas as pd
import pytest

from rarefy import InputError, RateTable, count_variance


def test_count_variance_poisson_and_zero_rule():
    rate = np.array([0.2, 0.0, 0.0])
    k = np.array([4, 0, 0])
    # k >= 1: rate^2 / k; k = 0 with n: (1/n)^2
    np.testing.assert_allclose(count_variance(rate, k, n=np.array([20, 50, 100])), [0.01, 1 / 2500, 1 / 10000])
    # k = 0 without n: the one-count scale, by default the median rate/k of the other rows
    np.testing.assert_allclose(count_variance(rate, k), [0.01, 0.05**2, 0.05**2])
    np.testing.assert_allclose(count_variance(rate, k, scale=0.1), [0.01, 0.01, 0.01])


def frame(space2d, **over):
    df = pd.DataFrame({"a": [0.1, 0.5], "b": [0.2, 0.9], "fidelity": ["lf", "hf"], "rate": [1.0, 2.0], "var": [0.1, 0.2]})
    for k, v in over.items():
        df[k] = v
    return df


def test_rate_table_basics(space2d, tmp_path):
    t = RateTable(frame(space2d), space2d)
    assert t.fidelities == ["lf", "hf"] and len(t.subset("hf")) == 1
    assert t.designs("lf").shape == (1, 2)
    p = t.to_parquet(tmp_path / "r.parquet")
    back = RateTable.read_parquet(p, space2d)
    pd.testing.assert_frame_equal(back.frame, t.frame)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("col, values, msg", [
    ("rate", [1.0, np.nan], r"column 'rate', row 1: value nan is not a finite"),
    ("var", [0.1, -1.0], r"column 'var', row 1: noise variance -1.0 is negative"),
    ("a", [0.1, 1.5], r"column 'a', row 1: design value 1.5 is outside"),
])
def test_rate_table_rejects_bad_values(space2d, col, values, msg):
    with pytest.raises(InputError, match=msg):
        RateTable(frame(space2d, **{col: values}), space2d)


def test_rate_table_missing_column(space2d):
    with pytest.raises(InputError, match="column 'var'"):
        RateTable(frame(space2d).drop(columns="var"), space2d)


def test_count_variance_without_any_scale_is_an_error():
    with pytest.raises(ValueError, match="every count is 0"):
        count_variance(np.array([0.0, 0.0]), np.array([0, 0]))


@pytest.mark.parametrize("over, msg", [
    ({"k": [3, 12], "n": [10, 10]}, r"column 'k', row 1: signal count k = 12.0 exceeds the events thrown n = 10.0"),
    ({"k": [-1, 2], "n": [10, 10]}, r"column 'k', row 0: signal count k = -1.0 is negative"),
    ({"k": [1, 2], "n": [10, -5]}, r"column 'n', row 1: event count n = -5.0 must be at least 1"),
    ({"k": [0, 2], "n": [0, 10]}, r"column 'n', row 0: event count n = 0.0 must be at least 1"),
    ({"k": [1.5, 2], "n": [10, 10]}, r"column 'k', row 0: count k = 1.5 is not a whole number"),
    ({"k": [1, 2], "n": [10, 10.25]}, r"column 'n', row 1: count n = 10.25 is not a whole number"),
    ({"k": [1, "many"]}, r"column 'k', row 1: value 'many' is not a finite number"),
    ({"n": [np.inf, 4]}, r"column 'n', row 0: value inf is not a finite number"),
    ({"rate": [np.inf, 1.0]}, r"column 'rate', row 0: value inf is not a finite number"),
    ({"var": [0.1, np.nan]}, r"column 'var', row 1: value nan is not a finite number"),
    ({"var": [-np.inf, 0.1]}, r"column 'var', row 0: value -inf is not a finite number"),
    ({"cost_cpu_h": [1.0, -2.0]}, r"column 'cost_cpu_h', row 1: cost -2.0 CPU-hours is negative"),
])
def test_rate_table_rejects_bad_counts_and_noise(space2d, over, msg):
    with pytest.raises(InputError, match=msg) as err:
        RateTable(frame(space2d, **over), space2d, source="rates.parquet")
    assert "\n" not in str(err.value) and str(err.value).startswith("rates.parquet, ")


def test_rate_table_takes_missing_counts_and_whole_counts(space2d):
    t = RateTable(frame(space2d, k=[np.nan, 3.0], n=[np.nan, 3.0], cost_cpu_h=[np.nan, 0.0]), space2d)
    assert t.frame["k"].iloc[1] == 3 and np.isnan(t.frame["n"].iloc[0])


def test_fit_refuses_more_signal_than_events_naming_the_file_row(tmp_path):
    import rarefy
    from rarefy.config import config_from_dict

    data = pd.DataFrame({"x": [0.1, 0.4, 0.8, 0.6], "flag": ["lo", "hi", "lo", "hi"], "k": [3, 4, 120, 5],
                         "n": [100, 100, 100, 100]})
    data["y"] = data["k"] / data["n"]
    data.to_csv(tmp_path / "runs.csv", index=False)
    noise = {"counts": "k", "events": "n"}
    cfg = config_from_dict({"space": {"parameters": {"x": {"low": 0, "high": 1}}}, "data": {"paths": "runs.csv"},
                            "fidelities": [{"name": "lo", "filter": {"flag": "lo"}, "value": "y", "noise": noise},
                                           {"name": "hi", "filter": {"flag": "hi"}, "value": "y", "noise": noise}],
                            "surrogate": {"restarts": 1}}, base=tmp_path)
    with pytest.raises(InputError) as err:
        rarefy.fit(cfg, tmp_path / "run")
    text = str(err.value)
    assert "\n" not in text and "runs.csv" in text and "row 2" in text and "k = 120.0" in text and "n = 100.0" in text
    assert not (tmp_path / "run").exists()
