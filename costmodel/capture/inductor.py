"""The kernels `torch.compile` (inductor) makes of a traced graph, read from inductor itself.

Our aten graph is replayed as a GraphModule on fake CPU tensors and handed to inductor's
`compile_fx`, as Dynamo would hand it a captured graph: aot-autograd decomposes and
functionalises it, inductor lowers it to its IR and its scheduler fuses the IR into nodes.
There the compile stops: no kernel source is generated, no C++ compiler runs, nothing is
executed. Each scheduler node's IR knows the fx nodes it came from (`origins`), and every fx
node that aot-autograd makes from one of ours carries our node's name in `meta["custom"]`
(fx copies it to the nodes a decomposition creates), so each kernel maps back to our op graph.

The CPU backend writes consecutive generated scheduler nodes into one C++ function (a
`cpp_fused_*` kernel) until it reaches an extern library call (convolution, matmul, an aten
fallback), which is where `Scheduler._codegen` flushes it; `_kernel_groups` follows that rule,
and tests/test_fusion.py checks it against the groups inductor's own code generation makes.
The bytes of each kernel are inductor's own count for its scheduler nodes
(`get_read_write_buffer_accesses`): each buffer a fused node reads from memory or writes back,
once; an intermediate that stays inside a fused loop is not a buffer and not counted.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import torch

from costmodel.errors import CostModelError

#: the key of fx node meta["custom"] that carries our node's name through aot-autograd
KEY = "costmodel_node"
#: what the report names as the compile target
BACKEND = "inductor, CPU backend (C++/OpenMP kernels), no freezing"


@dataclass(frozen=True)
class InductorKernel:
    """One kernel of the compiled model: a generated C++ function or an extern library call."""

    kind: str  # "generated" or "extern"
    #: our op graph's nodes it computes (inlined ops included), in graph order
    ops: tuple[str, ...]
    bytes_read: int
    bytes_written: int
    #: the library call of an extern kernel ("extern_kernels.convolution"); "" if generated
    call: str
    #: inductor's scheduler nodes in it, those of a fused node one by one ("op3", ...)
    nodes: tuple[str, ...]

    @property
    def mac_bytes(self) -> int:
        return self.bytes_read + self.bytes_written


@dataclass(frozen=True)
class InductorSchedule:
    target: str
    kernels: list[InductorKernel]


class _Stop(Exception):
    """Raised inside inductor once the schedule is read: the rest of the compile is not run."""


def graph_module(graph: torch.fx.Graph, outputs: Sequence[str], where: str
                 ) -> tuple[torch.fx.GraphModule, list[torch.Tensor]]:
    """Our traced graph as a GraphModule inductor can take, with fake CPU example inputs
    (every placeholder: inputs, parameters, buffers, constants), each node tagged with its
    name. The model's outputs are the graph's outputs; ops nothing needs are dropped by aot."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    if not outputs:
        raise CostModelError(f"{where}: --fuse inductor: the trace recorded no output tensor")
    fake = FakeTensorMode()
    new = torch.fx.Graph()
    env: dict[torch.fx.Node, torch.fx.Node] = {}
    examples: list[torch.Tensor] = []

    def on_cpu(value: Any) -> Any:
        if isinstance(value, torch.device) and value.type == "meta":
            return torch.device("cpu")
        return value

    for node in graph.nodes:
        if node.op == "placeholder":
            value = node.meta["val"]
            if not all(isinstance(s, int) for s in (*value.shape, *value.stride())):
                raise CostModelError(f"{where}: --fuse inductor needs concrete sizes: "
                                     f"{node.name} has symbolic ones")
            env[node] = new.placeholder(node.name)
            with fake:
                examples.append(torch.empty_strided(tuple(value.shape), tuple(value.stride()),
                                                    dtype=value.dtype, device="cpu"))
            continue
        if node.op != "call_function":
            continue
        args = torch.fx.node.map_aggregate(torch.fx.node.map_arg(node.args, env.__getitem__),
                                           on_cpu)
        kwargs = torch.fx.node.map_aggregate(
            torch.fx.node.map_arg(node.kwargs, env.__getitem__), on_cpu)
        copy = new.call_function(node.target, tuple(args), dict(kwargs))
        copy.meta["custom"] = {KEY: _owner(node)}
        if "nn_module_stack" in node.meta:
            copy.meta["nn_module_stack"] = node.meta["nn_module_stack"]
        env[node] = copy
    by_name = {node.name: env[node] for node in graph.nodes if node in env}
    new.output(tuple(by_name[name] for name in outputs))
    return torch.fx.GraphModule(torch.nn.Module(), new), examples


def _owner(node: torch.fx.Node) -> str:
    """Our op graph's node for an fx node: a getitem is its producer's output."""
    while node.target is operator.getitem:
        node = node.args[0]
    return node.name


