"""A training step on the op graph: each backward op tied to the forward op it differentiates,
and the optimizer's update as one more node.

Autograd numbers the backward node of every forward op it records (its sequence number); the
tracer gives each forward node the range of numbers its op took and each backward node the
number of the autograd node running it (costmodel/capture/trace_train.py), so matching the two is a
lookup. A backward op then reports under its forward op's module and op type, with `phase`
telling the two apart (docs/memory.md).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

import networkx as nx

from costmodel.cost import ZERO, Cost, Num, total
from costmodel.errors import CostModelError
from costmodel.formulas.optimizer import OPTIMIZERS, optimizer_state_bytes, optimizer_step

PHASES = ("forward", "backward", "optimizer")
OPTIMIZER_NODE = "optimizer_step"


def check_optimizer(name: str | None) -> str | None:
    """The optimizer's name, lower case, or a one-line error naming the known ones."""
    if name is None:
        return None
    if name.lower() not in OPTIMIZERS:
        raise CostModelError(f"unknown optimizer {name!r}: expected one of "
                             f"{', '.join(OPTIMIZERS)}")
    return name.lower()


def attribute(graph: nx.DiGraph) -> None:
    """Set `differentiates` (the forward node, or None), `module`, `module_class` and, for a
    supported op, `op_type` on every backward node, from the autograd sequence numbers."""
    spans = sorted((d["seq_nr"][0], d["seq_nr"][1], n) for n, d in graph.nodes(data=True)
                   if d.get("phase") == "forward" and d["seq_nr"][1] > d["seq_nr"][0])
    starts = [lo for lo, _, _ in spans]
    for _, data in graph.nodes(data=True):
        if data.get("phase") != "backward":
            continue
        data["differentiates"] = None
        seq = data.get("grad_fn_seq_nr")
        if data.get("grad_of"):  # AccumulateGrad: the gradient lands in a parameter's .grad
            module = data["grad_of"].rpartition(".")[0]
            data.update(module=module, module_class=graph.graph["modules"].get(module, ""))
            continue
        if seq is None:
            continue
        i = bisect_right(starts, seq) - 1
        if i < 0 or not spans[i][0] <= seq < spans[i][1]:
            continue
        forward = graph.nodes[spans[i][2]]
        data.update(differentiates=spans[i][2], module=forward["module"],
                    module_class=forward["module_class"])
        if data["supported"] and forward["supported"]:
            data["op_type"] = forward["op_type"]


def grad_params(graph: nx.DiGraph) -> set[str]:
    """Names of the parameters that receive a gradient in this step."""
    names = {d["grad_of"] for _, d in graph.nodes(data=True) if d.get("grad_of")}
    return names | set(graph.graph.get("grads", {}))


def parameter_bytes(graph: nx.DiGraph) -> tuple[Num, Num, int]:
    """(elements, bytes, tensors) of the parameters that receive a gradient in this step."""
    names = grad_params(graph)
    metas = [m for n, m in graph.graph["parameters"].items() if n in names]
    return (sum((m.numel for m in metas), 0), sum((m.nbytes for m in metas), 0), len(metas))


def optimizer_bytes(graph: nx.DiGraph, optimizer: str | None) -> Num:
    """Bytes of the optimizer's state for the parameters that receive a gradient."""
    if optimizer is None:
        return 0
    names = grad_params(graph)
    return sum((optimizer_state_bytes(optimizer, m.numel, 1, m.itemsize)
                for n, m in graph.graph["parameters"].items() if n in names), 0)


def add_optimizer_step(graph: nx.DiGraph, optimizer: str) -> None:
    """One node for the update of every parameter that receives a gradient."""
    names = grad_params(graph)
    cost = total(optimizer_step(optimizer, m.numel, m.itemsize)
                 for n, m in graph.graph["parameters"].items() if n in names)
    graph.add_node(OPTIMIZER_NODE, kind="op", target=f"optimizer.{optimizer}",
                   op_type="Optimizer", module="", module_class="", input_shapes=[],
                   output_shapes=[], dtypes=[], params=[], buffers=[], call=None,
                   phase="optimizer", differentiates=None, cost=cost, supported=True,
                   weights=0, storages=[], reads=[], internal=[])


def phase_of(data: dict[str, Any]) -> str:
    """The phase of an op node; an inference graph is all forward."""
    return data.get("phase", "forward")


def phase_totals(ops: list[dict[str, Any]]) -> dict[str, Cost]:
    """Cost of each phase (forward, backward, optimizer) over the given op dicts."""
    sums = dict.fromkeys(PHASES, ZERO)
    for op in ops:
        sums[phase_of(op)] = sums[phase_of(op)] + op["cost"]
    return sums
