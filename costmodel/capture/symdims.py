"""Free dimensions: trace a model with torch's symbolic shapes and read its sizes back as plain
sympy expressions in the user's names.

A named input size (``input_shape=(1, 3, "H", "W")``) becomes a torch ``SymInt`` whose hint (the
value torch runs its shape checks at) is a concrete size. Every size the model derives from it is
then a sympy expression in torch's own symbols (``s0``, ``s1``...) and functions (``FloorDiv``,
``CeilDiv``...). `SymbolicShapes.resolve` applies the ShapeEnv's replacements (the equalities it
learned), renames the free symbols to the user's and rewrites torch's functions as plain sympy
(``floor``, ``ceiling``, ``Mod``, ``Max``), so that results substitute, simplify and lambdify.

A freed channel width (``widths={"layer1.0.conv1": "C"}``) is traced the same way, with the
channel sizes of every parameter symbolic: torch's shape checks (a conv's input channels, an
element-wise add, a norm's scale) then tie the dims that must agree, in the ShapeEnv's
replacements. The chosen module's output width keeps its symbol, renamed; every other parameter
size takes its concrete value again, so dims equal only by coincidence stay concrete.
docs/free-dims.md says which ops tie what, and what holds where.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch
from torch import nn

from costmodel.capture.spec import InputSpec
from costmodel.errors import CostModelError

#: the hint of a named input size when none is given: torch checks shapes at this value
DEFAULT_HINT = 224


class _Everything:
    """The scope that holds every name."""

    def __contains__(self, name: object) -> bool:
        return True


EVERYTHING: Container[str] = _Everything()


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


def _integer(name: str) -> sympy.Symbol:
    """The symbol a free size is built with: an integer, so that sympy drops the floors that
    whole sizes make redundant (floor(B/2 + B/2) is B); results are then stated in `symbol`."""
    return sympy.Symbol(name, integer=True, positive=True)


def _floor_div(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    return sympy.floor(a / b)


@functools.cache
def _plain_rules() -> dict[type, Callable[..., sympy.Expr]]:
    """torch's sympy functions -> their plain sympy meaning (arguments already translated);
    imported on first use, so that a concrete analysis never loads them."""
    import torch.utils._sympy.functions as tf

    return {
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
    rule = _plain_rules().get(type(expr))
    if rule is not None:
        return rule(*args)
    return expr.func(*args)


def _eval_batch_norm(mode: Any, x: torch.Tensor, weight: torch.Tensor | None,
                     bias: torch.Tensor | None, running_mean: torch.Tensor | None,
                     running_var: torch.Tensor | None, training: bool, momentum: float,
                     eps: float) -> Any:
    """`aten.native_batch_norm` with running statistics, on symbolic sizes: the fake mode would
    run torch's Python decomposition, a dozen element-wise ops whose broadcasts check each
    symbolic size again (40% of a ShuffleNetV2 width trace). Its shape logic is one tie, the
    input's channels equal to those of the scale, the shift and both statistics, which
    `torch._check` records exactly as the broadcasts did; the outputs are the decomposition's:
    the input's shape and dtype, and the saved statistics (C values in the computation dtype,
    or none on the CPU). Training mode computes statistics: the decomposition as before."""
    if training or running_mean is None or running_var is None:
        from torch._decomp.decompositions import native_batch_norm

        with mode:
            return native_batch_norm(x, weight, bias, running_mean, running_var, training,
                                     momentum, eps)
    channels = x.shape[1]
    for tensor in (weight, bias, running_mean, running_var):
        if tensor is not None:
            torch._check(tensor.shape[0] == channels)
    with mode:
        out = torch.empty_like(x)
        if x.device.type == "cpu":
            return out, x.new_empty((0,)), x.new_empty((0,))
        from torch._prims_common import get_computation_dtype

        stats = get_computation_dtype(x.dtype)
        return (out, torch.empty_like(running_mean, dtype=stats),
                torch.empty_like(running_var, dtype=stats))


@dataclass
class SymbolicShapes:
    """One symbolic trace's shape machinery: the fake-tensor mode and its ShapeEnv, the free
    symbols by name, and the translation of torch's size expressions back to the user's."""

    hints: Mapping[str, int] = field(default_factory=dict)
    where: str = "model"
    #: module path or fnmatch pattern -> the name of its output's width
    widths: Mapping[str, str] = field(default_factory=dict)
    #: the parameters and buffers whose sizes a width trace makes symbolic (widthscope.py)
    scope: Container[str] = field(default_factory=lambda: EVERYTHING)

    def __post_init__(self) -> None:
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.symbolic_shapes import ShapeEnv

        # duck_shape=False: two sizes with the same hint are not assumed equal
        self.env = ShapeEnv(duck_shape=False)
        self.fake_mode = FakeTensorMode(shape_env=self.env, allow_non_fake_inputs=True)
        self.named: dict[str, torch.SymInt] = {}  # user name -> its SymInt
        self.rename: dict[sympy.Symbol, sympy.Expr] = {}  # torch symbol -> user expression
        self._cache: dict[sympy.Basic, Any] = {}
        self.param_dims: dict[sympy.Symbol, str] = {}  # symbolic parameter size -> "name[dim]"
        self.outputs: dict[str, tuple[Any, ...]] = {}  # watched module path -> output sizes
        self.subst: dict[sympy.Symbol, sympy.Expr] = {}  # ties torch checked, see _tie
        self.exact: dict[sympy.Basic, sympy.Expr] = {}  # floor(a/b) -> a/b, see divide_exactly
        self.arguments: set[str] = set()  # names that are factory arguments (freeargs.py)
        self.width_hints: dict[str, int] = {}  # a freed width's name -> its size in the trace

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
            self.rename[sym] = _integer(name)
        return self.named[name]

    def fakify(self, tensor: torch.Tensor, name: str = "") -> torch.Tensor:
        """A fake copy of a parameter or buffer: its concrete shape, or, when widths are freed
        and the tensor is in their scope, symbolic channel sizes (dims 0 and 1, sizes above 1)
        that torch's checks can tie."""
        from torch.fx.experimental.symbolic_shapes import DimDynamic, StatelessSymbolicContext

        if self.widths and name not in self.scope:  # out of reach: an empty fake, made fast
            cache, self.fake_mode.cache_enabled = self.fake_mode.cache_enabled, False
            try:
                with self.fake_mode:
                    return torch.empty_strided(tensor.shape, tensor.stride(),
                                               dtype=tensor.dtype, device=tensor.device
                                               ).requires_grad_(tensor.requires_grad)
            finally:
                self.fake_mode.cache_enabled = cache
        free = bool(self.widths)
        dynamic = [DimDynamic.DYNAMIC if free and i < 2 and size > 1
                   else DimDynamic.STATIC for i, size in enumerate(tensor.shape)]
        context = StatelessSymbolicContext(dynamic_sizes=dynamic)
        fake = self.fake_mode.from_tensor(tensor, symbolic_context=context)
        for i, size in enumerate(fake.shape):
            if isinstance(size, torch.SymInt) and isinstance(size.node.expr, sympy.Symbol):
                self.param_dims.setdefault(size.node.expr, f"{name}[{i}]")
        return fake

    def widen(self, tensor: torch.Tensor, name: str = "") -> torch.Tensor:
        """`fakify` for a tensor a factory built with free arguments (a fake tensor already,
        some sizes expressions in them): its sizes that are numbers become symbolic where
        `fakify` would make them so (dims 0 and 1, sizes above 1, in the scope), so that a
        width can be freed in the model those arguments built."""
        from torch._dynamo.source import ConstantSource
        from torch.fx.experimental.symbolic_shapes import DimDynamic

        if not self.widths or name not in self.scope:
            return tensor
        sizes: list[Any] = []
        for i, size in enumerate(tensor.shape):
            if i < 2 and not isinstance(size, torch.SymInt) and size > 1:
                source = ConstantSource(f"param_{len(self.param_dims)}_{name}_{i}")
                sym = self.env.create_symbol(size, source, dynamic_dim=DimDynamic.DYNAMIC)
                self.param_dims.setdefault(sym, f"{name}[{i}]")
                size = self.env.create_symintnode(sym, hint=size, source=source)
            sizes.append(size)
        with self.fake_mode:
            return torch.empty(sizes, dtype=tensor.dtype, device=tensor.device
                               ).requires_grad_(tensor.requires_grad)

    @contextmanager
    def watch(self, model: nn.Module, state: Mapping[str, torch.Tensor]) -> Iterator[None]:
        """While the model runs: record the output sizes of the modules named in `widths`;
        give each depthwise convolution a symbolic `groups` (its weight's output channels) and
        each LayerNorm/RMSNorm a symbolic `normalized_shape` (its weight's shape), so that
        their channels stay tied to their input's instead of being fixed by a Python int."""
        if not self.widths:
            yield
            return
        lean = self.lean()
        modules = dict(model.named_modules())
        hooks, patched = [], []
        for pattern in self.widths:
            matched = [p for p in modules if fnmatch.fnmatchcase(p, pattern)]
            if not matched:
                raise CostModelError(f"{self.where}: widths: no module matches {pattern!r}")
            for path in matched:
                hooks.append(modules[path].register_forward_hook(self._recorder(path)))
        for path, module in modules.items():
            weight = state.get(f"{path}.weight" if path else "weight")
            if weight is None:
                continue
            if (isinstance(module, nn.modules.conv._ConvNd) and not module.transposed
                    and 1 < module.groups == module.in_channels == module.out_channels):
                patched.append((module, "groups", module.groups))
                module.groups = weight.shape[0]
            shape = getattr(module, "normalized_shape", None)  # LayerNorm, RMSNorm
            if isinstance(shape, tuple) and len(shape) == weight.ndim:
                patched.append((module, "normalized_shape", shape))
                module.normalized_shape = tuple(weight.shape)
        try:
            with lean:
                yield
        finally:
            for hook in hooks:
                hook.remove()
            for module, name, value in patched:
                setattr(module, name, value)

    @contextmanager
    def lean(self) -> Iterator[None]:
        """The ShapeEnv and fake mode without two aids that cost more than they save when
        many sizes are symbolic (a width trace, free factory arguments), and change no
        result:
        - the fake-tensor cache (hashing its keys; the mode reads its switch when it is
          made, so it is turned off on the mode itself);
        - the guards' implications kept as axioms, which torch re-simplifies whenever it
          learns a fact: without them a condition an earlier guard implied is checked at the
          hint and recorded again, with the same outcome.
        ShuffleNetV2 1.0x with a stage width free: 8.6 s CPU with both, 3.7 s without;
        LLaMA-7B free in dim and n_heads (2 blocks): 2.3 s and 1.7 s.
        And a batch norm on symbolic sizes takes `_eval_batch_norm`'s shortcut instead of
        torch's Python decomposition (on concrete sizes the decomposition is cheap)."""
        from torch._subclasses.fake_impls import get_fast_op_impls

        cache, self.fake_mode.cache_enabled = self.fake_mode.cache_enabled, False
        implications = vars(self.env).get("get_implications")
        self.env.get_implications = lambda expr: ()
        fast = get_fast_op_impls()
        batch_norm = torch.ops.aten.native_batch_norm.default
        before = fast.get(batch_norm)
        fast[batch_norm] = _eval_batch_norm
        try:
            yield
        finally:
            if before is None:
                fast.pop(batch_norm, None)
            else:
                fast[batch_norm] = before
            self.fake_mode.cache_enabled = cache
            if implications is None:
                del self.env.get_implications
            else:
                self.env.get_implications = implications

    def _recorder(self, path: str) -> Callable[..., None]:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                self.outputs[path] = tuple(output.shape)

        return record

    def inputs(self, specs: Sequence[InputSpec], device: Any) -> list[torch.Tensor]:
        """Input tensors (made inside the fake mode) whose named sizes are symbolic."""
        return [torch.empty([self.size(d) if isinstance(d, str) else d for d in s.shape],
                            dtype=s.dtype, device=device) for s in specs]

    # --- after the trace ------------------------------------------------------------------------

    def check(self) -> None:
        """Fail, naming the dimension, where the model fixed a free size to one value; then
        free the widths asked for and pin every other parameter size to its value."""
        for name, value in self.named.items():
            expr = self.env.replace(value.node.expr)
            if expr.is_number:
                hint = (f"; if it counts repeated blocks, fold them: --free-layers {name}=NAME"
                        if name in self.arguments else "")
                raise CostModelError(
                    f"{self.where}: the model fixes {name} to {int(expr)}, so it cannot be "
                    f"free (a shape check or a size-dependent branch depends on it){hint}")
            if isinstance(expr, sympy.Symbol):  # tied to a parameter size that stands for it
                self.rename[expr] = _integer(name)
        if self.widths:
            self._free_widths()

    def _tie(self) -> None:
        """Equalities torch checked but did not turn into replacements (a size equal to an
        expression with a floor in it: the half of a chunk that a conv reads): each one whose
        side is a lone parameter size makes that size follow the other side."""
        params = set(self.param_dims)
        for guard in self.env.guards:
            expr = self.env.replace(guard.expr)
            if not isinstance(expr, sympy.Eq):
                continue
            for lone, other in ((expr.lhs, expr.rhs), (expr.rhs, expr.lhs)):
                if not (isinstance(lone, sympy.Symbol) and lone in params) or lone in self.subst:
                    continue
                other = other.xreplace(self.subst)
                if lone in other.free_symbols:
                    continue
                self.subst = {k: v.xreplace({lone: other}) for k, v in self.subst.items()}
                self.subst[lone] = other
                break

    def _replace(self, expr: sympy.Basic) -> sympy.Basic:
        """torch's replacements, then the ties of `_tie`."""
        expr = self.env.replace(expr)
        return expr.xreplace(self.subst) if self.subst else expr

    def _free_widths(self) -> None:
        """Rename the representative symbol of each freed width; every other parameter size
        goes back to its concrete value."""
        self._tie()
        params = {self._replace(sym) for sym in self.param_dims}
        params = {s for expr in params for s in expr.free_symbols} - set(self.rename)
        freed: dict[sympy.Symbol, tuple[sympy.Expr, str]] = {}
        for pattern, name in self.widths.items():
            for path, sizes in self.outputs.items():
                if not fnmatch.fnmatchcase(path, pattern):
                    continue
                sym, solution = self._width_of(path, sizes, params, _integer(name))
                earlier = freed.get(sym)
                if earlier is not None and earlier[0] != solution:
                    raise CostModelError(
                        f"{self.where}: widths: {path} is tied by the graph to {earlier[1]}, "
                        f"which has another name")
                freed[sym] = (solution, path)
        for pattern in self.widths:
            if not any(fnmatch.fnmatchcase(p, pattern) for p in self.outputs):
                raise CostModelError(f"{self.where}: widths: no module matching {pattern!r} "
                                     "returned a tensor")
        for sym in params:
            if sym in freed:
                self.rename[sym] = freed[sym][0]
            else:
                self.rename[sym] = sympy.Integer(self._values[sym])

    def _width_of(self, path: str, sizes: tuple[Any, ...], params: set[sympy.Symbol],
                  user: sympy.Symbol) -> tuple[sympy.Symbol, sympy.Expr]:
        """The parameter symbol behind a module's output width, and its value in `user`."""
        exprs = [self._replace(s.node.expr) if isinstance(s, torch.SymInt)
                 else sympy.Integer(s) for s in sizes]
        dims = [i for i, e in enumerate(exprs) if e.free_symbols & params]
        if len(dims) != 1:
            shape = "x".join(str(self.hint(e)) for e in exprs)
            if not dims:
                raise CostModelError(
                    f"{self.where}: widths: every size of {path or '(model)'}'s output {shape} "
                    "is fixed: its width is checked against a constant (a literal size in a "
                    "view or reshape, a grouped conv's groups, a constant tensor...)")
            raise CostModelError(
                f"{self.where}: widths: {path or '(model)'}'s output {shape} has several "
                f"dimensions set by parameter sizes ({dims}): free a module with one")
        width = plain(exprs[dims[0]], {})
        owners = list(width.free_symbols & params)
        if len(owners) != 1:
            labels = self._labels()
            named = plain(width, {o: sympy.Symbol(labels.get(o, str(o))) for o in owners})
            made_of = ", ".join(sorted(labels.get(o, str(o)) for o in owners))
            raise CostModelError(
                f"{self.where}: widths: the width of {path or '(model)'} is {named}, made of "
                f"several parameter sizes ({made_of}): free the modules that make them "
                "instead")
        self.width_hints[user.name] = self.hint(width)
        solutions = sympy.solve(sympy.Eq(width, user), owners[0])
        if len(solutions) != 1:
            raise CostModelError(
                f"{self.where}: widths: cannot express {path}'s width {width} in {user}")
        return owners[0], solutions[0]

    def scope_holds(self) -> bool:
        """Whether a trace with only `scope`'s sizes symbolic shows no sign of a size outside it
        that the full trace would tie to a freed width. Such a size is a number here, so the
        width would meet it as a constant: a parameter size following the width with an offset
        (`C - 6`), or a guard that pins the width (`Eq(floor(C/2), 58)`). Every parameter size
        must therefore scale with the widths, and every equality guard hold when the widths
        are 2 and 3 times their traced sizes (an exact division stays exact)."""
        hints = {symbol(name): value for name, value in self.width_hints.items()}
        scaled = [{s: k * v for s, v in hints.items()} for k in (2, 3)]
        for sym in self.param_dims:
            size = self.resolve(sym)
            if isinstance(size, sympy.Expr) and not size.is_number:
                at = size.xreplace(hints)
                if any(size.xreplace(s) != k * at for k, s in zip((2, 3), scaled)):
                    return False
        for guard in self.guards():
            if isinstance(guard, sympy.Eq) and not all(
                    guard.xreplace(s) is sympy.true for s in scaled):
                return False
        return True

    def _labels(self) -> dict[sympy.Symbol, str]:
        """Each parameter size's class, named after its first member: 'conv.weight[0]'."""
        labels: dict[sympy.Symbol, str] = {}
        for sym, label in self.param_dims.items():
            rep = self._replace(sym)
            if isinstance(rep, sympy.Symbol):
                labels.setdefault(rep, label)
        return labels

    @property
    def _values(self) -> Mapping[sympy.Symbol, sympy.Integer]:
        """The hint of every symbol (renamed backed_var_to_val in recent torch)."""
        return getattr(self.env, "backed_var_to_val", None) or self.env.var_to_val

    def hint(self, expr: sympy.Expr) -> int:
        """The value of a size at the hints the trace ran at."""
        return int(expr.xreplace(self._values))

    def resolve(self, value: Any) -> Any:
        """An int for a concrete size, a plain sympy expression in the user's names else."""
        if isinstance(value, torch.SymInt):
            value = value.node.expr
        if not isinstance(value, sympy.Basic):
            return value
        found = self._cache.get(value)
        if found is None:
            expr = plain(self._replace(value), self.rename)
            if expr.is_Integer:
                found = int(expr)
            else:
                found = expr.xreplace({s: symbol(s.name) for s in expr.free_symbols})
                for _ in range(4 if self.exact else 0):  # a rule may uncover another's floor
                    found, before = sympy.sympify(found).xreplace(self.exact), found
                    if found == before:
                        break
                if self.exact and isinstance(found, sympy.Expr):
                    found = sympy.expand(found)
                    found = int(found) if found.is_Integer else found
            self._cache[value] = found
        return found

    def guards(self) -> list[sympy.Basic]:
        """The conditions torch checked on the free sizes, in the user's names: the results
        hold wherever these do (docs/free-dims.md)."""
        out = []
        for guard in self.env.guards:
            expr = self.resolve(guard.expr)
            if expr is not sympy.true and expr not in out:
                out.append(expr)
        return out


    def divide_exactly(self) -> None:
        """Drop the floors of divisions the guards say are exact: a model that checks
        ``dim % n_heads == 0`` (or views ``dim`` as ``n_heads x head_dim``) makes
        ``floor(dim/n_heads)`` plain ``dim/n_heads``, so that costs read as polynomials. Exact
        wherever the guards hold, like every symbolic result."""
        rules: dict[sympy.Basic, sympy.Expr] = {}
        for guard in self.guards():
            if not isinstance(guard, sympy.Eq):
                continue
            guard = guard.xreplace(rules)
            if not isinstance(guard, sympy.Eq):
                continue
            lhs, rhs = guard.lhs, guard.rhs
            if isinstance(lhs, sympy.Mod) and rhs == 0:
                exact = lhs.args[0] / lhs.args[1]
                rules[sympy.floor(exact)] = rules[sympy.ceiling(exact)] = exact
                continue
            for floor in (lhs - rhs).atoms(sympy.floor):
                try:
                    solved = sympy.solve(lhs - rhs, floor)
                except NotImplementedError:  # Max, Min...: not a rule for a floor
                    continue
                if len(solved) == 1 and not solved[0].has(sympy.floor, sympy.Mod):
                    rules[floor] = solved[0]
                    break
        self.exact = rules
        self._cache.clear()
