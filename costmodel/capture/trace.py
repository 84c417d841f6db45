"""Module + input specs -> a torch.fx graph of aten ops, recorded on meta or fake tensors.

The model runs once under a TorchDispatchMode (the mechanism FlopCounterMode and make_fx build
on) that appends every aten op it sees to a torch.fx graph, with the op's output as
`meta["val"]` and the module stack in `meta["nn_module_stack"]`. A TorchFunctionMode keeps
`F.linear` and `F.scaled_dot_product_attention` whole, as one node each, instead of the ops they
decompose into. Meta tensors allocate nothing; a model built on the CPU runs on fake tensors.
This is 5 to 8 times faster than torch.export or make_fx on the same models, for the same
graph (docs/tracing.md). Tracing runs under `torch.no_grad()` with the model in eval mode.
"""

from __future__ import annotations

import logging
import operator
import re
import warnings
import weakref
from collections.abc import Container, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map_only

from costmodel.capture.spec import InputSpec
from costmodel.capture.symdims import SymbolicShapes
from costmodel.capture.trace_train import Extras, backward_from_ones, storage_key, training
from costmodel.errors import CostModelError

aten = torch.ops.aten

def _rnn(packet: Any, packed_at: int) -> Any:
    """Pick an RNN function's overload: `.data` (a packed sequence) has a tensor at `packed_at`
    (the batch sizes, or for GRU/RNN the hidden state after them) where `.input` has a list."""
    return lambda args: packet.data if isinstance(args[packed_at], torch.Tensor) else packet.input


#: torch functions recorded as one aten node rather than as the device-specific ops they
#: decompose into (attention kernels, oneDNN RNN layers...): function -> args -> OpOverload
KEEP_WHOLE: dict[Any, Any] = {
    F.linear: lambda args: aten.linear.default,
    F.scaled_dot_product_attention: lambda args: aten.scaled_dot_product_attention.default,
    F.bilinear: lambda args: aten.bilinear.default,
    torch.lstm: _rnn(aten.lstm, 1),
    torch.gru: _rnn(aten.gru, 2),
    torch.rnn_tanh: _rnn(aten.rnn_tanh, 2),
    torch.rnn_relu: _rnn(aten.rnn_relu, 2),
}


@dataclass
class Traced:
    """An fx graph and, for each placeholder, what it is: (kind, name).

    kind is "input" (a model input), "parameter", "buffer" or "constant".
    """

    graph: torch.fx.Graph
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: the symbolic trace's shape machinery (free dimensions), or None for a concrete trace
    shapes: SymbolicShapes | None = None
    #: how the trace was taken, where the report should say so
    notes: list[str] = field(default_factory=list)
    #: storage ids of the model's outputs (a memory or training trace only): held to the end
    output_storages: list[int] = field(default_factory=list)
    #: (storage ids of a module call's arguments, name of the last op it ran), for liveness
    module_calls: list[tuple[list[int], str]] = field(default_factory=list)
    #: a training trace: parameter name -> storage id of the gradient autograd left in .grad
    grads: dict[str, int] = field(default_factory=dict)
    #: (the op recorded last, 0 or 1, storage ids Python frames referenced `after` ops past it)
    frames: list[tuple[str | None, int, list[int]]] = field(default_factory=list)
    #: nn.Module calls the run made (containers and modules that run no op included): each
    #: costs Python time that no aten op shows
    module_call_count: int = 0
    #: names of the nodes that produced the model's output tensors, in output order
    outputs: list[str] = field(default_factory=list)