def schedule(graph: torch.fx.Graph, outputs: Sequence[str], where: str) -> InductorSchedule:
    """Inductor's kernels for a traced inference graph (see the module's docstring)."""
    try:
        from torch._inductor import config
        from torch._inductor.compile_fx import compile_fx
        from torch._inductor.graph import GraphLowering
    except Exception as exc:  # a torch built without inductor
        raise CostModelError(f"{where}: --fuse inductor: torch._inductor is unavailable: "
                             f"{type(exc).__name__}: {exc}") from exc
    gm, examples = graph_module(graph, outputs, where)
    found: list[InductorKernel] = []
    current: list[str] = []  # our node whose lowering is running, for a one-line error

    def read_schedule(lowering: Any) -> Any:
        current.clear()  # every op is lowered: a failure now is no op's
        lowering._update_scheduler()  # lowering.codegen() would generate the kernels next
        found.extend(_kernel_groups(lowering.scheduler.nodes))
        raise _Stop

    def tracking(run_node: Any, doing: str) -> Any:
        """`run_node` that first notes which of our ops the fx node came from."""
        def run(interpreter: Any, node: torch.fx.Node) -> Any:
            if doing == "lower" or not isinstance(interpreter, GraphLowering):
                name = (node.meta.get("custom") or {}).get(KEY)
                current[:] = [name, doing] if name is not None else []
            return run_node(interpreter, node)
        return run

    with ExitStack() as stack:
        stack.enter_context(config.patch(fx_graph_cache=False, freezing=False))
        stack.enter_context(mock.patch.object(GraphLowering, "compile_to_module",
                                              read_schedule))
        # lowering, and aot-autograd's passes over our graph (fx Interpreters)
        stack.enter_context(mock.patch.object(GraphLowering, "run_node",
                                              tracking(GraphLowering.run_node, "lower")))
        stack.enter_context(mock.patch.object(torch.fx.Interpreter, "run_node",
                                              tracking(torch.fx.Interpreter.run_node,
                                                       "trace")))
        stack.enter_context(_quiet())
        try:
            with torch.no_grad():
                compile_fx(gm, examples)
        except Exception as exc:
            if not _stopped(exc):
                raise CostModelError(_explain(exc, current, where)) from exc
    if not found and any(n.op == "call_function" for n in graph.nodes):
        raise CostModelError(f"{where}: --fuse inductor: inductor scheduled no kernel")
    order = {node.name: i for i, node in enumerate(graph.nodes)}
    kernels = [InductorKernel(k.kind, tuple(sorted(k.ops, key=order.__getitem__)),
                              k.bytes_read, k.bytes_written, k.call, k.nodes) for k in found]
    return InductorSchedule(f"{BACKEND}, torch {torch.__version__}", kernels)


def _stopped(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, _Stop):
            return True
        exc = exc.__cause__ or getattr(exc, "inner_exception", None) or exc.__context__
    return False


def _explain(exc: Exception, current: list[str], where: str) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = re.sub(r"^(LoweringException|InductorError): ", "", text)
    if current:
        name, doing = current
        return f"{where}: inductor cannot {doing} op {name}: {text}"
    return f"{where}: inductor cannot compile the traced graph: {type(exc).__name__}: {text}"


@contextmanager
def _quiet() -> Iterator[None]:
    """Inductor logs the exception that stops it; the stop is ours, not an error."""
    import logging

    loggers = [logging.getLogger(n) for n in ("torch._inductor", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _ours(fx_nodes: Any) -> set[str]:
    names = set()
    for node in fx_nodes:
        name = (node.meta.get("custom") or {}).get(KEY)
        if name is not None:
            names.add(name)
    return names


def _kernel_groups(nodes: Sequence[Any]) -> Iterator[InductorKernel]:
    """The kernels the CPU backend generates for the scheduler's nodes, in order: the
    generated nodes between two extern calls share one C++ function, as
    `Scheduler._codegen` flushes the backend's kernel group before every extern node (and
    `CppScheduling.codegen_node` when its arguments pass MAX_FUSED_KERNEL_ARGS_NUM)."""
    from torch._inductor import ir
    from torch._inductor.codegen.cpp import CppScheduling
    from torch._inductor.scheduler import NopKernelSchedulerNode

    group: list[Any] = []

    def flush() -> Iterator[InductorKernel]:
        if group:
            yield _kernel("generated", group, "")
            group.clear()

    for node in nodes:
        if isinstance(node, NopKernelSchedulerNode):
            continue
        if node.is_extern() or node.is_template():
            yield from flush()
            if isinstance(node.node, ir.MultiOutput):  # a tuple's item: an index, no kernel
                continue
            yield _kernel("extern", [node], getattr(node.node, "python_kernel_name", "") or "")
            continue
        group.append(node)
        if len(_buffers(group)) > CppScheduling.MAX_FUSED_KERNEL_ARGS_NUM:
            yield from flush()
    yield from flush()


def _buffers(group: Sequence[Any]) -> set[str]:
    return {dep.name for node in group for dep in (*node.read_writes.reads,
                                                   *node.read_writes.writes)}


def _kernel(kind: str, group: Sequence[Any], call: str) -> InductorKernel:
    read = sum(sum(n.get_read_write_buffer_accesses(True, False).values()) for n in group)
    written = sum(sum(n.get_read_write_buffer_accesses(False, True).values()) for n in group)
    ops: set[str] = set()
    for node in group:
        for inner in node.get_nodes():
            if kind == "extern":  # its inputs' origins ride along: keep the call's own op
                origin = inner.node.get_origin_node()
                ops |= _ours([origin] if origin is not None else inner.node.origins)
            else:
                ops |= _ours(inner.node.origins)
    return InductorKernel(kind, tuple(ops), int(read), int(written), call,
                          tuple(inner.get_name() for n in group for inner in n.get_nodes()))
