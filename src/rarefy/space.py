"""Design spaces: named, bounded parameters θ, constraints, and space-filling samplers.

A :class:`DesignSpace` knows the parameters of a detector (or population) design, their
bounds and units, which are integers, and which inequality constraints a feasible design
must satisfy. Constraints are written as expressions over parameter names, e.g.
``"npanels * thickness * length <= 1.05 * pi * (r_out**2 - radius**2)"``; they are
parsed once into a safe expression tree (no ``eval`` of arbitrary code) and evaluate on
numpy arrays and on torch tensors alike, so optimisers can use them differentiably.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import qmc

from .errors import InputError, fmt_value

__all__ = ["Parameter", "Constraint", "DesignSpace", "format_number", "text_table"]


def format_number(value: float, digits: int = 4, *, integer: bool = False) -> str:
    """``value`` for people: ``digits`` significant digits, trailing zeros dropped.

    Positional between 1e-3 and 1e6 in magnitude (``123.5``, ``0.001235``, ``123500``),
    scientific outside (``1.235e-04``); ``integer``: the nearest integer (``42``).
    """
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if integer:
        return str(int(round(value)))
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e6:
        return np.format_float_positional(value, precision=digits, unique=False, fractional=False, trim="-")
    mantissa, exponent = f"{value:.{max(digits - 1, 0)}e}".split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{exponent}"


def text_table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Rows of strings as aligned lines: the first column left-aligned, the second right-aligned
    (numbers), the others left-aligned; empty trailing cells leave no trailing spaces."""
    if not rows:
        return []
    widths = [max(len(r[j]) if j < len(r) else 0 for r in rows) for j in range(max(len(r) for r in rows))]
    lines = []
    for row in rows:
        cells = [c.rjust(widths[j]) if j == 1 else c.ljust(widths[j]) for j, c in enumerate(row)]
        lines.append((indent + " ".join(cells)).rstrip())
    return lines


@dataclass(frozen=True)
class Parameter:
    """One design parameter.

    ``low`` and ``high`` are inclusive bounds in the parameter's own ``unit``.
    Integer parameters are rounded to the nearest integer when sampled.
    """

    name: str
    low: float
    high: float
    integer: bool = False
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise InputError(f"parameter name {self.name!r} must be a Python identifier")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.high <= self.low:
            raise InputError(
                f"parameter {self.name!r}: bounds must be finite with low < high, got "
                f"[{self.low}, {self.high}]"
            )


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_FUNCS = ("sqrt", "sin", "cos", "tan", "arctan", "arctan2", "exp", "log", "abs", "minimum", "maximum", "radians", "deg2rad")
_CONSTS = {"pi": math.pi, "e": math.e}


def _backend_funcs(x: Any) -> dict[str, Callable[..., Any]]:
    if type(x).__module__.startswith("torch"):
        import torch

        return {
            "sqrt": torch.sqrt, "sin": torch.sin, "cos": torch.cos, "tan": torch.tan,
            "arctan": torch.atan, "arctan2": torch.atan2, "exp": torch.exp, "log": torch.log,
            "abs": torch.abs, "minimum": torch.minimum, "maximum": torch.maximum,
            "radians": torch.deg2rad, "deg2rad": torch.deg2rad,
        }
    return {
        "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos, "tan": np.tan, "arctan": np.arctan,
        "arctan2": np.arctan2, "exp": np.exp, "log": np.log, "abs": np.abs,
        "minimum": np.minimum, "maximum": np.maximum, "radians": np.radians, "deg2rad": np.deg2rad,
    }


