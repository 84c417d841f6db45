"""The pipeline in one call: load -> trace -> graph -> cost. Reports read the result, never
re-trace."""

from __future__ import annotations

import importlib
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx
import torch
from torch import nn

from costmodel.capture.graph import build_graph
from costmodel.capture.load import InputSpec, LoadedModel, load, resolve_inputs, specs_from
from costmodel.capture.symdims import name_trailing_dims
from costmodel.capture.trace import trace, trace_executing
from costmodel.capture.widthscope import can_scope, trace_scoped
from costmodel.cost import ZERO, Cost, Num, to_int, total
from costmodel.errors import CostModelError
from costmodel.formulas import lookup
from costmodel.train import add_optimizer_step, attribute, check_optimizer


@dataclass
class Analysis:
    """A costed op graph. Node attributes are documented in docs/graph.md."""

    model: str
    inputs: list[InputSpec]
    graph: nx.DiGraph
    notes: list[str] = field(default_factory=list)
    #: recorded while running on real CPU tensors (--execute): the costs are for that input
    executed: bool = False

    def ops(self) -> list[dict[str, Any]]:
        """Op nodes in execution order, each a dict of its attributes plus `name`."""
        return [{"name": n, **d} for n, d in self.graph.nodes(data=True) if d["kind"] == "op"]

    def total(self, weights_only: bool = False) -> Cost:
        return total(self.node_cost(d, weights_only) for d in self.ops())

    @staticmethod
    def node_cost(data: dict[str, Any], weights_only: bool = False) -> Cost:
        cost = data["cost"]
        return cost.replace(params=data["weights"]) if weights_only else cost

    def unsupported(self) -> Counter[str]:
        return Counter(d["target"] for d in self.ops() if not d["supported"])

    @property
    def guards(self) -> list[Any]:
        """Conditions on the free dimensions under which the symbolic costs hold: the shape
        checks torch made while tracing at the hints (empty for a concrete analysis)."""
        return list(self.graph.graph.get("guards", []))

    @property
    def moe(self) -> Any:
        """Deprecated: `costmodel.views.moe.summarize(analysis)`. Kept for one release; the one
        place an analysis reaches a view, by name, so that no import runs back up a layer."""
        warnings.warn("Analysis.moe is deprecated: use costmodel.views.moe.summarize(analysis)",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module("costmodel.views.moe").summarize(self)

    @property
    def buffer_elements(self) -> Num:
        """Elements of the buffers the forward reads (BN running statistics...); a formula
        where a freed width sizes them."""
        return to_int(sum((m.numel for m in self.graph.graph["buffers"].values()), 0))


def cost_graph(graph: nx.DiGraph, debug: bool = False) -> None:
    """Evaluate the registry on every op node: sets op_type, cost, supported, weights."""
    parameters = graph.graph["parameters"]
    for _, data in graph.nodes(data=True):
        if data["kind"] != "op":
            data.update(cost=ZERO, supported=True, weights=0)
            continue
        call = data["call"]
        entry = lookup(call.target)
        params = sum((parameters[p].numel for p in data["params"]), 0)
        weights = sum((parameters[p].numel for p in data["params"] if parameters[p].ndim >= 2), 0)
        data["weights"] = weights
        if entry is None:
            data.update(op_type="Unsupported", cost=Cost(params=params), supported=False)
            continue
        try:
            cost = entry.formula(call)
            op_type = entry.type_of(call)
        except Exception as exc:
            if debug:
                raise
            data.update(op_type="Unsupported", cost=Cost(params=params), supported=False,
                        error=f"{type(exc).__name__}: {exc}")
            continue
        data.update(op_type=op_type, cost=cost.replace(params=params), supported=True)


def analyze(model: nn.Module | str, input_shape: Sequence[Any] | None = None,
            inputs: Sequence[torch.Tensor] | None = None, dtype: torch.dtype = torch.float32,
            name: str | None = None, debug: bool = False,
            hints: dict[str, int] | None = None,
            widths: dict[str, str] | None = None, execute: bool = False,
            free: dict[str, int | None] | None = None, train: bool = False,
            optimizer: str | None = None, storages: bool = False) -> Analysis:
    """Cost of a model: an nn.Module (with `input_shape` or `inputs`) or a TARGET string.

    `train` costs a training step instead of an inference forward pass: forward and backward,
    each backward op under the forward op it differentiates (node attribute `phase`), plus the
    update of `optimizer` ("sgd", "adam", "adamw") when one is named (docs/memory.md).
    `storages` records each tensor's storage and what Python holds, for `costmodel.views.memory`.

    `input_shape` is one shape, e.g. (1, 3, 224, 224), or a list of shapes for several inputs;
    without either, the model's own `example_inputs()` or `default_cfg["input_size"]` is used.
    A size given as a name, e.g. (1, 3, "H", "W"), is a free dimension: every cost is then a
    sympy expression in it (docs/free-dims.md). torch checks shapes at the size `hints` gives
    each name (default 224); the expressions hold wherever the checks listed in
    `Analysis.guards` do.

    `widths` frees channel widths: {module path or fnmatch pattern: name}, e.g.
    {"stages.0.*.right.0": "B"}, makes the width of each such module's output the symbol B, and
    every dimension the graph ties to it (the next layer's input channels, element-wise
    partners, norm parameters, a concat's share, the parameters' sizes) follows.

    `execute` runs the model once on real CPU tensors (random inputs of the given shapes, see
    costmodel/capture/execute.py) instead of shape-only ones, for models whose control flow
    depends on values; a TARGET is then built on the CPU, a module must already be there.

    `free` calls a factory (a TARGET string, a class or a function) with symbolic sizes:
    {"dim": 4096, "n_heads": 32} passes each argument as a size named after it, traced at that
    value, so that every cost is a formula in the arguments (docs/llm.md).
    """
    if isinstance(model, str):
        shapes = None
        if input_shape is not None:
            shapes = [",".join(map(str, s)) for s in _shape_list(input_shape)]
        loaded = load(model, shapes, dtype, device="cpu" if execute else "meta", free=free)
        return analyze_loaded(loaded, debug, hints, widths=widths, execute=execute,
                              train=train, optimizer=optimizer, storages=storages)
    if free:
        from costmodel.capture.freeargs import load_free

        shapes = None
        if input_shape is not None:
            shapes = [",".join(map(str, s)) for s in _shape_list(input_shape)]
        where = name or getattr(model, "__name__", type(model).__name__)
        loaded = load_free(None, model, free, shapes, dtype, where)
        return analyze_loaded(loaded, debug, hints, widths=widths, execute=execute,
                              train=train, optimizer=optimizer, storages=storages)
    where = name or type(model).__name__
    if inputs is not None:
        specs = specs_from(tuple(inputs))
    elif input_shape is not None:
        specs = [InputSpec(tuple(s), dtype) for s in _shape_list(input_shape)]
    else:
        specs = resolve_inputs(None, model, None, dtype, where)
    return analyze_loaded(LoadedModel(model.eval(), where, specs), debug, hints, widths=widths,
                          execute=execute, train=train, optimizer=optimizer, storages=storages)


def analyze_loaded(loaded: LoadedModel, debug: bool = False,
                   hints: dict[str, int] | None = None,
                   symbolic: Sequence[str] | str | None = None,
                   widths: dict[str, str] | None = None, execute: bool = False,
                   train: bool = False, optimizer: str | None = None,
                   storages: bool = False) -> Analysis:
    """Trace, build the graph and cost it, for a model and inputs already resolved.

    `symbolic` names the last sizes of the first input (the CLI's --symbolic H,W); the sizes
    they replace are their hints. `execute` records a run on real CPU tensors instead."""
    if symbolic:
        specs, named_hints = name_trailing_dims(loaded.inputs, symbolic)
        loaded = replace(loaded, inputs=specs)
        hints = {**named_hints, **(hints or {})}
    optimizer = check_optimizer(optimizer)
    if optimizer is not None and not train:
        raise CostModelError("--optimizer needs --train: an inference pass updates no weights")
    notes = list(loaded.notes)
    if execute:
        if symbolic or widths or loaded.shapes is not None:
            raise CostModelError(f"{loaded.name}: --execute runs on one concrete input: it "
                                 f"cannot free sizes (--symbolic, --width, --free)")
        if train:
            raise CostModelError(f"{loaded.name}: --execute records an inference pass; "
                                 f"a training step is traced on shapes alone")
        traced, note = trace_executing(loaded.model, loaded.inputs, loaded.name, storages)
        notes.append(note)
    elif can_scope(loaded.inputs, widths, loaded.shapes is not None, train, storages):
        traced = trace_scoped(loaded.model, loaded.inputs, loaded.name, hints or {}, widths or {})
    else:
        traced = trace(loaded.model, loaded.inputs, loaded.name, hints, widths, loaded.shapes,
                       train=train, storages=storages)
    notes.extend(traced.notes)
    graph = build_graph(traced)
    cost_graph(graph, debug)
    graph.graph.update(train=train, optimizer=optimizer)
    if train:
        attribute(graph)
        if optimizer is not None:
            add_optimizer_step(graph, optimizer)
    read = {name for _, data in graph.nodes(data=True) for name in data["params"]}
    size = traced.shapes.resolve if traced.shapes is not None else int
    unused = [(n, size(p.numel())) for n, p in loaded.model.named_parameters() if n not in read]
    if unused:
        count = sum(c for _, c in unused)
        count = f"{count:,}" if isinstance(count, int) else str(count)
        notes.append(f"{len(unused)} parameter tensors ({count} elements) "
                     f"are never read by the forward pass and are not counted, e.g. "
                     f"{unused[0][0]}")
    return Analysis(loaded.name, loaded.inputs, graph, notes, executed=execute)


def _shape_list(shape: Sequence[Any]) -> list[tuple[Any, ...]]:
    if not shape:
        raise CostModelError("empty input shape")
    if all(isinstance(d, (int, str)) for d in shape):
        return [tuple(shape)]
    return [tuple(s) for s in shape]
