"""Numbers as people read them: SI suffixes, formulas written the way a person writes them,
exact values for JSON. One small module under both the reports and the views that print."""

from __future__ import annotations

from typing import Any

import sympy

from costmodel.cost import is_concrete, to_int


def si(value: Any) -> str:
    """568740352 -> '568.74M'; symbolic values print as sympy writes them."""
    if not is_concrete(value):
        return str(value)
    value = float(value)
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.2f}{suffix}"
    return f"{value:g}"


def readable(value: Any) -> str:
    """A number with an SI suffix, or a formula as a person writes it: a strided size
    floor((H - 1)/k) + 1 becomes ceiling(H/k) (equal for the integer sizes shapes have), and
    products of sizes are multiplied out."""
    if is_concrete(value):
        return si(value)

    def to_ceiling(arg: sympy.Expr) -> sympy.Expr:
        k = sympy.fraction(sympy.together(arg))[1]  # floor(p/k) = ceiling((p + 1)/k) - 1
        return sympy.ceiling(arg + 1 / k) - 1 if k.is_Integer else sympy.floor(arg)

    return str(sympy.expand(sympy.sympify(value).replace(sympy.floor, to_ceiling)))


def exact(value: Any) -> Any:
    """An int (or float) for JSON when concrete, else sympy's string."""
    value = to_int(value)
    return value if isinstance(value, (int, float)) else str(value)
