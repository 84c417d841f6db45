"""Fusion-aware MAC: the op graph grouped into the kernels a compiler or an inference engine
runs, and the bytes each kernel moves once fused (docs/fusion.md).

Two modes:

- `inductor`: the kernels `torch.compile` makes on the CPU, read from inductor's own lowering
  and scheduler (costmodel/capture/inductor.py), with inductor's count of their bytes.
- `engine`: the rules inference engines (TensorRT, ONNX Runtime, TFLite/XNNPACK, OpenVINO)
  share, in `ENGINE_RULES`, applied to the op graph here.

Per-op figures stay as they are: a fusion adds the `kernel` attribute to every op node, the
kernels in `graph.graph["fusion"]`, and the bytes each op's kernel moves, attributed to its ops.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from costmodel.analysis import Analysis
from costmodel.cost import Num, is_concrete, to_int
from costmodel.errors import CostModelError

MODES = ("inductor", "engine")

#: The inference engines' fusion rules, applied in this order to each op in execution order
#: (docs/fusion.md lists them with the engines that apply each).
ENGINE_RULES = (
    ("views are free", "a view, reshape or other zero-cost op runs no kernel"),
    ("batch norm folds", "an inference batch norm whose input only it reads, written by a "
     "convolution or linear layer, is folded into that layer's weights and bias: it runs "
     "in the layer's kernel and reads none of its own parameters or statistics"),
    ("activation fuses", "an activation whose input only it reads joins the kernel that "
     "wrote that input, when that kernel is a convolution, a linear layer or matmul, a norm "
     "or an element-wise chain"),
    ("element-wise chains fuse", "an element-wise op joins the kernel that wrote one of its "
     "inputs (the first it can) when only it reads that input and its output has the same "
     "size; its other inputs are read from memory"),
)

_BATCH_NORMS = ("native_batch_norm", "_native_batch_norm_legit_no_training", "batch_norm",
                "_native_batch_norm_legit", "_batch_norm_no_update")
#: kernels an activation or element-wise op can be appended to (their anchor op's type)
_EPILOGUE_HOSTS = ("Fully Connected", "MatMul", "Norm", "Activation", "Elementwise")


@dataclass(frozen=True)
class Kernel:
    """One kernel: the ops it computes and the bytes it moves from and to memory."""

    index: int
    kind: str  # "generated" / "extern" (inductor), "fused" / "single" (engine)
    ops: tuple[str, ...]
    bytes_read: Num
    bytes_written: Num
    #: an extern kernel's library call, "" otherwise
    call: str = ""
    label: str = ""
    module: str = ""

    @property
    def mac_bytes(self) -> Num:
        return self.bytes_read + self.bytes_written


@dataclass
class Fusion:
    mode: str
    target: str
    kernels: list[Kernel]
    #: op -> index of its kernel (an extern call before a generated kernel that also reads
    #: it); None for an op that runs in no kernel (views, ops nothing needs)
    kernel_of: dict[str, int | None] = field(default_factory=dict)
    #: op -> the bytes of its kernels attributed to it (docs/fusion.md)
    fused_bytes: dict[str, Num] = field(default_factory=dict)

    @property
    def mac_bytes_fused(self) -> Num:
        return to_int(sum((k.mac_bytes for k in self.kernels), 0))

    def describe(self) -> str:
        return f"{len(self.kernels)} kernels ({self.mode}: {self.target})"


def fusion_of(analysis: Analysis) -> Fusion | None:
    """The fusion `fuse` attached to an analysis, if any."""
    return analysis.graph.graph.get("fusion")


def check_mode(mode: str | None, train: bool = False, where: str = "model") -> str | None:
    """A --fuse mode, checked before anything is traced: a known name, inference only."""
    if mode is None:
        return None
    if mode not in MODES:
        raise CostModelError(f"unknown --fuse mode {mode!r}: expected one of {', '.join(MODES)}")
    if train:
        raise CostModelError(f"{where}: --fuse {mode} groups an inference pass into kernels: "
                             f"it cannot be combined with --train")
    return mode


def fuse(analysis: Analysis, mode: str) -> Fusion:
    """Group the analysis's ops into kernels by `mode`; sets the `kernel` attribute on every
    op node and `graph.graph["fusion"]`, and returns the Fusion."""
    check_mode(mode, bool(analysis.graph.graph.get("train")), analysis.model)
    if analysis.graph.graph.get("folded"):
        raise CostModelError(f"{analysis.model}: --fuse groups the traced ops into kernels: it "
                             f"cannot be combined with --free-layers")
    target, raw, exact = _inductor(analysis) if mode == "inductor" else _engine(analysis)
    ops = {d["name"]: d for d in analysis.ops()}
    kernels = [Kernel(i, kind, members, read, written, call, _label(members, ops),
                      _module(members, ops))
               for i, (kind, members, read, written, call) in enumerate(raw)]
    fusion = Fusion(mode, target, kernels)
    for kernel in kernels:  # an extern call is an op's own kernel; else its first
        for op in kernel.ops:
            known = fusion.kernel_of.get(op)
            if known is None or (kernel.kind == "extern" and kernels[known].kind != "extern"):
                fusion.kernel_of[op] = kernel.index
    fusion.fused_bytes = (exact if exact is not None
                          else _attribute(kernels, ops, analysis.graph, fusion.kernel_of))
    for name in ops:
        analysis.graph.nodes[name]["kernel"] = fusion.kernel_of.get(name)
    analysis.graph.graph["fusion"] = fusion
    return fusion


_Raw = tuple[str, tuple[str, ...], Num, Num, str]


def _inductor(analysis: Analysis) -> tuple[str, list[_Raw], None]:
    from costmodel.capture.inductor import schedule

    if analysis.graph.graph.get("fx") is None:
        raise CostModelError(f"{analysis.model}: --fuse inductor needs the traced graph")
    found = schedule(analysis.graph.graph["fx"], analysis.graph.graph.get("outputs", []),
                     analysis.model)
    ops = {d["name"] for d in analysis.ops()}
    return found.target, [(k.kind, tuple(o for o in k.ops if o in ops), k.bytes_read,
                           k.bytes_written, k.call) for k in found.kernels], None


def _label(members: Sequence[str], ops: dict[str, dict[str, Any]]) -> str:
    types = [ops[m]["op_type"] if ops[m]["supported"] else "Unsupported" for m in members]
    return " + ".join(dict.fromkeys(t for t in types if t != "View")) or "View"


def _module(members: Sequence[str], ops: dict[str, dict[str, Any]]) -> str:
    """The innermost module that holds all of a kernel's ops."""
    paths = [ops[m]["module"].split(".") if ops[m]["module"] else [] for m in members]
    common: list[str] = []
    for parts in zip(*paths):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return ".".join(common)


