"""symbols, minimize, lambdify and sweep, against hand-derived minima and direct evaluation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from costmodel import CostModelError, lambdify, minimize, sweep, symbols
from costmodel.cost import Cost
from costmodel.symbolic import _by_lagrange, records, table

FAST = settings(max_examples=25, deadline=None)


def same(a: object, b: object) -> bool:
    return sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) == 0


#: The feature request's example, verbatim: run as written, then its comments checked.
REQUEST_EXAMPLE = """
from costmodel import symbols, minimize
from costmodel.formulas import conv2d
c1, c2, h, w, g, B = symbols("c1 c2 h w g B")
cost = conv2d(n=1, c_in=c1, c_out=c2, h_in=h, w_in=w, kernel=1, stride=1, padding=0, groups=g)
cost.madds   # == h*w*c1*c2/g
cost.mac     # == h*w*(c1 + c2) + c1*c2/g
best = minimize(cost.mac.subs(g, 1), over=[c1, c2], given={cost.madds.subs(g, 1): B})
best.point   # {c1: sqrt(B/(h*w)), c2: sqrt(B/(h*w))}
best.value   # == 2*sqrt(B*h*w) + B/(h*w)   (the seed's equation 3)
"""


def test_request_example_g1_minimum() -> None:
    """The example runs as written and gives the seed's equation (3), minimum at c1 = c2."""
    ns: dict[str, Any] = {}
    exec(REQUEST_EXAMPLE, ns)
    c1, c2, h, w, g, B = (ns[k] for k in ("c1", "c2", "h", "w", "g", "B"))
    cost, best = ns["cost"], ns["best"]
    assert cost.madds == h*w*c1*c2/g
    assert same(cost.mac, h*w*(c1 + c2) + c1*c2/g)
    assert set(best.point) == {c1, c2}
    assert same(best.point[c1], sympy.sqrt(B/(h*w)))
    assert same(best.point[c2], sympy.sqrt(B/(h*w)))
    assert same(best.value, 2*sympy.sqrt(B*h*w) + B/(h*w))


def test_symbols_are_positive_and_compare_equal_by_name() -> None:
    h, w = symbols("h, w")
    assert h == sympy.Symbol("h", positive=True) and w.is_positive
    assert h != sympy.Symbol("h")  # plain sympy symbols carry no assumption
    assert symbols("x") == (sympy.Symbol("x", positive=True),)
    with pytest.raises(CostModelError):
        symbols("  ")


def test_minimize_unconstrained_polynomial() -> None:
    """x^2 - 2x: derivative 2x - 2 = 0 at x = 1, value -1."""
    (x,) = symbols("x")
    best = minimize(x**2 - 2*x, over=[x])
    assert best.point == {x: 1} and best.value == -1 and best.method == "substitution"


def test_minimize_discards_non_positive_critical_points() -> None:
    """x^3/3 - x has stationary points x = -1 (a maximum) and x = 1 (the minimum); only 1 is
    positive. With a variable that carries no assumption, positivity is still applied."""
    z = sympy.Symbol("z")
    best = minimize(z**3 / 3 - z, over=[z])
    assert best.point == {z: 1} and best.value == sympy.Rational(-2, 3)
    (x,) = symbols("x")
    with pytest.raises(CostModelError, match="no minimum"):
        minimize(x**2 + 2*x, over=[x])  # stationary only at x = -1


def test_minimize_discards_a_maximum() -> None:
    """On the unit circle x = sqrt(1 - y^2), x + y is stationary only at its maximum
    (sqrt(2) at x = y = 1/sqrt(2)); the infimum 1 lies on the excluded boundary."""
    x, y = symbols("x y")
    with pytest.raises(CostModelError, match="no minimum"):
        minimize(x + y, over=[x, y], given={x**2 + y**2: 1})


