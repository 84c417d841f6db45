"""Symbolic what-if: positive symbols, closed-form minimisation, vectorised evaluation, sweeps.

The formulas return sympy expressions when given symbols. This module asks questions of them the
way the ShuffleNetV2 paper does (which widths minimise MAC at fixed Mult-Adds?) and evaluates them
over grids with numpy, because sympy's `subs` costs tens of microseconds per point.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy
from tabulate import tabulate

from costmodel.cost import Cost
from costmodel.errors import CostModelError

SymbolLike = sympy.Symbol | str
Target = sympy.Expr | Cost | Mapping[str, Any] | int | float


def symbols(names: str) -> tuple[sympy.Symbol, ...]:
    """Positive symbols from a space- or comma-separated string, always as a tuple.

    Sizes, widths and groups are positive; saying so lets sympy take sqrt(c**2) = c and keep
    only the positive root of an equation.
    """
    found = tuple(sympy.Symbol(n, positive=True) for n in names.replace(",", " ").split())
    if not found:
        raise CostModelError("symbols: no names given")
    return found


# --- minimisation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Minimum:
    """Where an expression is smallest: `point` maps each variable to its value there.

    `method` says how it was found: "substitution" (constraints solved for variables, then the
    stationary points of what is left), "lagrange" (multipliers) or "numeric". `candidates` lists
    every admissible stationary point that was compared.
    """

    point: dict[sympy.Symbol, sympy.Expr]
    value: sympy.Expr
    method: str
    candidates: tuple[dict[sympy.Symbol, sympy.Expr], ...] = field(default=(), repr=False)


def minimize(expr: Any, over: Sequence[sympy.Symbol], given: Mapping[Any, Any] | None = None,
             numeric: bool = False, start: Mapping[sympy.Symbol, float] | None = None) -> Minimum:
    """Minimise `expr` over the positive variables `over`, subject to `lhs == rhs` for each
    item of `given`.

    Tries a closed form first: each constraint solved for one variable and substituted, then the
    stationary points of the rest; failing that, Lagrange multipliers. Critical points that are
    not positive and real are discarded, and so are those the second derivatives show to be a
    maximum or a saddle. Without a closed form this raises CostModelError, unless `numeric` is
    set: then Newton's method (sympy's nsolve) from `start` (or a few default starts) finds a
    stationary point numerically; every symbol other than `over` must have been substituted.
    """
    variables = list(over)
    if not variables:
        raise CostModelError("minimize: `over` names no variable")
    for v in variables:
        if not isinstance(v, sympy.Symbol):
            raise CostModelError(f"minimize: {v!r} in `over` is not a sympy Symbol")
    # Variables without a positivity assumption get positive stand-ins, mapped back at the end.
    stand_in = {v: sympy.Dummy(v.name, positive=True) for v in variables if not v.is_positive}
    back = {d: v for v, d in stand_in.items()}
    xs = [stand_in.get(v, v) for v in variables]
    f = sympy.sympify(expr).subs(stand_in)
    constraints = [sympy.sympify(lhs - rhs).subs(stand_in) for lhs, rhs in (given or {}).items()]
    if len(constraints) >= len(xs):
        raise CostModelError(f"minimize: {len(constraints)} constraints fix all {len(xs)} "
                             f"variables; nothing is left to minimise")

    found: list[dict[sympy.Symbol, sympy.Expr]] | None = _by_substitution(f, xs, constraints)
    method = "substitution"
    if found is None and constraints:
        found, method = _by_lagrange(f, xs, constraints), "lagrange"
    if not found:
        if not numeric:
            raise CostModelError(
                f"minimize: found no minimum of {expr} over "
                f"{', '.join(v.name for v in variables)} at positive values in closed form"
                f"{' under the constraints' if constraints else ''} (sympy could not solve for "
                f"the stationary points, or none of them is a positive minimum); pass "
                f"numeric=True, with every other symbol substituted, for a numeric one")
        found, method = _numeric(f, xs, constraints, start, stand_in), "numeric"
    values = [sympy.simplify(f.subs(p)) for p in found]
    best = _lowest(values)
    point = {back.get(v, v): found[best][v].subs(back) for v in xs}
    candidates = tuple({back.get(v, v): p[v].subs(back) for v in xs} for p in found)
    return Minimum(point, values[best].subs(back), method, candidates)


def _admissible(value: sympy.Expr) -> bool:
    """Could this be a positive real value? (Discard what sympy knows is not.)"""
    value = sympy.sympify(value)
    return value.is_positive is not False and value.is_real is not False


def _eliminate(f: sympy.Expr, xs: list[sympy.Symbol], constraints: list[sympy.Expr]
               ) -> tuple[sympy.Expr, list[sympy.Symbol], dict[sympy.Symbol, sympy.Expr]] | None:
    """Solve each constraint for one variable that has a single admissible root there, and
    substitute it: (reduced objective, variables left, eliminated variable -> expression).
    None when some constraint cannot be solved that way."""
    eliminated: dict[sympy.Symbol, sympy.Expr] = {}
    free = list(xs)
    reduced = f
    for constraint in constraints:
        constraint = constraint.subs(eliminated)
        for v in free:
            if not constraint.has(v):
                continue
            try:
                roots = [r for r in sympy.solve(constraint, v) if _admissible(r)]
            except NotImplementedError:
                continue
            if len(roots) == 1:
                eliminated = {k: e.subs(v, roots[0]) for k, e in eliminated.items()}
                eliminated[v] = roots[0]
                free.remove(v)
                reduced = reduced.subs(v, roots[0])
                break
        else:
            return None
    return reduced, free, eliminated


def _by_substitution(f: sympy.Expr, xs: list[sympy.Symbol], constraints: list[sympy.Expr]
                     ) -> list[dict[sympy.Symbol, sympy.Expr]] | None:
    """Eliminate one variable per constraint, then solve for the stationary points of the
    reduced objective. None when any step has no closed form."""
    elimination = _eliminate(f, xs, constraints)
    if elimination is None:
        return None
    reduced, free, eliminated = elimination
    if not free:
        solutions: list[dict[sympy.Symbol, sympy.Expr]] = [{}]
    else:
        gradient = [sympy.diff(reduced, v) for v in free]
        try:
            solutions = sympy.solve(gradient, free, dict=True)
        except NotImplementedError:
            return None
    points = []
    for solution in solutions:
        if set(solution) != set(free) or any(e.free_symbols & set(free)
                                             for e in solution.values()):
            continue  # not an isolated point
        point = {v: sympy.simplify(solution[v]) for v in free}
        point.update({k: sympy.simplify(e.subs(solution)) for k, e in eliminated.items()})
        if all(_admissible(point[v]) for v in xs) and not _not_a_minimum(reduced, free, solution):
            points.append(point)
    return points


def _not_a_minimum(f: sympy.Expr, xs: list[sympy.Symbol], at: Mapping[Any, Any]) -> bool:
    """True when the Hessian's leading minors show a maximum or a saddle (Sylvester's test);
    False when they show a minimum or sympy cannot tell their signs."""
    if not xs:
        return False
    hessian = sympy.hessian(f, xs).subs(at)
    for k in range(1, len(xs) + 1):
        minor = sympy.simplify(hessian[:k, :k].det())
        if minor.is_negative or (k == 1 and minor.is_zero is False and minor.is_positive is False
                                 and minor.is_real):
            return True
    return False


def _by_lagrange(f: sympy.Expr, xs: list[sympy.Symbol], constraints: list[sympy.Expr]
                 ) -> list[dict[sympy.Symbol, sympy.Expr]]:
    """Stationary points of f - sum(lambda_i * g_i), keeping the positive real ones."""
    multipliers = [sympy.Dummy(f"lambda{i}") for i in range(len(constraints))]
    lagrangian = f - sum(m * g for m, g in zip(multipliers, constraints))
    equations = [sympy.diff(lagrangian, v) for v in xs] + constraints
    try:
        solutions = sympy.solve(equations, [*xs, *multipliers], dict=True)
    except NotImplementedError:
        return []
    points = []
    for solution in solutions:
        if not set(xs) <= set(solution):
            continue
        point = {v: sympy.simplify(solution[v]) for v in xs}
        if all(_admissible(e) for e in point.values()) and not any(
                e.free_symbols & set(xs) for e in point.values()):
            points.append(point)
    return points


#: Newton starts per variable when none is given; every combination is tried.
_DEFAULT_STARTS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def _numeric(f: sympy.Expr, xs: list[sympy.Symbol], constraints: list[sympy.Expr],
             start: Mapping[sympy.Symbol, float] | None, stand_in: Mapping[Any, Any]
             ) -> list[dict[sympy.Symbol, sympy.Expr]]:
    """Positive stationary points by Newton's method (sympy's nsolve) from several starts: of
    the objective with the constraints substituted where they can be (keeping only points whose
    Hessian is positive definite), else of the Lagrangian."""
    others = (f.free_symbols.union(*(g.free_symbols for g in constraints))) - set(xs)
    if others:
        names = ", ".join(sorted(s.name for s in others))
        raise CostModelError(f"minimize: a numeric minimum needs numbers for {names}; "
                             f"substitute them first")
    elimination = _eliminate(f, xs, constraints)
    if elimination is not None:
        reduced, free, eliminated = elimination
        multipliers: list[sympy.Symbol] = []
        equations = [sympy.diff(reduced, v) for v in free]
        hessian = sympy.lambdify(free, sympy.hessian(reduced, free), modules="numpy")
    else:
        free, eliminated = list(xs), {}
        multipliers = [sympy.Dummy(f"lambda{i}") for i in range(len(constraints))]
        lagrangian = f - sum(m * g for m, g in zip(multipliers, constraints))
        equations = [sympy.diff(lagrangian, v) for v in xs] + constraints
        hessian = None
    if start is not None:
        given = {stand_in.get(k, k): float(v) for k, v in start.items()}
        starts = [tuple(given.get(v, 1.0) for v in free)]
    else:
        starts = list(itertools.islice(itertools.product(_DEFAULT_STARTS, repeat=len(free)), 216))
    points: list[dict[sympy.Symbol, sympy.Expr]] = []
    for x0 in starts:
        try:
            root = sympy.nsolve(equations, [*free, *multipliers], [*x0, *[0.0] * len(multipliers)])
        except (ValueError, ZeroDivisionError, TypeError):
            continue
        at = {v: sympy.Float(root[i]) for i, v in enumerate(free)}
        if any(p <= 0 for p in at.values()):
            continue
        if hessian is not None and free:
            matrix = np.asarray(hessian(*(float(p) for p in at.values())), dtype=np.float64)
            if np.linalg.eigvalsh(matrix).min() <= 0:
                continue  # a maximum or a saddle
        point = {**at, **{k: sympy.Float(e.subs(at)) for k, e in eliminated.items()}}
        if all(point[v] > 0 for v in xs) and not any(
                all(abs(p[v] - point[v]) <= 1e-9 * (1 + abs(point[v])) for v in xs)
                for p in points):
            points.append(point)
    if not points:
        raise CostModelError("minimize: Newton's method found no positive minimum; "
                             "pass a `start` nearer it")
    return points


def _lowest(values: list[sympy.Expr]) -> int:
    """Index of the smallest value, where sympy can order them; the first where it cannot."""
    best = 0
    for i, v in enumerate(values[1:], start=1):
        if sympy.simplify(v - values[best]).is_negative:
            best = i
    return best


# --- fast evaluation ----------------------------------------------------------------------------


def _fields(target: Target) -> tuple[dict[str, sympy.Expr], bool]:
    """Named expressions to evaluate, and whether the caller gave several (Cost or dict)."""
    if isinstance(target, Cost):
        return {k: sympy.sympify(v) for k, v in target.as_dict().items()}, True
    if isinstance(target, Mapping):
        return {str(k): sympy.sympify(v) for k, v in target.items()}, True
    return {"value": sympy.sympify(target)}, False


def _resolve(names: Iterable[SymbolLike], free: set[sympy.Symbol]) -> list[sympy.Symbol]:
    """Symbols for the given symbols or names; a name matches a free symbol of that name."""
    by_name = {s.name: s for s in free}
    resolved = []
    for n in names:
        if isinstance(n, sympy.Symbol):
            resolved.append(n)
        elif isinstance(n, str):
            resolved.append(by_name.get(n, sympy.Symbol(n, positive=True)))
        else:
            raise CostModelError(f"{n!r} is neither a sympy Symbol nor a symbol's name")
    return resolved


def _reduce(op: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    return lambda *args: functools.reduce(op, args)


#: numpy forms of the sympy functions torch's symbolic shapes use (torch.utils._sympy.functions),
#: by name: sympy's printer writes them as plain calls, which this namespace resolves.
_TORCH_SHAPE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "FloorDiv": np.floor_divide, "CleanDiv": np.floor_divide,
    "CeilDiv": lambda a, b: -np.floor_divide(-a, b), "IntTrueDiv": np.true_divide,
    "FloatTrueDiv": np.true_divide, "CeilToInt": np.ceil, "FloorToInt": np.floor,
    "TruncToInt": np.trunc, "TruncToFloat": np.trunc, "RoundToInt": np.round,
    "ToFloat": lambda a: np.asarray(a, dtype=np.float64), "Identity": lambda a: a,
    "PythonMod": np.mod, "Mod": np.mod, "PowByNatural": np.power, "FloatPow": np.power,
    "Max": _reduce(np.maximum), "Min": _reduce(np.minimum), "Where": np.where,
}


def lambdify(target: Target, symbols: Sequence[SymbolLike] | SymbolLike
             ) -> Callable[..., Any]:
    """A numpy function of `symbols` that evaluates `target` on arrays (broadcast together).

    `target` is an expression (the function returns one float64 array), or a Cost or a dict of
    expressions (it returns a dict of arrays by field). floor, ceiling, Max, Min and Piecewise,
    which symbolic shapes contain, map to their numpy forms, and so do the integer-division,
    rounding and modulo functions of torch's own symbolic shapes (FloorDiv, CeilDiv, PythonMod...).
    """
    if isinstance(symbols, (sympy.Symbol, str)):
        symbols = [symbols]
    fields, several = _fields(target)
    free: set[sympy.Symbol] = set().union(*(e.free_symbols for e in fields.values()))
    args = _resolve(symbols, free)
    missing = free - set(args)
    if missing:
        names = ", ".join(sorted(s.name for s in missing))
        raise CostModelError(f"lambdify: the expression also depends on {names}; "
                             f"pass them as arguments or substitute them first")
    functions = {k: sympy.lambdify(args, e, modules=[_TORCH_SHAPE_FUNCTIONS, "numpy"])
                 for k, e in fields.items()}

    def evaluate(*values: Any) -> Any:
        if len(values) != len(args):
            raise TypeError(f"expected {len(args)} arguments "
                            f"({', '.join(a.name for a in args)}), got {len(values)}")
        arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values))
        shape = arrays[0].shape if arrays else ()
        out = {k: np.broadcast_to(np.asarray(fn(*arrays), dtype=np.float64), shape)
               for k, fn in functions.items()}
        return out if several else out["value"]

    evaluate.__doc__ = f"Evaluate {', '.join(fields)} at ({', '.join(a.name for a in args)})."
    return evaluate


def sweep(target: Target, grid: Mapping[SymbolLike, Iterable[Any]]) -> np.recarray:
    """Evaluate `target` at every combination of the grid's values, vectorised.

    Returns a numpy record array with one field per grid symbol (by name) and one per output
    (a Cost's fields, a dict's keys, or `value` for an expression), one record per combination,
    the last grid axis varying fastest. `records` gives it as a list of dicts, `table` as text.
    """
    fields, _ = _fields(target)
    free: set[sympy.Symbol] = set().union(*(e.free_symbols for e in fields.values()))
    syms = _resolve(grid.keys(), free)
    axes = [np.asarray(list(values)) for values in grid.values()]
    if any(a.ndim != 1 or a.size == 0 for a in axes):
        raise CostModelError("sweep: each grid entry must be a non-empty 1-D sequence of values")
    mesh = [m.ravel() for m in np.meshgrid(*axes, indexing="ij")]
    results = lambdify(target, syms)(*mesh)
    if not isinstance(results, dict):
        results = {"value": results}
    names = [s.name for s in syms] + list(results)
    if len(set(names)) != len(names):
        raise CostModelError(f"sweep: a grid symbol shares its name with an output: {names}")
    return np.rec.fromarrays([*mesh, *results.values()], names=names)


def records(rows: np.ndarray) -> list[dict[str, Any]]:
    """A sweep as a list of dicts of Python numbers (integral floats as ints), e.g. for JSON."""
    out = []
    for row in rows:
        out.append({name: _plain(row[name]) for name in rows.dtype.names})
    return out


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def table(rows: np.ndarray, tablefmt: str = "github", floatfmt: str = ".6g",
          intfmt: str = ",") -> str:
    """A sweep rendered as a text table (tabulate), one row per combination; whole numbers
    print as exact integers with thousands separators."""
    return tabulate(records(rows), headers="keys", tablefmt=tablefmt, floatfmt=floatfmt,
                    intfmt=intfmt)


__all__ = ["Minimum", "lambdify", "minimize", "records", "sweep", "symbols", "table"]
