"""Fold identical repeated blocks into ``prefix + L x block + suffix``, with L a symbol.

A transformer's layers (a ``ModuleList`` whose children ``layers.0``, ``layers.1``... share one
class) usually cost exactly the same: the same ops on the same shapes. Folding keeps the first
block's ops, multiplies their costs (and the parameters and buffers they own) by a symbol, and
drops the other blocks, so that every total is a formula in the layer count. Blocks that differ
in any op or cost are never folded: that is an error naming the first difference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import networkx as nx
import sympy

from costmodel.analysis import Analysis
from costmodel.capture.symdims import symbol
from costmodel.cost import Cost
from costmodel.errors import CostModelError
from costmodel.formulas import TensorMeta


def _block_of(path: str, container: str) -> tuple[int, str] | None:
    """(block index, path inside the block) of a module path under `container`."""
    prefix = f"{container}." if container else ""
    if not path.startswith(prefix):
        return None
    head, _, rest = path[len(prefix):].partition(".")
    return (int(head), rest) if head.isdigit() else None


def containers(analysis: Analysis) -> list[str]:
    """Module paths with two or more numbered children of one class (``layers`` when
    ``layers.0``, ``layers.1``... exist), in first-use order."""
    classes: Mapping[str, str] = analysis.graph.graph["modules"]
    children: dict[str, dict[int, str]] = defaultdict(dict)
    for path, cls in classes.items():
        parent, _, last = path.rpartition(".")
        if last.isdigit():
            children[parent][int(last)] = cls
    return [p for p, kids in children.items()
            if len(kids) >= 2 and sorted(kids) == list(range(len(kids)))
            and len(set(kids.values())) == 1]


def _signature(ops: list[dict[str, Any]], container: str) -> list[tuple[Any, ...]]:
    return [(op["target"], op["op_type"], _block_of(op["module"], container)[1],
             op["cost"], op["weights"]) for op in ops]


def _blocks(analysis: Analysis, container: str) -> dict[int, list[dict[str, Any]]]:
    blocks: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for op in analysis.ops():
        found = _block_of(op["module"], container)
        if found is not None:
            blocks[found[0]].append(op)
    return dict(sorted(blocks.items()))


def _differs(blocks: dict[int, list[dict[str, Any]]], container: str) -> str | None:
    """Where the blocks differ (None when they are identical)."""
    first = _signature(blocks[0], container)
    for index, ops in blocks.items():
        other = _signature(ops, container)
        if len(other) != len(first):
            return f"{container}.{index} has {len(other)} ops, {container}.0 has {len(first)}"
        for a, b, op in zip(first, other, ops):
            if a != b:
                return f"{op['name']} ({op['target']} in {op['module']}) differs from block 0"
    return None


def _scale(cost: Cost, factor: sympy.Expr) -> Cost:
    return Cost(**{k: v * factor for k, v in cost.as_dict().items()})


def fold_layers(analysis: Analysis, name: str = "L", container: str | None = None) -> Analysis:
    """The analysis with the repeated blocks of `container` (default: the container whose
    identical blocks hold the most ops) folded into one block whose costs are multiplied by
    the symbol `name`; modules inside it are shown as ``container.*``."""
    if not name.isidentifier():
        raise CostModelError(f"bad layer count name {name!r}: expected a name like L")
    candidates = containers(analysis)
    if container is None:
        found = {c: _blocks(analysis, c) for c in candidates}
        same = {c: b for c, b in found.items() if _differs(b, c) is None and len(b) >= 2}
        if not same:
            listed = ", ".join(candidates) or "none"
            raise CostModelError(f"{analysis.model}: no repeated identical blocks to fold "
                                 f"(numbered module lists: {listed})")
        container = max(same, key=lambda c: sum(len(ops) for ops in same[c].values()))
    elif container not in candidates:
        listed = ", ".join(candidates) or "none"
        raise CostModelError(f"{analysis.model}: {container!r} is not a list of blocks of one "
                             f"class (numbered module lists: {listed})")
    blocks = _blocks(analysis, container)
    difference = _differs(blocks, container) if len(blocks) >= 2 else "fewer than 2 blocks ran"
    if difference is not None:
        raise CostModelError(f"{analysis.model}: cannot fold {container}: {difference}")
    count = symbol(name)
    graph = _folded_graph(analysis.graph, container, count)
    cls = analysis.graph.graph["modules"].get(f"{container}.0", "")
    note = (f"{len(blocks)} identical {cls} blocks of {container} folded into "
            f"{name} x {container}.*: the costs hold for any {name}")
    return replace(analysis, graph=graph, notes=[*analysis.notes, note])


def _folded_graph(graph: nx.DiGraph, container: str, count: sympy.Expr) -> nx.DiGraph:
    folded = graph.copy()
    star = f"{container}.*"

    def rename(path: str) -> str | None:
        found = _block_of(path, container)
        if found is None:
            return path
        index, rest = found
        return None if index else (f"{star}.{rest}" if rest else star)

    for node, data in list(folded.nodes(data=True)):
        module = rename(data.get("module", ""))
        if module is None:
            folded.remove_node(node)
            continue
        if data["kind"] == "op" and module != data["module"]:
            folded.nodes[node].update(
                module=module, cost=_scale(data["cost"], count), weights=data["weights"] * count,
                params=[_rename_tensor(t, rename) for t in data["params"]],
                buffers=[_rename_tensor(t, rename) for t in data["buffers"]])
    info = dict(graph.graph)
    for key in ("parameters", "buffers"):
        tensors = {}
        for tensor_name, meta in info[key].items():
            owner, _, leaf = tensor_name.rpartition(".")
            module = rename(owner)
            if module is None:
                continue
            if module != owner:
                meta = TensorMeta((count, *meta.shape), meta.dtype)
                tensor_name = f"{module}.{leaf}"
            tensors[tensor_name] = meta
        info[key] = tensors
    info["modules"] = {m: c for p, c in graph.graph["modules"].items()
                       if (m := rename(p)) is not None}
    info["folded"] = {"container": container, "count": count}
    folded.graph.update(info)
    return folded


def _rename_tensor(name: str, rename: Any) -> str:
    owner, _, leaf = name.rpartition(".")
    module = rename(owner)
    return f"{module}.{leaf}" if module and module != owner else name