def test_minimize_with_lagrange_multipliers() -> None:
    """x + 2y + 3z on x*y*z = 6: stationary where 1 = l*yz, 2 = l*xz, 3 = l*xy, so
    x = 2y = 3z; with xyz = 6: x^3/6 = 6, x = cbrt(36); value 3x."""
    x, y, z = symbols("x y z")
    best = minimize(x + 2*y + 3*z, over=[x, y, z], given={x*y*z: 6})
    root = sympy.cbrt(36)
    assert same(best.point[x], root) and same(best.point[y], root / 2)
    assert same(best.point[z], root / 3) and same(best.value, 3 * root)
    (lagrange,) = _by_lagrange(x + 2*y + 3*z, [x, y, z], [x*y*z - 6])  # the fallback route
    assert all(same(lagrange[v], best.point[v]) for v in (x, y, z))


def test_minimize_g2_at_fixed_flops() -> None:
    """Equation (6): with B = h*w*c1*c2/g fixed and c2 eliminated, MAC = h*w*c1 + B*g/c1 + B/(h*w);
    minimising over c1 at fixed g gives c1 = sqrt(B*g/(h*w))."""
    c1, c2, h, w, g, B = symbols("c1 c2 h w g B")
    mac = h*w*(c1 + c2) + c1*c2/g
    best = minimize(mac, over=[c1, c2], given={h*w*c1*c2/g: B})
    assert same(best.point[c1], sympy.sqrt(B*g/(h*w)))
    assert same(best.value, 2*sympy.sqrt(B*g*h*w) + B/(h*w))


def test_minimize_without_closed_form() -> None:
    """cos(x) + x^2/10: stationary where sin(x) = x/5, which has no closed form. The numeric
    minimum must satisfy that condition and be a minimum (f'' = 1/5 - cos(x) > 0)."""
    (x,) = symbols("x")
    f = sympy.cos(x) + x**2 / 10
    with pytest.raises(CostModelError, match="numeric=True"):
        minimize(f, over=[x])
    best = minimize(f, over=[x], numeric=True)
    at = float(best.point[x])
    assert best.method == "numeric"
    assert math.sin(at) == pytest.approx(at / 5, abs=1e-12)
    assert 0.2 - math.cos(at) > 0
    assert float(best.value) == pytest.approx(math.cos(at) + at**2 / 10)
    assert float(minimize(f, over=[x], numeric=True, start={x: 3.0}).point[x]) == \
        pytest.approx(at)


def test_numeric_minimum_with_a_constraint() -> None:
    """cos(x) + x^2/10 + y on x*y = 3: y = 3/x, stationary where -sin(x) + x/5 - 3/x^2 = 0."""
    x, y = symbols("x y")
    best = minimize(sympy.cos(x) + x**2 / 10 + y, over=[x, y], given={x*y: 3}, numeric=True)
    at, yat = float(best.point[x]), float(best.point[y])
    assert at * yat == pytest.approx(3)
    assert -math.sin(at) + at / 5 - 3 / at**2 == pytest.approx(0, abs=1e-10)


def test_numeric_needs_every_parameter() -> None:
    x, a = symbols("x a")
    with pytest.raises(CostModelError, match="needs numbers for a"):
        minimize(sympy.cos(x) + a * x**2, over=[x], numeric=True)


def test_minimize_rejects_bad_arguments() -> None:
    x, y = symbols("x y")
    with pytest.raises(CostModelError):
        minimize(x, over=[])
    with pytest.raises(CostModelError, match="nothing is left"):
        minimize(x + y, over=[x], given={x: 2})


# --- lambdify and sweep -------------------------------------------------------------------------


@FAST
@given(st.lists(st.integers(1, 500), min_size=1, max_size=20),
       st.lists(st.integers(1, 500), min_size=1, max_size=20))
