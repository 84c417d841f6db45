"""Free a factory's size arguments: call it with torch ``SymInt``s so that the sizes it computes
from them (``dim // n_heads``, a rotary table of ``head_dim / 2`` columns) stay symbolic.

The factory runs once inside the fake-tensor mode of a `SymbolicShapes` (the machinery of free
input sizes, costmodel/capture/symdims.py), so its parameters are fake tensors whose sizes are
expressions in the freed arguments; the trace then runs on those parameters in the same mode.
``torch.nn.init`` is switched off while it runs: initialisers compute ``1 / sqrt(fan_in)`` in
Python floats, which would pin a freed size to its hint, and their values never matter here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import torch
from torch import nn

from costmodel.capture.spec import InputSpec, LoadedModel, resolve_inputs
from costmodel.capture.symdims import SymbolicShapes
from costmodel.errors import CostModelError


class Fixed(int):
    """A factory argument passed as this plain int, not freed (`--free-layers n_layers=L`
    builds the model with 2 blocks to fold)."""


def parse_free(items: Sequence[str] | str) -> dict[str, int | None]:
    """`--free dim=4096,n_heads=32` (repeatable) -> {"dim": 4096, "n_heads": 32}; a name with
    no value takes the factory's default as its hint (None here)."""
    if isinstance(items, str):
        items = [items]
    free: dict[str, int | None] = {}
    for item in (part.strip() for text in items for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not name.isidentifier():
            raise CostModelError(f"bad --free {item!r}: expected ARG=INT, e.g. dim=4096")
        if not sep:
            free[name] = None
            continue
        try:
            hint = int(value.strip())
        except ValueError:
            raise CostModelError(f"bad --free {item!r}: {value.strip()!r} is not an integer "
                                 "(the value is the size torch traces at)") from None
        if hint < 2:
            raise CostModelError(f"bad --free {item!r}: a free size is traced at 2 or more")
        free[name] = hint
    if not free:
        raise CostModelError("--free: expected ARG=INT, e.g. dim=4096")
    return free


def _signature(factory: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C extension: cannot say
        return None


def hints_for(factory: Callable[..., Any], free: Mapping[str, int | None],
              where: str) -> dict[str, int]:
    """Each freed argument's hint: the value given, else the factory's integer default. An
    argument the factory does not take is an error naming it."""
    signature = _signature(factory)
    params = signature.parameters if signature is not None else {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    hints = {}
    for name, hint in free.items():
        param = params.get(name)
        if param is None and not takes_any:
            known = ", ".join(n for n, p in params.items()
                              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) or "none"
            raise CostModelError(f"{where}: --free {name}: the factory has no argument "
                                 f"{name!r} (its arguments: {known})")
        if hint is None:
            default = param.default if param is not None else inspect.Parameter.empty
            if not isinstance(default, int) or isinstance(default, bool):
                raise CostModelError(f"{where}: --free {name}: give the size to trace at, "
                                     f"e.g. {name}=64 (the argument has no integer default)")
            hint = default
        hints[name] = hint
    return hints


@contextmanager
def _no_init() -> Iterator[None]:
    """Parameter initialisers as no-ops: their values are never read, and their arithmetic on
    sizes (``1 / math.sqrt(fan_in)``) would turn a free size into a Python float."""
    init = torch.nn.init
    with ExitStack() as stack:
        for name, fn in vars(init).items():
            if name.endswith("_") and not name.startswith("_") and inspect.isfunction(fn):
                stack.enter_context(mock.patch.object(init, name, lambda t, *a, **k: t))
        stack.enter_context(mock.patch.object(init, "_calculate_fan_in_and_fan_out",
                                              lambda t: (1, 1)))
        yield


def build_free(factory: Callable[..., Any], free: Mapping[str, int | None], where: str,
               shapes: SymbolicShapes | None = None) -> tuple[nn.Module, SymbolicShapes]:
    """Call `factory` with each argument in `free` as a symbolic size named after it, inside
    the fake mode of `shapes` (made here when None); the model and that machinery."""
    if isinstance(factory, nn.Module) or not callable(factory):
        raise CostModelError(f"{where}: --free needs a factory or a class to call with sizes, "
                             f"not a built {type(factory).__name__}")
    hints = hints_for(factory, free, where)
    fixed = {name: int(value) for name, value in free.items() if isinstance(value, Fixed)}
    hints = {name: hint for name, hint in hints.items() if name not in fixed}
    if shapes is None:
        shapes = SymbolicShapes(hints, where)
    else:
        shapes.hints = {**shapes.hints, **hints}
    shapes.arguments.update(hints)
    sizes: dict[str, Any] = {name: shapes.size(name) for name in hints}
    sizes.update(fixed)
    try:
        with _no_init(), shapes.fake_mode, torch.device("meta"):
            model = factory(**sizes)
    except CostModelError:
        raise
    except Exception as exc:
        text = (str(exc).strip().splitlines() or [""])[0]
        raise CostModelError(f"{where}: cannot construct the model with free "
                             f"{', '.join(sizes)}: {type(exc).__name__}: {text}") from exc
    if not isinstance(model, nn.Module):
        raise CostModelError(f"{where}: returned a {type(model).__name__}, not an nn.Module")
    return model.eval(), shapes


def input_dims(shapes: SymbolicShapes, shape: Sequence[Any]) -> tuple[Any, ...]:
    """An input shape read from a model built with free arguments: a size that is one freed
    argument becomes its name (so that it is traced as that dimension), others stay as they
    are (ints, or SymInts the trace uses as they are)."""
    names = {value.node.expr: name for name, value in shapes.named.items()}
    out = []
    for d in shape:
        if isinstance(d, torch.SymInt):
            expr = shapes.env.replace(d.node.expr)
            d = names.get(expr, int(expr) if expr.is_Integer else d)
        out.append(d)
    return tuple(out)


def load_free(namespace: Any, factory: Callable[..., Any], free: Mapping[str, int | None],
              input_shapes: Sequence[str] | None, dtype: torch.dtype, where: str) -> Any:
    """`load` for a factory called with free arguments: the model, and its inputs resolved as
    for any TARGET (in the fake mode, since `example_inputs` may be sized by a freed
    argument)."""
    model, shapes = build_free(factory, free, where)
    with shapes.fake_mode:
        specs = resolve_inputs(namespace, model, input_shapes, dtype, where)
    specs = [InputSpec(input_dims(shapes, s.shape), s.dtype) for s in specs]
    return LoadedModel(model, where, specs, shapes=shapes)


def parse_free_layers(text: str) -> tuple[str | None, str]:
    """`--free-layers L` -> (None, "L"); `--free-layers n_layers=L` -> ("n_layers", "L"): the
    factory argument that counts the blocks, and the symbol of the count."""
    arg, sep, name = text.strip().rpartition("=")
    if not name.isidentifier() or (sep and not arg.strip().isidentifier()):
        raise CostModelError(f"bad --free-layers {text!r}: expected NAME or ARG=NAME, e.g. L "
                             "or n_layers=L")
    return (arg.strip() if sep else None), name