class Constraint:
    """An inequality constraint ``lhs <= rhs`` (or ``>=``) over parameter names.

    ``slack(values)`` returns ``rhs - lhs`` for ``<=`` (``lhs - rhs`` for ``>=``): a design
    satisfies the constraint where the slack is ``>= 0``. Helper quantities may be defined
    in ``definitions`` (name -> expression) and used in the constraint.
    """

    def __init__(self, expression: str, names: Sequence[str], definitions: Mapping[str, str] | None = None):
        self.expression = expression
        self._names = tuple(names)
        self._defs = {k: self._parse(v, allowed=set(self._names) | set(_CONSTS)) for k, v in (definitions or {}).items()}
        allowed = set(self._names) | set(_CONSTS) | set(self._defs)
        try:
            tree = ast.parse(expression, mode="eval").body
        except SyntaxError as exc:
            raise InputError(f"constraint {expression!r} is not a valid expression: {exc.msg}") from None
        if not isinstance(tree, ast.Compare) or len(tree.ops) != 1 or not isinstance(tree.ops[0], (ast.LtE, ast.GtE, ast.Lt, ast.Gt)):
            raise InputError(f"constraint {expression!r} must have the form 'lhs <= rhs' or 'lhs >= rhs'")
        self._check(tree.left, allowed, expression)
        self._check(tree.comparators[0], allowed, expression)
        self._lhs, self._rhs = tree.left, tree.comparators[0]
        self._upper = isinstance(tree.ops[0], (ast.LtE, ast.Lt))
        try:  # constants are floats, so a constant such as 9**9**10 overflows here instead of hanging later
            with np.errstate(all="ignore"):
                self.slack({n: np.ones(1) for n in self._names})
        except (OverflowError, ZeroDivisionError) as exc:
            raise InputError(f"constraint {expression!r}: a constant part cannot be computed ({exc})") from None

    def _parse(self, text: str, allowed: set[str]) -> ast.AST:
        try:
            node = ast.parse(text, mode="eval").body
        except SyntaxError as exc:
            raise InputError(f"definition {text!r} is not a valid expression: {exc.msg}") from None
        self._check(node, allowed, text)
        return node

    @staticmethod
    def _check(node: ast.AST, allowed: set[str], text: str) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                if not (isinstance(sub.func, ast.Name) and sub.func.id in _FUNCS) or sub.keywords:
                    raise InputError(f"expression {text!r}: only the functions {', '.join(_FUNCS)} may be called")
            elif isinstance(sub, ast.Name):
                if sub.id not in allowed and sub.id not in _FUNCS:
                    raise InputError(f"expression {text!r}: unknown name {sub.id!r}")
            elif not isinstance(sub, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Load,
                                      ast.USub, ast.UAdd, *tuple(_BINOPS))):
                raise InputError(f"expression {text!r}: {type(sub).__name__} is not allowed")
            if isinstance(sub, ast.Constant) and not isinstance(sub.value, (int, float)):
                raise InputError(f"expression {text!r}: only numeric constants are allowed")

    def _eval(self, node: ast.AST, env: Mapping[str, Any], funcs: Mapping[str, Callable[..., Any]]) -> Any:
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.UnaryOp):
            val = self._eval(node.operand, env, funcs)
            return -val if isinstance(node.op, ast.USub) else val
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](self._eval(node.left, env, funcs), self._eval(node.right, env, funcs))
        if isinstance(node, ast.Call):
            return funcs[node.func.id](*(self._eval(a, env, funcs) for a in node.args))
        raise TypeError(type(node))  # unreachable: _check whitelists node types

    def slack(self, values: Mapping[str, Any]) -> Any:
        """Return the constraint slack (>= 0 where satisfied), numpy or torch like the inputs."""
        first = values[self._names[0]]
        funcs = _backend_funcs(first)
        env: dict[str, Any] = dict(_CONSTS)
        env.update({n: values[n] for n in self._names})
        for name, node in self._defs.items():
            env[name] = self._eval(node, env, funcs)
        lhs = self._eval(self._lhs, env, funcs)
        rhs = self._eval(self._rhs, env, funcs)
        return rhs - lhs if self._upper else lhs - rhs

    def __repr__(self) -> str:
        return f"Constraint({self.expression!r})"


