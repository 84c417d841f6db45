"""torch.fx graph -> networkx op graph.

One node per aten op, one per model input; one edge per tensor flowing between them. Parameters
and buffers are not nodes: each op lists the ones it reads. docs/graph.md documents every
attribute so that the graph can be used with any networkx algorithm.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

import networkx as nx
import sympy
import torch

from costmodel.capture.trace import Traced
from costmodel.formulas import OpCall, TensorMeta, lookup

_CALL_SUFFIX = re.compile(r"@\d+$")
#: what a memory or training trace adds to a node (costmodel/capture/trace_train.py), copied over
_EXTRAS = ("phase", "seq_nr", "grad_fn", "grad_fn_seq_nr", "grad_of")


def _size(value: Any) -> Any:
    """An int for a concrete size, a sympy expression for a symbolic one."""
    if isinstance(value, torch.SymInt):
        expr = value.node.expr
        return int(expr) if isinstance(expr, sympy.Integer) else expr
    return value


Resolve = Callable[[Any], Any]


def tensor_meta(value: Any, size: Resolve = _size, values: tuple[int, ...] | None = None
                ) -> TensorMeta | None:
    """Shape, dtype and strides of a traced tensor; `size` reads each (symbolic) size;
    `values`: its elements, where an executed trace kept them."""
    if not isinstance(value, torch.Tensor):
        return None
    return TensorMeta(tuple(size(s) for s in value.shape), value.dtype,
                      tuple(size(s) for s in value.stride()), values)


#: how far up from a grouped matmul's offsets the router's topk is looked for
_ROUTER_DEPTH = 12


def router_top_k(offsets: Any) -> int | None:
    """The `k` of the `topk` whose picks the fx node `offsets` is computed from (a grouped
    matmul's offsets: sort, count per expert, cumulative sum), or None."""
    seen, frontier = set(), [offsets]
    for _ in range(_ROUTER_DEPTH):
        following = []
        for node in frontier:
            if not isinstance(node, torch.fx.Node) or node in seen:
                continue
            seen.add(node)
            if getattr(node.target, "overloadpacket", None) is torch.ops.aten.topk:
                k = node.args[1] if len(node.args) > 1 else node.kwargs.get("k")
                return k if isinstance(k, int) else None
            following.extend(node.all_input_nodes)
        frontier = following
    return None


def _outputs(value: Any, size: Resolve) -> tuple[TensorMeta, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(m for v in value if (m := tensor_meta(v, size)) is not None)
    meta = tensor_meta(value, size)
    return (meta,) if meta is not None else ()


def _module_stack(node: torch.fx.Node) -> list[tuple[str, str]]:
    """[(module path, class name), ...] from the root module to the innermost one."""
    stack = []
    for path, cls in (node.meta.get("nn_module_stack") or {}).values():
        cls_name = cls if isinstance(cls, str) else getattr(cls, "__qualname__", str(cls))
        stack.append((_CALL_SUFFIX.sub("", path), cls_name.rsplit(".", 1)[-1]))
    return stack


class _Builder:
    def __init__(self, traced: Traced) -> None:
        self.traced = traced
        self.graph = nx.DiGraph()
        self.kind = {name: kind for name, (kind, _) in traced.sources.items()}
        self.target_of = {name: target for name, (kind, target) in traced.sources.items()
                          if kind in ("parameter", "buffer")}
        self.alias: dict[str, tuple[str, int]] = {}  # getitem node -> (producer, output index)
        self.view_source: dict[str, str] = {}  # view op -> the node it views
        self.claimed: set[str] = set()
        # a symbolic trace's sizes are read in the user's names, as plain sympy
        self.size: Resolve = traced.shapes.resolve if traced.shapes is not None else _size

    def producer(self, node: torch.fx.Node) -> tuple[str, int]:
        return self.alias.get(node.name, (node.name, 0))

    def root(self, name: str) -> str:
        while name in self.view_source:
            name = self.view_source[name]
        return name

    def arg_value(self, arg: Any) -> Any:
        if isinstance(arg, torch.fx.Node):
            val = arg.meta.get("val")
            meta = tensor_meta(val, self.size, arg.meta.get("values"))
            return meta if meta is not None else self.size(val)
        if isinstance(arg, (list, tuple)):
            return type(arg)(self.arg_value(a) for a in arg)
        return self.size(arg)

    def storages(self, node: torch.fx.Node) -> list[Any]:
        """(storage id, bytes) of each tensor output, where the trace recorded them."""
        return [None if s is None else (s[0], self.size(s[1]))
                for s in node.meta.get("storages", ())]

    @staticmethod
    def reads(args: list[torch.fx.Node]) -> list[int]:
        """Storage ids of the tensors an op reads (a memory or training trace)."""
        found = []
        for arg in args:
            if arg.target is operator.getitem:
                storage = arg.args[0].meta["storages"][arg.args[1]]
            else:
                storage = arg.meta["storages"][0]
            found.append(storage[0])
        return list(dict.fromkeys(found))

    def add_placeholder(self, node: torch.fx.Node) -> None:
        kind = self.kind.get(node.name)
        meta = tensor_meta(node.meta.get("val"), self.size)
        if "storages" in node.meta and kind != "saved":
            storage = self.storages(node)[0]
            self.graph.graph["storages"][storage[0]] = (kind, self.target_of.get(
                node.name, node.name), storage[1])
        if kind == "input":
            self.graph.add_node(node.name, kind="input", target="input", op_type="Input",
                                module="", module_class="", input_shapes=[],
                                output_shapes=[meta.shape] if meta else [],
                                dtypes=[str(meta.dtype)] if meta else [], params=[],
                                buffers=[])
        elif kind == "parameter" and meta is not None:
            self.graph.graph["parameters"][self.target_of[node.name]] = meta
        elif kind == "buffer" and meta is not None:
            self.graph.graph["buffers"][self.target_of[node.name]] = meta

    def add_op(self, node: torch.fx.Node) -> None:
        if node.target is operator.getitem:
            source, index = node.args[0], node.args[1]
            self.alias[node.name] = (self.producer(source)[0], index)
            return
        args = tuple(self.arg_value(a) for a in node.args)
        kwargs = {k: self.arg_value(v) for k, v in node.kwargs.items()}
        context = {}
        if getattr(node.target, "overloadpacket", None) is torch.ops.aten._grouped_mm:
            offsets = node.args[2] if len(node.args) > 2 else node.kwargs.get("offs")
            if (k := router_top_k(offsets)) is not None:
                context["top_k"] = k
        call = OpCall(node.target, args, kwargs, _outputs(node.meta.get("val"), self.size),
                      context)
        entry = lookup(node.target)
        stack = _module_stack(node)
        module, module_class = stack[-1] if stack else ("", "")
        self.graph.graph["modules"].update(stack)
        tensor_args = [a for a in node.all_input_nodes if isinstance(
            a.meta.get("val"), torch.Tensor)]
        if entry is not None and entry.view and tensor_args:
            self.view_source[node.name] = self.producer(tensor_args[0])[0]
        params, buffers = [], []
        for arg in tensor_args:
            source = self.root(self.producer(arg)[0])
            target = self.target_of.get(source)
            if target is not None and not (entry is not None and entry.view):
                bucket = params if self.kind[source] == "parameter" else buffers
                if target not in self.claimed:  # a shared tensor counts once, at first use
                    self.claimed.add(target)
                    bucket.append(target)
        self.graph.add_node(
            node.name, kind="op", target=str(node.target), call=call, module=module,
            module_class=module_class, input_shapes=[t.shape for t in call.inputs],
            output_shapes=[t.shape for t in call.outputs],
            dtypes=[str(t.dtype) for t in call.outputs], params=params, buffers=buffers,
            **{key: node.meta[key] for key in _EXTRAS if key in node.meta},
        )
        if "storages" in node.meta:
            self.graph.nodes[node.name].update(
                storages=self.storages(node), reads=self.reads(tensor_args),
                internal=[(k, self.size(n)) for k, n in node.meta.get("internal", ())])
        for arg in tensor_args:
            source, index = self.producer(arg)
            if source in self.graph and source != node.name:
                meta = tensor_meta(arg.meta.get("val"), self.size)
                self.graph.add_edge(source, node.name, index=index, shape=meta.shape,
                                    dtype=str(meta.dtype), numel=meta.numel)

    def build(self) -> nx.DiGraph:
        shapes = self.traced.shapes
        self.graph.graph.update(parameters={}, buffers={}, modules={}, storages={},
                                guards=shapes.guards() if shapes is not None else [],
                                hints={n: s.node.hint for n, s in shapes.named.items()}
                                if shapes is not None else {},
                                output_storages=self.traced.output_storages,
                                module_calls=self.traced.module_calls,
                                module_call_count=self.traced.module_call_count,
                                grads=self.traced.grads, frames=self.traced.frames,
                                fx=self.traced.graph, outputs=list(self.traced.outputs))
        for node in self.traced.graph.nodes:
            if node.op == "placeholder":
                self.add_placeholder(node)
            elif node.op == "call_function":
                self.add_op(node)
        return self.graph


def build_graph(traced: Traced) -> nx.DiGraph:
    """The op graph of a traced model (see docs/graph.md for its attributes)."""
    return _Builder(traced).build()