def test_lambdify_matches_sympy_on_shape_functions(hs: list[int], ws: list[int]) -> None:
    """floor, ceiling, Max, Min and Piecewise evaluate as sympy evaluates them, point by point."""
    h, w = symbols("h w")
    expr = (sympy.floor((h - 1) / 2) + 1) * sympy.ceiling(w / 3) + sympy.Max(h, w) \
        - sympy.Min(h, 7) + sympy.Piecewise((h, h > w), (2 * w, True))
    n = min(len(hs), len(ws))
    got = lambdify(expr, [h, w])(np.array(hs[:n]), np.array(ws[:n]))
    expected = [int(expr.subs({h: a, w: b})) for a, b in zip(hs[:n], ws[:n])]
    assert got.tolist() == expected


@FAST
@given(st.lists(st.integers(1, 500), min_size=1, max_size=20))
def test_lambdify_matches_sympy_on_torch_shape_functions(hs: list[int]) -> None:
    """The functions torch's ShapeEnv puts in symbolic sizes evaluate as sympy evaluates them."""
    from torch.utils._sympy import functions as tf

    (h,) = symbols("h")
    expr = (tf.FloorDiv(h + 3, 2) * tf.CeilToInt(tf.IntTrueDiv(h, 3)) + tf.PythonMod(h, 4)
            + tf.CeilDiv(h, 7) + tf.Max(h, 9) - tf.Min(h, 9) + tf.FloorToInt(tf.IntTrueDiv(h, 5)))
    got = lambdify(expr, [h])(np.array(hs))
    assert got.tolist() == [int(expr.subs(h, v)) for v in hs]


def test_lambdify_cost_broadcasts_every_field() -> None:
    """A 1x1 conv at c = 2, 4 on a 3x5 map: Mult-Adds c^2 * 15, MAC 15*2c + c^2, constant 0s."""
    (c,) = symbols("c")
    cost = Cost(madds=15 * c**2, flops=30 * c**2, mac=30 * c + c**2, params=c**2)
    out = lambdify(cost, ["c"])(np.array([2, 4]))
    assert set(out) == {"madds", "flops", "mac", "mac_bytes", "params"}
    assert out["madds"].tolist() == [60, 240]
    assert out["mac"].tolist() == [64, 136]
    assert out["mac_bytes"].tolist() == [0, 0]


def test_lambdify_names_missing_symbols() -> None:
    x, y = symbols("x y")
    with pytest.raises(CostModelError, match="also depends on y"):
        lambdify(x + y, [x])


def test_sweep_every_combination() -> None:
    """A grouped 1x1 conv's MAC h*w*(c1+c2) + c1*c2/g over a 2 x 3 grid, hand-computed."""
    c, g = symbols("c g")
    mac = 56 * 56 * (c + c) + c * c / g
    rows = sweep({"mac": mac, "madds": 56 * 56 * c * c / g}, grid={c: [64, 128], "g": [1, 2, 4]})
    assert rows.dtype.names == ("c", "g", "mac", "madds")
    assert len(rows) == 6
    as_dicts = records(rows)
    assert as_dicts[0] == {"c": 64, "g": 1, "mac": 6272 * 64 + 4096, "madds": 3136 * 4096}
    assert as_dicts[5] == {"c": 128, "g": 4, "mac": 6272 * 128 + 4096, "madds": 3136 * 4096}
    assert [(r["c"], r["g"]) for r in as_dicts] == [(64, 1), (64, 2), (64, 4), (128, 1),
                                                      (128, 2), (128, 4)]
    text = table(rows)
    assert [cell.strip() for cell in text.splitlines()[0].split("|")[1:-1]] == \
        ["c", "g", "mac", "madds"]
    assert "806,912" in text  # 6272 * 128 + 4096, as an exact integer
    assert len(text.splitlines()) == 2 + 6


def test_sweep_of_an_expression_has_a_value_field() -> None:
    (x,) = symbols("x")
    rows = sweep(x**2, grid={x: [1, 2, 3]})
    assert rows.value.tolist() == [1, 4, 9] and rows.x.tolist() == [1, 2, 3]
    with pytest.raises(CostModelError):
        sweep(x**2, grid={x: []})
