"""Free dimensions: trace a model with torch's symbolic shapes and read its sizes back as plain
sympy expressions in the user's names.

A named input size (``input_shape=(1, 3, "H", "W")``) becomes a torch ``SymInt`` whose hint (the
value torch runs its shape checks at) is a concrete size. Every size the model derives from it is
then a sympy expression in torch's own symbols (``s0``, ``s1``...) and functions (``FloorDiv``,
``CeilDiv``...). `SymbolicShapes.resolve` applies the ShapeEnv's replacements (the equalities it
learned), renames the free symbols to the user's and rewrites torch's functions as plain sympy
(``floor``, ``ceiling``, ``Mod``, ``Max``), so that results substitute, simplify and lambdify.
docs/free-dims.md says what holds where.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch
import torch.utils._sympy.functions as tf

from costmodel.errors import CostModelError
from costmodel.load import InputSpec

#: the hint of a named input size when none is given: torch checks shapes at this value
DEFAULT_HINT = 224


def symbol(name: str) -> sympy.Symbol:
    """The canonical symbol of a free dimension: positive, no other assumption, so that it
    compares equal to ``sympy.Symbol(name, positive=True)`` made anywhere else."""
    return sympy.Symbol(name, positive=True)


def name_trailing_dims(specs: Sequence[InputSpec], names: Sequence[str] | str
                       ) -> tuple[list[InputSpec], dict[str, int]]:
    """`--symbolic H,W`: name the last len(names) sizes of the first input (an image's
    spatial dims, a sequence's length); the sizes they replace become the names' hints."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    bad = [n for n in names if not n.isidentifier()]
    if bad or not names:
        raise CostModelError(f"bad --symbolic {','.join(names)!r}: expected names like H,W")
    if not specs:
        raise CostModelError("--symbolic: the model has no input to name sizes of")
    first = specs[0]
    if len(names) > len(first.shape):
        raise CostModelError(f"--symbolic names {len(names)} sizes but the first input has "
                             f"{len(first.shape)}: {first.shape}")
    keep = len(first.shape) - len(names)
    hints = {n: d for n, d in zip(names, first.shape[keep:]) if isinstance(d, int)}
    named = InputSpec((*first.shape[:keep], *names), first.dtype)
    return [named, *specs[1:]], hints


def _floor_div(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    return sympy.floor(a / b)


#: torch's sympy functions -> their plain sympy meaning (arguments already translated)
_PLAIN: dict[type, Callable[..., sympy.Expr]] = {
    tf.CleanDiv: lambda a, b: a / b,  # torch proved that b divides a
    tf.FloorDiv: _floor_div,
    tf.CeilDiv: lambda a, b: sympy.ceiling(a / b),
    tf.IntTrueDiv: lambda a, b: a / b,
    tf.FloatTrueDiv: lambda a, b: a / b,
    tf.Mod: sympy.Mod,
    tf.PythonMod: sympy.Mod,
    tf.ModularIndexing: lambda x, d, m: sympy.Mod(sympy.floor(x / d), m),
    tf.ToFloat: lambda x: x,
    tf.TruncToFloat: lambda x: sympy.sign(x) * sympy.floor(abs(x)),
    tf.TruncToInt: lambda x: sympy.sign(x) * sympy.floor(abs(x)),
    tf.FloorToInt: sympy.floor,
    tf.CeilToInt: sympy.ceiling,
    tf.Identity: lambda x: x,
    tf.Max: sympy.Max,
    tf.Min: sympy.Min,
    tf.PowByNatural: sympy.Pow,
    tf.FloatPow: sympy.Pow,
    tf.Where: lambda c, a, b: sympy.Piecewise((a, c), (b, True)),
}


def plain(expr: sympy.Basic, rename: Mapping[sympy.Symbol, sympy.Expr]) -> sympy.Basic:
    """`expr` with torch's functions rewritten as plain sympy and symbols renamed."""
    if isinstance(expr, sympy.Symbol):
        return rename.get(expr, expr)
    if not expr.args:
        return expr
    args = [plain(a, rename) for a in expr.args]
    rule = _PLAIN.get(type(expr))
    if rule is not None:
        return rule(*args)
    return expr.func(*args)


@dataclass
class SymbolicShapes:
    """One symbolic trace's shape machinery: the fake-tensor mode and its ShapeEnv, the free
    symbols by name, and the translation of torch's size expressions back to the user's."""

    hints: Mapping[str, int] = field(default_factory=dict)
    where: str = "model"

    def __post_init__(self) -> None:
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.symbolic_shapes import ShapeEnv

        # duck_shape=False: two sizes with the same hint are not assumed equal
        self.env = ShapeEnv(duck_shape=False)
        self.fake_mode = FakeTensorMode(shape_env=self.env, allow_non_fake_inputs=True)
        self.named: dict[str, torch.SymInt] = {}  # user name -> its SymInt
        self.rename: dict[sympy.Symbol, sympy.Expr] = {}  # torch symbol -> user expression
        self._cache: dict[sympy.Basic, Any] = {}

    # --- before the trace -----------------------------------------------------------------------

    def size(self, name: str) -> torch.SymInt:
        """The SymInt of the free dimension `name` (one per name: a name used twice is tied)."""
        if name not in self.named:
            from torch._dynamo.source import ConstantSource
            from torch.fx.experimental.symbolic_shapes import DimDynamic

            hint = int(self.hints.get(name, DEFAULT_HINT))
            source = ConstantSource(f"dim_{name}")
            sym = self.env.create_symbol(hint, source, dynamic_dim=DimDynamic.DYNAMIC)
            self.named[name] = self.env.create_symintnode(sym, hint=hint, source=source)
            self.rename[sym] = symbol(name)
        return self.named[name]

    def fakify(self, tensor: torch.Tensor) -> torch.Tensor:
        """A fake copy of a parameter or buffer with its concrete shape."""
        from torch.fx.experimental.symbolic_shapes import DimDynamic, StatelessSymbolicContext

        static = StatelessSymbolicContext(dynamic_sizes=[DimDynamic.STATIC] * tensor.ndim)
        return self.fake_mode.from_tensor(tensor, symbolic_context=static)

    def inputs(self, specs: Sequence[InputSpec], device: Any) -> list[torch.Tensor]:
        """Input tensors (made inside the fake mode) whose named sizes are symbolic."""
        return [torch.empty([self.size(d) if isinstance(d, str) else d for d in s.shape],
                            dtype=s.dtype, device=device) for s in specs]

    # --- after the trace ------------------------------------------------------------------------

    def check(self) -> None:
        """Fail, naming the dimension, where the model fixed a free size to one value."""
        for name, value in self.named.items():
            expr = self.env.replace(value.node.expr)
            if expr.is_number:
                raise CostModelError(
                    f"{self.where}: the model fixes {name} to {int(expr)}, so it cannot be "
                    f"free (a shape check or a size-dependent branch depends on it)")

    def resolve(self, value: Any) -> Any:
        """An int for a concrete size, a plain sympy expression in the user's names else."""
        if isinstance(value, torch.SymInt):
            value = value.node.expr
        if not isinstance(value, sympy.Basic):
            return value
        found = self._cache.get(value)
        if found is None:
            expr = plain(self.env.replace(value), self.rename)
            found = int(expr) if expr.is_Integer else expr
            self._cache[value] = found
        return found

    def guards(self) -> list[sympy.Basic]:
        """The conditions torch checked on the free sizes, in the user's names: the results
        hold wherever these do (docs/free-dims.md)."""
        out = []
        for guard in self.env.guards:
            expr = self.resolve(guard.expr)
            if expr is not sympy.true:
                out.append(expr)
        return out

