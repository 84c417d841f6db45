"""Which parameters a freed channel width can reach, read from a concrete trace's graph, so that
the width trace makes only their sizes symbolic.

A width trace with every parameter size symbolic spends its time in torch's symbolic arithmetic
over hundreds of sizes that end up concrete again (docs/free-dims.md). The sizes tied to a freed
width are those of the parameters that the tensors carrying it meet: the ops that read such a
tensor and the ops that produce one, through element-wise ties, concatenations and splits, and
the input channels of the convolutions and linear layers that read it. A dense contraction's
output channels come from its weight, so the width stops there; a grouped one (a depthwise
conv: weight dim 1 differs from the input's channels) passes it on.

The scope is a guess from concrete sizes; `SymbolicShapes.scope_holds` checks the scoped
trace's results for any sign that a size outside it was tied to the width (then the width
trace runs again with every size symbolic), so a guess that falls short costs time, never a
wrong count.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from costmodel.capture.spec import InputSpec
from costmodel.capture.symdims import EVERYTHING
from costmodel.capture.trace import Traced, trace
from costmodel.errors import CostModelError

_PARAMETERS = ("parameter", "buffer")


def _tensors(value: object) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


def _dims(node: torch.fx.Node) -> set[int]:
    """The sizes above 1 of a node's output."""
    return {int(d) for t in _tensors(node.meta.get("val")) for d in t.shape if int(d) > 1}


def parameter_scope(traced: Traced, widths: Mapping[str, str]) -> set[str] | None:
    """Names of the parameters and buffers whose sizes the freed widths may be tied to, or
    None when the graph does not show where a freed module's output is."""
    graph = traced.graph
    names = {n: traced.sources[n.name][1] for n in graph.nodes if n.op == "placeholder"
             and traced.sources.get(n.name, ("", ""))[0] in _PARAMETERS}
    ops = [n for n in graph.nodes if n.op == "call_function"]

    def params(node: torch.fx.Node) -> list[torch.fx.Node]:
        return [n for n in node.all_input_nodes if n in names]

    def acts(node: torch.fx.Node) -> list[torch.fx.Node]:
        return [n for n in node.all_input_nodes if n not in names]

    def weight(node: torch.fx.Node) -> torch.Tensor | None:
        """The weight of a contraction (conv, linear): a parameter with 2 dims or more."""
        for p in params(node):
            value = p.meta.get("val")
            if isinstance(value, torch.Tensor) and value.ndim >= 2:
                return value
        return None

    carries: set[torch.fx.Node] = set()
    values: set[int] = set()
    work: list[torch.fx.Node] = []
    for pattern in widths:
        inside = [n for n in ops if any(fnmatch.fnmatchcase(path, pattern)
                                        for path in n.meta.get("nn_module_stack", {}))]
        paths = {p for n in inside for p in n.meta.get("nn_module_stack", {})
                 if fnmatch.fnmatchcase(p, pattern)}
        for path in paths:
            mine = [n for n in inside if path in n.meta.get("nn_module_stack", {})]
            last = mine[-1] if mine else None
            own = {int(p.meta["val"].shape[0]) for n in mine for p in params(n)
                   if p.meta["val"].ndim >= 1}
            if last is None or not own & _dims(last):
                return None
            values |= own & _dims(last)
            carries.add(last)
            work.append(last)
    scope: set[torch.fx.Node] = set()
    while work:
        node = work.pop()
        scope.update(params(node))
        w = weight(node)
        ins = acts(node)
        grouped = w is not None and not any(
            int(w.shape[1]) == int(t.shape[1]) for a in ins for t in _tensors(a.meta.get("val"))
            if t.ndim >= 2)
        if w is None or grouped:  # the output's width is the inputs' width: tie them
            for a in ins:
                if a not in carries and _dims(a) & values:
                    carries.add(a)
                    work.append(a)
        for user in node.users:
            scope.update(params(user))  # reads the width: its parameters check it
            w = weight(user)
            if w is not None and int(w.shape[1]) != 1 and int(w.shape[1]) in values:
                continue  # a dense contraction: its output width is its weight's
            if user not in carries:
                before = [t.shape for a in acts(user) for t in _tensors(a.meta.get("val"))]
                values |= {int(d) for t in _tensors(user.meta.get("val"))
                           for d in t.shape if int(d) > 1
                           and all(int(d) not in map(int, s) for s in before)}
                carries.add(user)
                work.append(user)
    return {names[p] for p in scope}


def can_scope(specs: Sequence[InputSpec], widths: Mapping[str, str] | None, built_symbolic: bool,
           train: bool = False, storages: bool = False) -> bool:
    """Whether a width trace can be scoped: an inference trace of a model built with concrete
    sizes, at a concrete input. Training and liveness traces need every size symbolic."""
    return bool(widths) and not (built_symbolic or train or storages) and all(
        isinstance(d, int) for spec in specs for d in spec.shape)


def trace_scoped(model: nn.Module, specs: Sequence[InputSpec], where: str,
                 hints: dict[str, int], widths: dict[str, str]) -> Traced:
    """A width trace with only the scope's sizes symbolic, found from a concrete trace on meta
    tensors; the full width trace where the scope cannot be found or does not hold."""
    scoped: Traced | None = None
    try:
        concrete = trace(model, specs, where, on_meta=True)
        scope = parameter_scope(concrete, widths)
        if scope is not None:
            scoped = trace(model, specs, where, hints, widths, scope=scope)
    except CostModelError:  # a width the scope left fixed, a model that needs its devices
        scoped = None
    if scoped is not None and scoped.shapes is not None and scoped.shapes.scope_holds():
        return scoped
    return trace(model, specs, where, hints, widths, scope=EVERYTHING)
