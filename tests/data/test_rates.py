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