@dataclass
class DesignSpace:
    """Named bounded parameters with optional inequality constraints.

    Example
    -------
    >>> space = DesignSpace([Parameter("radius", 90, 250, unit="cm"),
    ...                      Parameter("npanels", 4, 360, integer=True)],
    ...                     constraints=["npanels <= 2 * radius"])
    >>> df = space.sample(8, method="sobol", seed=0)
    >>> bool(space.is_feasible(df).all())
    True
    """

    parameters: list[Parameter]
    constraints: list[str] = field(default_factory=list)
    definitions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.parameters = list(self.parameters)
        names = [p.name for p in self.parameters]
        if not names:
            raise InputError("a design space needs at least one parameter")
        if len(set(names)) != len(names):
            raise InputError(f"duplicate parameter names in {names}")
        self._constraints = [Constraint(c, names, self.definitions) for c in self.constraints]

    # ----------------------------------------------------------------- basics
    @property
    def names(self) -> list[str]:
        """Parameter names, in order."""
        return [p.name for p in self.parameters]

    @property
    def dim(self) -> int:
        return len(self.parameters)

    @property
    def bounds(self) -> np.ndarray:
        """Array of shape (2, d): lower bounds, then upper bounds."""
        return np.array([[p.low for p in self.parameters], [p.high for p in self.parameters]], dtype=float)

    def __getitem__(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    # ---------------------------------------------------------------- scaling
    def to_unit(self, x: Any) -> Any:
        """Map designs (..., d) in parameter units to the unit cube [0, 1]^d (numpy or torch)."""
        lo, hi = self.bounds
        if type(x).__module__.startswith("torch"):
            import torch

            lo_t = torch.as_tensor(lo, dtype=x.dtype, device=x.device)
            hi_t = torch.as_tensor(hi, dtype=x.dtype, device=x.device)
            return (x - lo_t) / (hi_t - lo_t)
        return (np.asarray(x, dtype=float) - lo) / (hi - lo)

    def from_unit(self, u: Any, round_integers: bool = True) -> np.ndarray:
        """Map unit-cube points (n, d) back to parameter units, rounding integer parameters."""
        lo, hi = self.bounds
        x = lo + np.asarray(u, dtype=float) * (hi - lo)
        if round_integers:
            for j, p in enumerate(self.parameters):
                if p.integer:
                    x[..., j] = np.clip(np.round(x[..., j]), math.ceil(p.low), math.floor(p.high))
        return x

    def as_array(self, designs: pd.DataFrame | Mapping[str, Any] | np.ndarray) -> np.ndarray:
        """Designs as an (n, d) float array in parameter order."""
        if isinstance(designs, np.ndarray):
            return np.atleast_2d(designs.astype(float))
        if isinstance(designs, pd.DataFrame):
            return designs[self.names].to_numpy(dtype=float)
        return np.atleast_2d(np.array([np.asarray(designs[n], dtype=float) for n in self.names]).T)

    # ------------------------------------------------------------ feasibility
    def constraint_slacks(self, designs: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """Slack of every constraint, shape (n, n_constraints); feasible where all >= 0."""
        x = self.as_array(designs)
        values = {n: x[:, j] for j, n in enumerate(self.names)}
        if not self._constraints:
            return np.zeros((len(x), 0))
        with np.errstate(all="ignore"):
            return np.stack([np.broadcast_to(c.slack(values), (len(x),)) for c in self._constraints], axis=1)

    def in_bounds(self, designs: pd.DataFrame | Mapping[str, Any] | np.ndarray, rtol: float = 1e-9) -> np.ndarray:
        """Boolean mask of designs inside the bounds (inclusive, with a tiny tolerance)."""
        x = self.as_array(designs)
        lo, hi = self.bounds
        tol = rtol * (hi - lo)
        return np.all((x >= lo - tol) & (x <= hi + tol), axis=1)

    def round_theta(self, theta: Mapping[str, Any]) -> dict[str, float]:
        """θ as plain floats in parameter order, integer parameters rounded to the nearest integer."""
        return {p.name: (float(round(float(theta[p.name]))) if p.integer else float(theta[p.name]))
                for p in self.parameters}

    def theta_rows(self, theta: Mapping[str, Any], digits: int = 4) -> list[tuple[str, str, str]]:
        """θ as table rows ``(parameter, value, unit)`` in parameter order, for people.

        Integer parameters are shown as integers, the others to ``digits`` significant
        digits (:func:`format_number`); ``unit`` is the parameter's unit ("" when none).
        A parameter missing from ``theta`` raises :class:`InputError`.
        """
        missing = [p.name for p in self.parameters if p.name not in theta]
        if missing:
            raise InputError(f"θ lacks the parameters {missing}; the design space has {self.names}")
        return [(p.name, format_number(float(theta[p.name]), digits, integer=p.integer), p.unit)
                for p in self.parameters]

    def format_theta(self, theta: Mapping[str, Any], digits: int = 4) -> str:
        """θ on one line for logs and messages: ``radius 101.2 cm, npanels 42, theta 0.4123 deg``."""
        return ", ".join(" ".join(c for c in row if c) for row in self.theta_rows(theta, digits))

    def is_feasible(self, designs: pd.DataFrame | Mapping[str, Any] | np.ndarray) -> np.ndarray:
        """Boolean mask: inside the bounds, integer where required, and all constraints satisfied."""
        x = self.as_array(designs)
        ok = self.in_bounds(x)
        for j, p in enumerate(self.parameters):
            if p.integer:
                ok &= np.isclose(x[:, j], np.round(x[:, j]))
        if self._constraints:
            slack = self.constraint_slacks(x)
            ok &= np.all(np.nan_to_num(slack, nan=-1.0) >= 0, axis=1)
        return ok

    def check_bounds(self, frame: pd.DataFrame, *, file: str | None = None, rows: Sequence[int] | None = None) -> None:
        """Raise :class:`InputError` naming file, column and row of the first design outside the bounds."""
        x = self.as_array(frame)
        lo, hi = self.bounds
        tol = 1e-9 * (hi - lo)
        bad = (x < lo - tol) | (x > hi + tol)
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            p = self.parameters[j]
            row = int(rows[i]) if rows is not None else i
            raise InputError(
                f"design value {fmt_value(x[i, j])} is outside the bounds [{p.low}, {p.high}] of parameter {p.name!r}",
                file=file, column=p.name, row=row,
            )

    # --------------------------------------------------------------- sampling
    #: candidates drawn per batch while sampling, and at most in all (bounds memory and time)
    SAMPLE_BATCH = 65_536
    SAMPLE_BUDGET = 4_194_304

    def sample(self, n: int, method: str = "sobol", seed: int = 0) -> pd.DataFrame:
        """Return ``n`` feasible designs as a DataFrame (columns = parameter names).

        ``method`` is ``"sobol"`` (scrambled Sobol), ``"lhs"`` (Latin hypercube) or ``"random"``.
        Infeasible candidates are rejected. The sampler draws batches of at most
        :attr:`SAMPLE_BATCH` candidates, :attr:`SAMPLE_BUDGET` in all, so memory stays bounded;
        when they hold fewer than ``n`` feasible designs it raises :class:`InputError` naming
        the constraint that is met least often (or never).
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        rng = np.random.default_rng(seed)
        out: list[np.ndarray] = []
        have = drawn = 0
        batch = min(max(8, n), self.SAMPLE_BATCH)
        met = np.zeros(len(self._constraints), dtype=np.int64)
        while have < n and drawn < self.SAMPLE_BUDGET:
            size = min(batch, self.SAMPLE_BUDGET - drawn)
            x = self.from_unit(self._unit_points(size, method, rng))
            drawn += len(x)
            ok = self.is_feasible(x)
            if self._constraints:
                met += np.sum(np.nan_to_num(self.constraint_slacks(x), nan=-1.0) >= 0, axis=0)
            out.append(x[ok])
            have += int(ok.sum())
            batch = min(2 * batch, self.SAMPLE_BATCH)
        if have < n:
            raise InputError(self._infeasible_message(n, have, drawn, met))
        x = np.concatenate(out)[:n] if out else np.zeros((0, self.dim))
        df = pd.DataFrame(x, columns=self.names)
        for p in self.parameters:
            if p.integer:
                df[p.name] = df[p.name].round().astype(int)
        return df

    def _infeasible_message(self, n: int, have: int, drawn: int, met: np.ndarray) -> str:
        if len(met) and met.min() == 0:
            worst = self._constraints[int(np.argmin(met))].expression
            return (f"constraint {worst!r} is never met: none of {drawn:,} designs drawn within the parameter bounds "
                    "satisfies it")
        if len(met):
            worst = self._constraints[int(np.argmin(met))].expression
            return (f"only {have} of {n} feasible designs among {drawn:,} drawn within the bounds; the constraints "
                    f"leave too small a region (least often met: {worst!r}, by {int(met.min()):,} designs)")
        return f"only {have} of {n} designs found among {drawn:,} drawn"

    def _unit_points(self, n: int, method: str, rng: np.random.Generator) -> np.ndarray:
        if method == "sobol":
            m = max(1, math.ceil(math.log2(max(n, 2))))
            pts = qmc.Sobol(self.dim, scramble=True, seed=rng).random_base2(m)
            return pts[:n]
        if method == "lhs":
            return qmc.LatinHypercube(self.dim, seed=rng).random(n)
        if method == "random":
            return rng.random((n, self.dim))
        raise InputError(f"unknown sampling method {method!r}; use 'sobol', 'lhs' or 'random'")

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "parameters": {p.name: {"low": p.low, "high": p.high, "integer": p.integer, "unit": p.unit} for p in self.parameters},
            "constraints": list(self.constraints),
            "definitions": dict(self.definitions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DesignSpace":
        params = [Parameter(name, float(v["low"]), float(v["high"]), bool(v.get("integer", False)), str(v.get("unit", "")))
                  for name, v in data["parameters"].items()]
        return cls(params, list(data.get("constraints", [])), dict(data.get("definitions", {})))

    @classmethod
    def from_bounds(cls, bounds: Mapping[str, Iterable[float]], **kwargs: Any) -> "DesignSpace":
        """Shorthand: ``DesignSpace.from_bounds({"x": (0, 1), "y": (-1, 1)})``."""
        return cls([Parameter(k, float(lo), float(hi)) for k, (lo, hi) in bounds.items()], **kwargs)