class _Recorder(TorchDispatchMode):
    """Appends each aten op to an fx graph; tensors are matched to their producers by identity."""

    def __init__(self, names: dict[int, tuple[str, str]]) -> None:
        super().__init__()
        self.traced = Traced(torch.fx.Graph())
        self.names = names  # id(tensor) -> (kind, name) for parameters and buffers
        self.producer: dict[int, torch.fx.Node] = {}
        self.alive: list[torch.Tensor] = []  # keeps ids unique while the trace runs
        self.modules: list[tuple[str, str]] = []
        self.suppress = 0
        self.extras: Extras | None = None  # storages (and autograd links) for memory and training
        self.last: torch.fx.Node | None = None  # the op recorded last

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """No: torch wraps every dispatch mode's handler in `torch._dynamo.disable` unless a
        mode says otherwise, and the first call then imports torch._dynamo (1.3 s of a 3 s
        `costmodel analyze` here). Nothing compiles inside a trace's recorder."""
        return False

    def placeholder(self, tensor: torch.Tensor, kind: str, name: str) -> torch.fx.Node:
        node = self.traced.graph.placeholder(re.sub(r"\W", "_", name) or "tensor")
        node.meta["val"] = self.value(tensor)
        self.traced.sources[node.name] = (kind, name)
        self.keep(tensor, node)
        if self.extras is not None:
            self.extras.annotate(node, tensor)
            self.extras.produced(tensor, node)
        return node

    def value(self, out: Any) -> Any:
        """What a node keeps of an op's output as meta["val"]."""
        return out

    def observe(self, node: torch.fx.Node, out: Any) -> None:
        """Keep what a run on real tensors shows of `out` (shape-only tensors show nothing)."""

    def keep(self, tensor: torch.Tensor, node: torch.fx.Node) -> None:
        """Remember that `node` produced `tensor`."""
        self.producer[id(tensor)] = node
        self.alive.append(tensor)

    def node_of(self, tensor: torch.Tensor) -> torch.fx.Node:
        node = self.producer.get(id(tensor))
        if node is None and self.extras is not None:  # an output autograd saved and unpacked
            node = self.extras.by_storage.get(storage_key(tensor))
        if (node is None and self.extras is not None and self.extras.phase == "backward"
                and id(tensor) not in self.names):  # saved inside a function kept whole
            return self.placeholder(tensor, "saved", "saved")
        if node is None:  # first sight of a tensor no op produced: a parameter or a constant
            kind, name = self.names.get(id(tensor), ("constant", "constant"))
            node = self.placeholder(tensor, kind, name)
        return node

    def emit(self, op: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        graph = self.traced.graph
        node = graph.call_function(op, tree_map_only(torch.Tensor, self.node_of, args),
                                   tree_map_only(torch.Tensor, self.node_of, kwargs))
        node.meta["val"] = self.value(out)
        self.observe(node, out)
        node.meta["nn_module_stack"] = {path: (path, cls) for path, cls in self.modules}
        self.last = node
        if self.extras is not None:
            self.extras.annotate(node, out)
        if isinstance(out, torch.Tensor):
            self.produced(out, node)
        elif isinstance(out, (tuple, list)):
            for index, item in enumerate(out):
                if isinstance(item, torch.Tensor):
                    getter = graph.call_function(operator.getitem, (node, index))
                    getter.meta["val"] = self.value(item)
                    self.observe(getter, item)
                    self.produced(item, getter)
        if self.extras is not None and self.extras.phase == "backward":
            node.meta["val"] = self.extras.replica(out, self)
            for getter in list(node.users):
                getter.meta["val"] = node.meta["val"][getter.args[1]]

    def produced(self, tensor: torch.Tensor, node: torch.fx.Node) -> None:
        """Match `tensor` to `node` from now on.

        In the backward pass tensors are matched by storage only, and the graph keeps a
        detached replica (same storage, shape and strides) instead of the tensor: a reference
        to a gradient would stop autograd from stealing it into `.grad` (it copies instead)."""
        if self.extras is not None:
            self.extras.produced(tensor, node)
            if self.extras.phase == "backward":
                return
        self.keep(tensor, node)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = _call(func, args, kwargs)
        if self.extras is not None and self.extras.aliased(func, out):
            return out
        if not self.suppress and func.namespace != "prim":  # prim: device and layout queries
            self.emit(func, args, kwargs, out)
        elif self.extras is not None:
            self.extras.hidden(out, self.alive)
        return out


def _call(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run an op; on meta tensors, two ops take a shorter way to the same outputs."""
    from torch._subclasses.fake_tensor import FakeTensor

    a = args[0] if args else None
    if not isinstance(a, torch.Tensor):
        return func(*args, **kwargs)
    packet = func.overloadpacket
    if (packet is aten._grouped_mm and a.dtype != torch.bfloat16
            and (a.device.type == "meta" or isinstance(a, FakeTensor))):
        return _grouped_mm_in_bfloat16(func, args, kwargs)
    fake = isinstance(a, FakeTensor)
    if func is aten.native_batch_norm.default and (
            (fake and all(isinstance(d, int) for d in a.shape))
            or (not fake and a.device.type == "meta")):
        return _batch_norm_outputs(a, _arg(args, kwargs, 5, "training"))
    return func(*args, **kwargs)


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    return args[index] if index < len(args) else kwargs.get(name)


def _grouped_mm_in_bfloat16(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """`_grouped_mm`'s meta kernel takes bfloat16 only (its CPU kernel any float), though the
    output's shape does not depend on the dtype: run it on bfloat16 copies and return the dtype
    the real kernel would."""
    out_dtype = kwargs.get("out_dtype") or (args[4] if len(args) > 4 else None) or args[0].dtype
    as_bf16 = tree_map_only(torch.Tensor, lambda t: t.to(torch.bfloat16)
                            if t.is_floating_point() else t, (args, kwargs))
    return func(*as_bf16[0], **as_bf16[1]).to(out_dtype)


def _batch_norm_outputs(x: torch.Tensor, training: bool) -> tuple[torch.Tensor, ...]:
    """`native_batch_norm`'s outputs without its values, on meta or on fake tensors of concrete
    sizes: the output in the input's layout, and the saved mean and inverse deviation. torch
    reaches the same through the op's Python reference, a dozen element-wise ops: a seventh of a
    ResNet training trace on meta, the one op that imports torch._dynamo in an eval trace, and
    half of a width trace, whose sizes outside the freed width are concrete fakes. The saved
    statistics are C values in the dtype the kernel computes in, except on the CPU, where they
    are in the input's dtype and empty in eval (tests/test_trace_edges.py compares all three
    with torch's). Symbolic sizes keep torch's way (or symdims' eval shortcut): it ties them."""
    channels = x.shape[1]
    if x.device.type == "cpu":
        return (torch.empty_like(x), x.new_empty((channels if training else 0,)),
                x.new_empty((channels if training else 0,)))
    stats = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return (torch.empty_like(x), x.new_empty((channels,), dtype=stats),
            x.new_empty((channels,), dtype=stats))


class _KeepWhole(TorchFunctionMode):
    """Records the functions in KEEP_WHOLE as single nodes, hiding the ops they run."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        pick = KEEP_WHOLE.get(func)
        if pick is None or self.recorder.suppress:
            return func(*args, **kwargs)
        op = pick(args)
        self.recorder.suppress += 1
        try:
            out = func(*args, **kwargs)
        finally:
            self.recorder.suppress -= 1
        self.recorder.emit(op, args, kwargs, out)
        return out


@contextmanager
def _module_stack(model: nn.Module, recorder: _Recorder) -> Iterator[None]:
    """Keep recorder.modules as the stack of (path, class) of the modules now running."""
    paths = {}
    for path, module in model.named_modules(remove_duplicate=True):
        paths.setdefault(id(module), path)

    def enter(module: nn.Module, args: Any) -> None:
        path = paths.get(id(module), type(module).__name__)
        recorder.traced.module_call_count += 1
        recorder.modules.append((path, type(module).__qualname__))
        if recorder.extras is not None:
            recorder.extras.enter(args, recorder.last)

    def leave(module: nn.Module, _: Any, __: Any) -> None:
        recorder.modules.pop()
        if recorder.extras is not None:
            recorder.extras.leave(recorder.last)

    pre = nn.modules.module.register_module_forward_pre_hook(enter)
    post = nn.modules.module.register_module_forward_hook(leave, always_call=True)
    try:
        yield
    finally:
        pre.remove()
        post.remove()


def _on_meta(model: nn.Module) -> bool:
    return all(t.device.type == "meta" for t in (*model.parameters(), *model.buffers()))


def _partly_on_meta(model: nn.Module) -> bool:
    """Some tensors on meta, some not: a model built under torch.device("meta") whose code
    made a few tensors on the CPU regardless (the legacy torch.Tensor constructor, weight-norm
    parametrizations: transformers' wav2vec2 and HuBERT)."""
    return any(t.device.type == "meta" for t in (*model.parameters(), *model.buffers()))


@contextmanager
def _quiet_fake_tensor_log() -> Iterator[None]:
    """A shape error under FakeTensorMode is logged by torch with a traceback before it is
    raised; the error itself becomes our one line, so the log says nothing more."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def trace(model: nn.Module, specs: Sequence[InputSpec], where: str = "model",
          hints: dict[str, int] | None = None, widths: dict[str, str] | None = None,
          shapes: SymbolicShapes | None = None, fake: bool = False, train: bool = False,
          storages: bool = False, scope: Container[str] | None = None,
          on_meta: bool = False) -> Traced:
    """Run the model once on shape-only tensors and record its aten ops.

    A model on meta runs on meta tensors; if it stops at a value-dependent check, it runs again
    on fake tensors (`fake`), which libraries that detect tracing know to skip such checks on
    (transformers' `is_tracing`: its causal-mask and padding checks call `.item()`).

    `train` records a training step instead: the model in train mode with autograd on, then
    backward from a gradient of ones for every output that needs one (docs/memory.md).
    `storages` records each tensor's storage and what Python's frames hold, for liveness (a
    training trace records the storages, not the frames, without it).

    A size given as a name (a free dimension) is traced symbolically, at the size `hints` gives
    it (default 224), on fake tensors with a ShapeEnv; so are the channel sizes of parameters
    when `widths` frees the output width of some modules (costmodel/capture/symdims.py). `shapes` is
    the machinery a model was built in with free factory arguments (costmodel/capture/freeargs.py):
    its parameters are already fake tensors with symbolic sizes. A width trace makes symbolic
    only the sizes in `scope` (everything without one; costmodel/capture/widthscope.py finds a
    scope, and the caller chooses which trace it wants). `on_meta` runs a
    model with real weights on meta copies of them.
    """
    built_symbolic = shapes is not None
    if shapes is not None:
        shapes.hints = {**shapes.hints, **(hints or {})}
        shapes.widths = widths or {}
    elif widths or any(isinstance(d, str) for spec in specs for d in spec.shape):
        shapes = SymbolicShapes(hints or {}, where, widths or {})
        if scope is not None:
            shapes.scope = scope
    with ExitStack() as stack:
        state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        if shapes is not None:
            if not built_symbolic:
                state = {name: shapes.fakify(t, name) for name, t in state.items()}
            elif widths:  # free arguments built it: free the other sizes a width may tie
                state = {name: shapes.widen(t, name) for name, t in state.items()}
            device = next(iter(state.values())).device if state else "cpu"
            stack.enter_context(shapes.fake_mode)
            stack.enter_context(shapes.watch(model, state))
            if built_symbolic:
                stack.enter_context(shapes.lean())
            run_model = _bound(model, state)
        elif _on_meta(model) and not fake:
            run_model, device = model, "meta"
        elif (on_meta or _partly_on_meta(model)) and not fake:  # a few CPU tensors, or asked
            state = {name: t.to("meta") for name, t in state.items()}
            run_model, device = _bound(model, state), "meta"
        else:  # real weights (or a retry): fake tensors, so nothing is computed or copied
            from torch._subclasses.fake_tensor import FakeTensorMode

            fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
            if _partly_on_meta(model):  # one device for all
                state = {name: t.to("meta") for name, t in state.items()}
            state = {name: fake_mode.from_tensor(t) for name, t in state.items()}
            device = next(iter(state.values())).device if state else "meta"
            stack.enter_context(fake_mode)
            run_model = _bound(model, state)
        kinds = dict.fromkeys(dict(model.named_buffers()), "buffer")
        names = {id(t): (kinds.get(n, "parameter"), n) for n, t in reversed(state.items())}
        recorder = _Recorder(names)
        if train or storages:
            recorder.extras = Extras(names, train, frames=storages)
        if shapes is not None:
            inputs = shapes.inputs(specs, device)
        else:
            inputs = [torch.empty(s.shape, dtype=s.dtype, device=device) for s in specs]
        for i, tensor in enumerate(inputs):
            recorder.placeholder(tensor, "input", f"input_{i}" if len(inputs) > 1 else "input")
        stack.enter_context(training(model) if train else torch.no_grad())
        if shapes is not None:  # fx warns of SymInt arguments; the graph reads them itself
            stack.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", message="Raw SymInt value")
        _recording(stack, model, recorder)
        stopped: Exception | None = None
        try:
            out = run_model(*inputs)
            recorder.traced.outputs = _output_nodes(recorder, out)
            _keep_extras(recorder, out)
            if train:
                backward_from_ones(out, recorder.extras, where)
        except CostModelError:
            raise
        except Exception as exc:
            if device != "meta" or fake or shapes is not None or not _data_dependent(exc):
                raise CostModelError(_explain(exc, where, specs)) from exc
            stopped = exc
    if stopped is not None:
        try:
            traced = trace(model, specs, where, hints, widths, fake=True, train=train,
                           storages=storages)
        except CostModelError as again:  # the same value check: the first, plainer words
            if again.__cause__ is None or not _data_dependent(again.__cause__):
                raise
            raise CostModelError(_explain(stopped, where, specs)) from stopped
        traced.notes.append("traced on fake tensors: on meta tensors the model stopped at a "
                            "value check that it skips while traced")
        return traced
    if shapes is not None:
        shapes.check()
        if built_symbolic:
            shapes.divide_exactly()
        recorder.traced.shapes = shapes
    return recorder.traced


def _recording(stack: ExitStack, model: nn.Module, recorder: _Recorder) -> None:
    """Record every aten op the model runs from here to the stack's end, with its module."""
    stack.enter_context(_module_stack(model, recorder))
    stack.enter_context(_quiet_fake_tensor_log())
    stack.enter_context(recorder)
    stack.enter_context(_KeepWhole(recorder))


#: integer outputs up to this size keep their elements in an executed trace
OBSERVED_ELEMENTS = 4096


class _ExecutingRecorder(_Recorder):
    """Records a run on real tensors: nodes keep meta copies (shape, dtype, strides, no data),
    and a tensor is forgotten when it is freed, so the run holds no more memory than the model
    itself would and a freed tensor's id never names a later one.

    `keep_all` (a memory analysis, which tells tensors apart by storage) keeps every tensor
    of the run alive to its end instead, so that no storage is reused while it runs."""

    def __init__(self, names: dict[int, tuple[str, str]], keep_all: bool = False) -> None:
        super().__init__(names)
        self.keep_all = keep_all

    def value(self, out: Any) -> Any:
        if self.keep_all:
            return out
        self.suppress += 1  # the copies are not the model's ops
        try:
            return tree_map_only(torch.Tensor, lambda t: torch.empty_strided(
                t.shape, t.stride(), dtype=t.dtype, device="meta"), out)
        finally:
            self.suppress -= 1

    def keep(self, tensor: torch.Tensor, node: torch.fx.Node) -> None:
        if self.keep_all:
            super().keep(tensor, node)
            return
        self.producer[id(tensor)] = node
        weakref.finalize(tensor, self.producer.pop, id(tensor), None)

    def observe(self, node: torch.fx.Node, out: Any) -> None:
        """The elements of a small integer tensor (a router's offsets or counts), as
        meta["values"]: a grouped matmul reads only the experts they give rows."""
        if (isinstance(out, torch.Tensor) and not out.is_floating_point()
                and not out.is_complex() and out.dtype != torch.bool
                and out.numel() <= OBSERVED_ELEMENTS):
            self.suppress += 1
            try:
                node.meta["values"] = tuple(int(v) for v in out.reshape(-1).tolist())
            finally:
                self.suppress -= 1


def trace_executing(model: nn.Module, specs: Sequence[InputSpec], where: str = "model",
                    storages: bool = False) -> tuple[Traced, str]:
    """`trace` for a model whose control flow depends on values (--execute): run it once on
    real CPU tensors (costmodel/capture/execute.py makes them) and record the same graph, for
    that input. `storages` records each tensor's storage and what Python's frames hold, for
    liveness, as `trace` does. Returns the trace and a note saying what the input was."""
    from costmodel.capture.execute import check_runs_on_cpu, explain_failure, real_inputs

    check_runs_on_cpu(model, where)
    inputs, note = real_inputs(model, specs, where)
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    kinds = dict.fromkeys(dict(model.named_buffers()), "buffer")
    names = {id(t): (kinds.get(n, "parameter"), n) for n, t in reversed(state.items())}
    recorder = _ExecutingRecorder(names, keep_all=storages)
    if storages:
        recorder.extras = Extras(names, False, frames=True)
    for i, tensor in enumerate(inputs):
        recorder.placeholder(tensor, "input", f"input_{i}" if len(inputs) > 1 else "input")
    with ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        _recording(stack, model, recorder)
        try:
            out = model(*inputs)
            _keep_extras(recorder, out)
        except CostModelError:
            raise
        except Exception as exc:
            raise CostModelError(explain_failure(exc, where)) from exc
        recorder.traced.outputs = _output_nodes(recorder, out)
    return recorder.traced, note


def _output_nodes(recorder: _Recorder, out: Any) -> list[str]:
    """The nodes that produced the model's output tensors (what a compiler must compute)."""
    nodes = (recorder.producer.get(id(t)) for t in tree_leaves(out)
             if isinstance(t, torch.Tensor))
    return [node.name for node in nodes if node is not None]


def _keep_extras(recorder: _Recorder, out: Any) -> None:
    """What a liveness or training trace keeps beside the graph once the forward has run:
    module calls, gradients, Python frames and the storages of the outputs."""
    extras = recorder.extras
    if extras is None:
        return
    recorder.traced.module_calls = extras.calls
    recorder.traced.grads = extras.grads
    recorder.traced.frames = extras.frames
    recorder.traced.output_storages = [t.untyped_storage()._cdata for t in tree_leaves(out)
                                       if isinstance(t, torch.Tensor)]


def _bound(model: nn.Module, state: dict[str, torch.Tensor]) -> Any:
    def run(*inputs: torch.Tensor) -> Any:
        return torch.func.functional_call(model, state, inputs, tie_weights=True)

    return run


_DATA_DEPENDENT = ("data-dependent", "DataDependent", "DynamicOutputShape",
                   "cannot be called on meta tensors",
                   "data-independent implementation does not exist")


def _data_dependent(exc: BaseException) -> bool:
    return any(marker in f"{type(exc).__name__}: {exc}" for marker in _DATA_DEPENDENT)


def _explain(exc: Exception, where: str, specs: Sequence[InputSpec]) -> str:
    """One line: a data-dependent trace failure, an op with no shape rule, or the model
    refusing its inputs."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    kind = type(exc).__name__
    if _data_dependent(exc):
        first = text.split(". ")[0].rstrip(".")  # torch's advice that follows is not the user's
        return (f"{where}: cannot trace on shapes alone: control flow depends on tensor values "
                f"({kind}: {first}); --execute runs the model once on real CPU tensors instead")
    if "'Meta' backend" in text or isinstance(exc, NotImplementedError):
        return f"{where}: cannot trace: an op has no shape rule ({kind}: {text})"
    shapes = " ".join("x".join(str(d) for d in s.shape) for s in specs)
    return f"{where}: the model rejects input shape {shapes}: {kind}: {text}"
