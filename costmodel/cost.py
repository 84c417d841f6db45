"""`Cost`: the four numbers every op carries, as Python ints or sympy expressions alike."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import sympy

Num = int | sympy.Expr


def prod(values: Any) -> Num:
    """Product of sizes that may be ints or sympy expressions (1 for an empty sequence)."""
    result: Num = 1
    for v in values:
        result = result * v
    return result


def div(a: Num, b: Num) -> Num:
    """Exact quotient: an int when both sides are ints that divide, else a sympy expression.

    Formulas divide channel counts by groups; keeping ints as ints keeps concrete analyses fast
    and JSON-exact, while symbols stay symbolic (c1*c2/g).
    """
    if isinstance(a, int) and isinstance(b, int):
        if b != 0 and a % b == 0:
            return a // b
        return sympy.Rational(a, b)
    return sympy.sympify(a) / b


def is_concrete(value: Num) -> bool:
    """True for a plain number, or a sympy expression with no free symbols."""
    return not isinstance(value, sympy.Basic) or not value.free_symbols


def to_int(value: Num) -> Num:
    """Collapse a concrete sympy number to an int; leave symbolic expressions alone."""
    if isinstance(value, sympy.Basic) and not value.free_symbols:
        if value.is_Integer:
            return int(value)
        f = float(value)
        return int(f) if f.is_integer() else f
    return value


@dataclass(frozen=True, slots=True)
class Cost:
    """Work of one op or a sum of ops.

    madds: multiply-accumulates of contractions; flops: floating-point operations;
    mac: memory access cost, tensor elements read plus written; mac_bytes: the same in bytes;
    params: learnable parameter elements.
    """

    madds: Num = 0
    flops: Num = 0
    mac: Num = 0
    mac_bytes: Num = 0
    params: Num = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.madds + other.madds,
            self.flops + other.flops,
            self.mac + other.mac,
            self.mac_bytes + other.mac_bytes,
            self.params + other.params,
        )

    def replace(self, **changes: Num) -> Cost:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Cost(**values)

    def as_dict(self) -> dict[str, Num]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def subs(self, mapping: dict[Any, Any]) -> Cost:
        """Substitute symbols in every field (sympy's subs); plain ints pass through."""
        return Cost(
            **{
                k: to_int(sympy.sympify(v).subs(mapping)) if isinstance(v, sympy.Basic) else v
                for k, v in self.as_dict().items()
            }
        )

    @property
    def is_concrete(self) -> bool:
        return all(is_concrete(v) for v in self.as_dict().values())


ZERO = Cost()


def total(costs: Any) -> Cost:
    """Sum of an iterable of costs; values may be symbolic."""
    acc = ZERO
    for c in costs:
        acc = acc + c
    return acc


__all__ = ["ZERO", "Cost", "Num", "div", "is_concrete", "prod", "to_int", "total"]
