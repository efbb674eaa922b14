import numpy as np
import pandas as pd
import pytest
import torch

from rarefy import DesignSpace, InputError, Parameter
from rarefy.space import format_number


@pytest.fixture
def panels() -> DesignSpace:
    return DesignSpace(
        [Parameter("radius", 90, 250, unit="cm"), Parameter("thickness", 2, 15, unit="cm"),
         Parameter("npanels", 4, 360, integer=True), Parameter("theta", 0, 90, unit="deg"),
         Parameter("length", 1, 150, unit="cm")],
        constraints=["r_out <= 265", "r_out - radius <= 20",
                     "npanels * thickness * length <= 1.05 * pi * (r_out**2 - radius**2)"],
        definitions={"r_out": "sqrt(radius**2 + length**2 + 2*radius*length*cos(radians(theta)))"},
    )


@pytest.mark.parametrize("method", ["sobol", "lhs", "random"])
def test_sample_returns_n_feasible_designs(panels, method):
    df = panels.sample(50, method=method, seed=1)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == panels.names and len(df) == 50
    assert panels.is_feasible(df).all()
    assert (df["npanels"] == df["npanels"].round()).all()
    assert df["npanels"].dtype.kind == "i"


def test_sample_is_deterministic_per_seed(panels):
    a, b, c = panels.sample(20, seed=3), panels.sample(20, seed=3), panels.sample(20, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_is_feasible_flags_each_violation(panels):
    ok = panels.sample(1, seed=0).iloc[0].to_dict()
    rows = [ok, {**ok, "radius": 80.0}, {**ok, "npanels": 10.5}, {**ok, "length": 150.0, "theta": 0.0}]
    mask = panels.is_feasible(pd.DataFrame(rows))
    assert mask.tolist() == [True, False, False, False]


def test_constraint_slack_is_differentiable_in_torch(panels):
    x = torch.tensor([[150.0, 5.0, 20.0, 30.0, 10.0]], dtype=torch.float64, requires_grad=True)
    values = {n: x[:, j] for j, n in enumerate(panels.names)}
    slack = panels._constraints[0].slack(values)
    slack.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("expr, msg", [
    ("radius <= __import__('os')", "only the functions"),
    ("radius + 1", "must have the form"),
    ("radius <= unknown", "unknown name"),
    ("radius <=", "not a valid expression"),
])
def test_bad_constraints_are_rejected(expr, msg):
    with pytest.raises(InputError, match=msg):
        DesignSpace([Parameter("radius", 0, 1)], constraints=[expr])


def test_unit_scaling_round_trip(panels):
    df = panels.sample(10, seed=0)
    x = df.to_numpy(float)
    u = panels.to_unit(x)
    assert (u >= 0).all() and (u <= 1).all()
    np.testing.assert_allclose(panels.from_unit(u), x)


def test_check_bounds_names_column_and_row(panels):
    df = panels.sample(3, seed=0)
    df.loc[2, "theta"] = 95.0
    with pytest.raises(InputError, match=r"f.csv, column 'theta', row 2: .*95.0.*\[0, 90\]"):
        panels.check_bounds(df, file="f.csv")


def test_serialisation_round_trip(panels):
    again = DesignSpace.from_dict(panels.to_dict())
    df = panels.sample(5, seed=0)
    assert again.names == panels.names and again.is_feasible(df).all()


def test_a_constraint_no_design_meets_is_named_and_sampling_stays_bounded():
    import resource

    from rarefy.errors import InputError

    space = DesignSpace([Parameter("radius", 90, 250), Parameter("length", 1, 150)],
                        constraints=["radius + length <= 400", "radius <= 10"])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError, match=r"constraint 'radius <= 10' is never met") as exc:
        space.sample(10, seed=0)
    assert "\n" not in str(exc.value)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 500


def test_a_tiny_feasible_region_names_the_constraint_met_least_often():
    from rarefy.errors import InputError

    space = DesignSpace([Parameter("x", 0, 1), Parameter("y", 0, 1)], constraints=["x + y <= 0.01"])
    with pytest.raises(InputError, match=r"only \d+ of 1000 feasible designs.*'x \+ y <= 0.01'"):
        space.sample(1000, seed=0)


@pytest.mark.parametrize("constraint", ["x <= 9**9**10", "x <= 1 / 0", "x <= 10.0**400"])
def test_constant_parts_that_cannot_be_computed_are_refused(constraint):
    from rarefy.errors import InputError

    with pytest.raises(InputError, match="constant part cannot be computed"):
        DesignSpace([Parameter("x", 0, 1)], constraints=[constraint])


@pytest.mark.parametrize("value, integer, text", [
    (123.456789, False, "123.5"), (90.0, False, "90"), (2.5, False, "2.5"), (0.1 + 0.2, False, "0.3"),
    (0.000123456, False, "1.235e-04"), (0.00123456, False, "0.001235"), (123456.7, False, "123500"),
    (2.5e7, False, "2.5e+07"), (-17.0004, False, "-17"), (0.0, False, "0"), (41.99999999, True, "42"),
    (7.0, True, "7"), (float("nan"), False, "nan"), (1.0, False, "1"),
])
def test_format_number(value, integer, text):
    assert format_number(value, integer=integer) == text


def test_theta_rows_round_integers_and_carry_units():
    space = DesignSpace([Parameter("radius", 90, 250, unit="cm"), Parameter("npanels", 4, 360, integer=True),
                         Parameter("theta", 0, 90, unit="deg")])
    theta = {"theta": 0.41234567, "radius": 101.23456, "npanels": 41.9999}
    assert space.theta_rows(theta) == [("radius", "101.2", "cm"), ("npanels", "42", ""), ("theta", "0.4123", "deg")]
    assert space.theta_rows(theta, digits=2)[0] == ("radius", "100", "cm")
    assert space.format_theta(theta) == "radius 101.2 cm, npanels 42, theta 0.4123 deg"
    with pytest.raises(InputError, match="npanels"):
        space.theta_rows({"radius": 100.0, "theta": 1.0})
