"""θ* for people: a table of parameters with integers as integers, sensible digits and units."""

from __future__ import annotations

import json

from rarefy import DesignSpace, Parameter
from rarefy.optim.design import OptimumResult, theta_rows

SPACE = DesignSpace([Parameter("radius", 90, 250, unit="cm"), Parameter("npanels", 4, 360, integer=True),
                     Parameter("theta", 0, 90, unit="deg")])


def _result(**kw) -> OptimumResult:
    return OptimumResult({"radius": 101.234567, "npanels": 42.0, "theta": 0.4123456}, 1.23456e-5, 2.3456e-6, "mean",
                         "hf", **kw)


def test_theta_rows_with_the_space():
    res = _result(space=SPACE, rate_unit="1/neutron")
    assert res.theta_rows() == [("radius", "101.2", "cm"), ("npanels", "42", ""), ("theta", "0.4123", "deg")]
    lines = res.summary()
    assert lines[0] == "θ*:"
    assert lines[1:4] == ["  radius   101.2 cm", "  npanels     42", "  theta   0.4123 deg"]
    assert lines[4] == "hf rate (mean): 1.235e-05 ± 2.3e-06 1/neutron"
    assert res.summary(theta=False) == lines[4:]


def test_without_a_space_no_units_and_four_digits():
    assert theta_rows({"a": 1 / 3, "b": 2.0}) == [("a", "0.3333", ""), ("b", "2", "")]
    assert _result().summary()[-1] == "hf rate (mean): 1.235e-05 ± 2.3e-06"


def test_to_dict_is_json_without_the_space():
    res = _result(space=SPACE, rate_unit="1/neutron")
    data = res.to_dict()
    assert "space" not in data and data["rate_unit"] == "1/neutron" and data["theta"]["npanels"] == 42.0
    json.dumps(data)