def _attribute(kernels: Sequence[Kernel], ops: dict[str, dict[str, Any]], graph: Any,
               kernel_of: dict[str, int | None]) -> dict[str, Num]:
    """Each kernel's bytes shared among its ops: in proportion to what each op still moves
    once the tensors that stay inside the kernel are taken out of its eager MAC (a tensor
    stays inside when the op that writes it and every op that reads it share its kernel, and
    it is not a model output), the kernel's writes carried by its first op as in the engine
    rules; in proportion to their eager MAC where nothing is left, and all to the first op
    where the ops have none (a layout copy)."""
    outputs = set(graph.graph.get("outputs", []))
    left: dict[str, Num] = defaultdict(int)
    first = {k.index: next((o for o in k.ops if kernel_of.get(o) == k.index), None)
             for k in kernels}
    for name, data in ops.items():
        mine = kernel_of.get(name)
        if mine is None:
            continue
        left[name] += data["cost"].mac_bytes
        fed = False
        for u, _, edge in graph.in_edges(name, data=True):
            if kernel_of.get(u) == mine:  # read from registers
                left[name] -= edge["numel"] * _itemsize(edge["dtype"])
                fed = True
        readers = [v for _, v in graph.out_edges(name)]
        if not data["output_shapes"]:
            continue
        if (readers and name not in outputs
                and all(kernel_of.get(v) == mine for v in readers)):
            left[name] -= _out_bytes(data, 0)  # never written back
        elif fed and first[mine] not in (None, name):  # the kernel's write: its lead op's
            left[name] -= _out_bytes(data, 0)
            left[first[mine]] += _out_bytes(data, 0)
    shares: dict[str, Num] = defaultdict(int)
    for kernel in kernels:
        if not kernel.ops:
            continue
        weights = [left.get(o, 0) if kernel_of.get(o) == kernel.index else 0
                   for o in kernel.ops]
        if sum(weights, 0) == 0:
            weights = [ops[o]["cost"].mac_bytes for o in kernel.ops]
        whole = sum(weights, 0)
        if whole == 0:
            shares[kernel.ops[0]] += kernel.mac_bytes
            continue
        for op, weight in zip(kernel.ops, weights):
            shares[op] += kernel.mac_bytes * weight / whole
    return {op: to_int(v) if not is_concrete(v) else _round(v) for op, v in shares.items()}


