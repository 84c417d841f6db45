"""Blocks of an op graph and their shape as networkx sees it: how many ops can run side by side
(parallel branches between a fork and its join) and how long the serial chain is. Guideline G3
is read from these."""

from __future__ import annotations

from collections import defaultdict

import networkx as nx

#: Modules that only hold others: their ops belong to the block around them.
CONTAINERS = {"Sequential", "ModuleList", "ModuleDict"}


def block_of(module: str, modules: dict[str, str]) -> str:
    """The block an op belongs to: the innermost module around it, itself included, that has
    children and its own `forward` (not a container like Sequential, nor a ModuleList, which
    never runs and so is not in `modules`); "" is the model."""
    parents = {".".join(parts[:i]) for parts in (p.split(".") for p in modules if p)
               for i in range(1, len(parts))}
    path = module
    while path:
        if path in parents and path in modules and modules[path] not in CONTAINERS:
            return path
        path = path.rpartition(".")[0]
    return ""


def blocks(graph: nx.DiGraph) -> dict[str, list[str]]:
    """Block path -> its op nodes, in execution order, for the ops that move memory (MAC > 0);
    views and placeholders are not ops a device runs."""
    modules = graph.graph["modules"]
    found: dict[str, list[str]] = defaultdict(list)
    for name, data in graph.nodes(data=True):
        if data["kind"] == "op" and data["cost"].mac:
            found[block_of(data["module"], modules)].append(name)
    return dict(found)


def reachability(graph: nx.DiGraph, nodes: list[str],
                 merged: dict[str, str] | None = None) -> nx.DiGraph:
    """The order among `nodes`: an edge a -> b wherever b depends on a, through any path.
    `merged` maps nodes that count as one to the one that stands for them all."""
    merged = merged or {}
    order = nx.DiGraph()
    order.add_nodes_from(dict.fromkeys(merged.get(n, n) for n in nodes))
    chosen = set(nodes)
    for node in nodes:
        a = merged.get(node, node)
        order.add_edges_from((a, merged.get(d, d)) for d in nx.descendants(graph, node) & chosen
                             if merged.get(d, d) != a)
    return order


def _data_source(graph: nx.DiGraph, node: str) -> str | None:
    """The tensor an op reads, through views: its one producer that is not a view (weights
    are not graph nodes, so a projection has one), or None."""
    preds = list(graph.predecessors(node))
    while len(preds) == 1 and graph.nodes[preds[0]].get("op_type") == "View":
        preds = list(graph.predecessors(preds[0]))
    return preds[0] if len(preds) == 1 else None


def _attention_fed(graph: nx.DiGraph, node: str) -> str | None:
    """The first attention op `node`'s output reaches through ops that do no Mult-Adds (views,
    rotary embeddings, a cache write), or None where a contraction comes first."""
    seen, frontier = {node}, list(graph.successors(node))
    while frontier:
        following = []
        for succ in frontier:
            if succ in seen:
                continue
            seen.add(succ)
            data = graph.nodes[succ]
            if data.get("op_type") == "Attention":
                return succ
            if data["kind"] == "op" and not data["cost"].madds:
                following.extend(graph.successors(succ))
        frontier = following
    return None


def fused_projections(graph: nx.DiGraph, nodes: list[str]) -> list[list[str]]:
    """Linear layers among `nodes` that read one input and feed one attention op (a block's
    q, k and v projections): one logical matmul, the input times the concatenated weights."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for node in nodes:
        data = graph.nodes[node]
        if data["op_type"] != "Fully Connected":
            continue
        source, attention = _data_source(graph, node), _attention_fed(graph, node)
        if source is not None and attention is not None:
            groups[(source, attention)].append(node)
    return [group for group in groups.values() if len(group) > 1]


def width(order: nx.DiGraph) -> int:
    """Most nodes with no path between any two (the largest antichain): by Dilworth's theorem,
    the node count minus a maximum matching of the order's bipartite split."""
    if order.number_of_nodes() == 0:
        return 0
    split = nx.Graph()
    left = [("out", n) for n in order]
    split.add_nodes_from(left)
    split.add_nodes_from(("in", n) for n in order)
    split.add_edges_from((("out", a), ("in", b)) for a, b in order.edges)
    matching = nx.bipartite.hopcroft_karp_matching(split, top_nodes=left)
    return order.number_of_nodes() - len(matching) // 2


def longest_chain(order: nx.DiGraph) -> int:
    """Nodes on the longest chain of the order (one after another, none side by side)."""
    if order.number_of_nodes() == 0:
        return 0
    return len(nx.dag_longest_path(order))


def compute_ops(graph: nx.DiGraph, nodes: list[str]) -> list[str]:
    """The nodes that do Mult-Adds (convolutions, linear layers, matmuls)."""
    return [n for n in nodes if graph.nodes[n]["cost"].madds]