def _round(value: Any) -> Num:
    value = to_int(value)
    return value if isinstance(value, int) else round(float(value))


# -- engine rules ---------------------------------------------------------------------------

def _itemsize(dtype: str) -> int:
    return getattr(torch, dtype.removeprefix("torch.")).itemsize


class _Engine:
    """ENGINE_RULES on the op graph: kernels and what each moves."""

    def __init__(self, analysis: Analysis) -> None:
        self.graph = analysis.graph
        self.ops = analysis.ops()
        self.kernel: dict[str, int] = {}
        self.members: list[list[str]] = []
        self.saved: list[Num] = []  # bytes a kernel does not move, against its ops' eager MAC
        self.op_saved: dict[str, Num] = defaultdict(int)  # the same, op by op
        self.read: list[set[str]] = []  # tensors from outside a kernel its element-wise ops read
        self.outputs = set(self.graph.graph.get("outputs", []))
        self.view = {d["name"] for d in self.ops if d["op_type"] == "View"}

    def root(self, name: str) -> str:
        """The op whose output a tensor is, seen through views."""
        while name in self.view:
            sources = [u for u, _, e in self.graph.in_edges(name, data=True)]
            if not sources:
                return name
            name = sources[0]
        return name

    def readers(self, name: str) -> set[str]:
        """The non-view ops that read `name`'s output, directly or through views, plus a
        marker when it is a model output (read after the model returns)."""
        found: set[str] = set()
        stack = [name]
        while stack:
            for _, v in self.graph.out_edges(stack.pop()):
                if v in self.view:
                    stack.append(v)
                    if v in self.outputs:
                        found.add("(output)")
                else:
                    found.add(v)
        if name in self.outputs:
            found.add("(output)")
        return found

    def tensor_inputs(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """(producer through views, the edge's data) for each tensor the op reads."""
        return [(self.root(u), e) for u, _, e in self.graph.in_edges(name, data=True)]

    def run(self) -> list[_Raw]:
        for data in self.ops:
            name = data["name"]
            if name in self.view:
                continue
            host = self.host(data)
            if host is None:
                self.kernel[name] = len(self.members)
                self.members.append([name])
                self.saved.append(0)
                # an element-wise op's reads are per element: a later op of its chain reading
                # the same tensor finds it in registers; a convolution's are not
                element_wise = data["op_type"] in ("Activation", "Elementwise")
                self.read.append({p for p, _ in self.tensor_inputs(name)} if element_wise
                                 else set())
            else:
                self.join(data, host)
        raw: list[_Raw] = []
        nodes = self.graph.nodes
        for members, saved in zip(self.members, self.saved):
            eager = sum((nodes[m]["cost"].mac_bytes for m in members), 0)
            moved = to_int(eager - saved)
            written = to_int(sum((self.written(m) for m in members), 0))
            kind = "fused" if len(members) > 1 else "single"
            raw.append((kind, tuple(members), to_int(moved - written), written, ""))
        return raw

    def written(self, name: str) -> Num:
        """Bytes of `name`'s outputs that its kernel writes to memory: the first output (what
        its formula counts as written) unless only ops of the same kernel read it, and any
        other output something outside the kernel reads."""
        data = self.graph.nodes[name]
        readers = self.readers(name)
        inside = bool(readers) and all(self.kernel.get(r) == self.kernel[name] for r in readers)
        total: Num = 0 if inside or not data["output_shapes"] else _out_bytes(data, 0)
        later = {e["index"] for _, v, e in self.graph.out_edges(name, data=True)
                 if e["index"] > 0 and self.kernel.get(self.root(v)) != self.kernel[name]}
        for index in sorted(later):
            total += _out_bytes(data, index)
        return total

    def host(self, data: dict[str, Any]) -> str | None:
        """The producer whose kernel this op joins under ENGINE_RULES, or None."""
        name, op_type = data["name"], data["op_type"]
        if not data["supported"]:
            return None
        inputs = [(p, e) for p, e in self.tensor_inputs(name)
                  if p in self.kernel and self.graph.nodes[p]["kind"] == "op"]
        if _is_batch_norm(data):
            if not inputs:
                return None
            producer, _ = inputs[0]
            kind = self.graph.nodes[producer]["op_type"]
            alone = len(self.members[self.kernel[producer]]) == 1
            if ((kind.startswith("Conv") or kind == "Fully Connected") and alone
                    and self.readers(producer) == {name}):
                return producer
            return None
        if op_type not in ("Activation", "Elementwise") or "softmax" in data["target"]:
            return None
        size = _numel(data["output_shapes"][0]) if data["output_shapes"] else None
        for producer, edge in inputs:
            kernel = self.members[self.kernel[producer]]
            anchor = self.graph.nodes[kernel[0]]["op_type"]
            if not (anchor.startswith("Conv") or anchor in _EPILOGUE_HOSTS):
                continue
            if self.readers(producer) == {name} and edge["numel"] == size:
                return producer
        return None

    def join(self, data: dict[str, Any], host: str) -> None:
        """Add the op to `host`'s kernel: the tensor between them is neither written nor
        read; a folded batch norm reads none of its own parameters and statistics."""
        name = data["name"]
        index = self.kernel[host]
        self.kernel[name] = index
        self.members[index].append(name)
        host_data = self.graph.nodes[host]
        saved: Num = 0
        for producer, edge in self.tensor_inputs(name):
            if producer == host or producer in self.read[index]:  # in registers, or read once
                saved += edge["numel"] * _itemsize(edge["dtype"])
            else:
                self.read[index].add(producer)
        # the host's write of that tensor: only this op reads it (host() checked). The
        # kernel's one write is its anchor's to carry: the op that leads the kernel keeps
        # the write it always had, now of this op's output, and this op writes nothing
        anchor = self.members[index][0]
        self.op_saved[anchor] += _out_bytes(host_data, 0) - _out_bytes(data, 0)
        self.op_saved[name] += _out_bytes(data, 0)
        self.saved[index] += _out_bytes(host_data, 0)
        if _is_batch_norm(data):  # its statistics and affine parameters fold into the weights
            moved_io = sum((e["numel"] * _itemsize(e["dtype"])
                            for _, _, e in self.graph.in_edges(name, data=True)), 0)
            saved += data["cost"].mac_bytes - moved_io - _out_bytes(data, 0)
            if not _has_bias(host_data):  # the folded layer gains a bias
                channels = host_data["output_shapes"][0][1] if host_data["op_type"].startswith(
                    "Conv") else host_data["output_shapes"][0][-1]
                saved -= channels * _itemsize(host_data["dtypes"][0])
        self.saved[index] += saved
        self.op_saved[name] += saved


def _engine(analysis: Analysis) -> tuple[str, list[_Raw], dict[str, Num]]:
    engine = _Engine(analysis)
    raw = engine.run()
    nodes = analysis.graph.nodes
    exact = {op: to_int(nodes[op]["cost"].mac_bytes - engine.op_saved.get(op, 0))
             for op in engine.kernel}
    return "inference-engine rules (docs/fusion.md)", raw, exact


def _out_bytes(data: dict[str, Any], index: int) -> Num:
    return _numel(data["output_shapes"][index]) * _itemsize(data["dtypes"][index])


def _numel(shape: Sequence[Num]) -> Num:
    size: Num = 1
    for s in shape:
        size = size * s
    return size


def _is_batch_norm(data: dict[str, Any]) -> bool:
    packet = data["target"].removeprefix("aten.").rsplit(".", 1)[0]
    return packet in _BATCH_NORMS and data["op_type"] == "Norm"


def _has_bias(data: dict[str, Any]) -> bool:
    args = data["call"].args
    return len(args) > 2 and args[2] is not None
