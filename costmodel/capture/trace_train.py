"""What a training or memory trace records beyond the op graph (costmodel/capture/trace.py): each
tensor's storage, the autograd sequence numbers that tie a backward op to its forward op, what
Python's frames hold at each module call, and the backward pass itself."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves, tree_map_only

from costmodel.errors import CostModelError

aten = torch.ops.aten


def storage_key(tensor: torch.Tensor) -> tuple[Any, ...]:
    """What makes two tensor objects the same tensor: storage, offset, sizes, strides, dtype."""
    key = (tensor.untyped_storage()._cdata, tensor.storage_offset(), tuple(tensor.shape),
           tensor.stride(), tensor.dtype)
    try:
        hash(key)
        return key
    except TypeError:  # symbolic sizes are not hashable
        return (tensor.untyped_storage()._cdata, str(tensor.storage_offset()),
                str(tuple(tensor.shape)), str(tensor.stride()), tensor.dtype)


class Extras:
    """What a memory or training trace adds to each node.

    Every node gets `storages`: (storage id, bytes) per tensor output, for liveness (views and
    in-place ops share their input's storage). A training trace also gives each node its
    `phase` ("forward" or "backward"); a forward node gets `seq_nr`, the range [first, end) of
    the autograd sequence numbers its op (or, for a function kept whole, the ops it ran) gave
    to the backward nodes it created; a backward node gets `grad_fn_seq_nr`, the sequence
    number of the autograd node running it, and `grad_of`, the parameter, for AccumulateGrad.
    costmodel/train.py matches the two."""

    def __init__(self, names: dict[int, tuple[str, str]], train: bool,
                 frames: bool = True) -> None:
        self.names = names
        self.train = train
        self.scan = frames  # note what Python frames hold (memory), or not (costs only)
        self.top = sys._getframe(1)  # trace()'s frame: the model runs below it
        self.phase = "forward"
        self.seq = torch.autograd._get_sequence_nr()
        self.by_storage: dict[tuple[Any, ...], torch.fx.Node] = {}
        self.pending: dict[int, Any] = {}  # storages made inside a function kept whole
        self.open_calls: list[list[int]] = []
        self.grads: dict[str, int] = {}
        #: (the op recorded last, 0 or 1, storages Python frames reference then)
        self.frames: list[tuple[str | None, int, list[int]]] = []
        #: (storages of a module call's tensor arguments, the last op it ran): its caller
        #: holds the arguments until it returns
        self.calls: list[tuple[list[int], str]] = []

    def enter(self, args: Any, last: torch.fx.Node | None) -> None:
        self.open_calls.append([t.untyped_storage()._cdata for t in tree_leaves(args)
                                if isinstance(t, torch.Tensor)])
        self.referenced(last, 1)

    def leave(self, last: torch.fx.Node | None) -> None:
        storages = self.open_calls.pop()
        if storages and last is not None:
            self.calls.append((storages, last.name))
        self.referenced(last, 0)

    def referenced(self, last: torch.fx.Node | None, after: int) -> None:
        """Note the storages Python's running frames hold (a caller's variable keeps a tensor
        alive after its last reader): alive at the op `after` ops past `last`."""
        if not self.scan:
            return
        found = set()
        frame = sys._getframe(2)
        while frame is not None and frame is not self.top:
            for value in frame.f_locals.values():
                items = value if isinstance(value, (tuple, list)) and len(value) < 64 else (
                    value,)
                found.update(t.untyped_storage()._cdata for t in items
                             if isinstance(t, torch.Tensor))
            frame = frame.f_back
        self.frames.append((last.name if last is not None else None, after, list(found)))

    def aliased(self, func: Any, out: Any) -> bool:
        """A backward `detach` is not recorded: it costs nothing, and its output, the same
        tensor under a new name, is matched to its input's node by storage. Autograd's
        AccumulateGrad detaches the gradient it puts in a parameter's `.grad`: noted in
        `grads` (parameter name -> storage id)."""
        if self.phase != "backward" or func is not aten.detach.default:
            return False
        variable = getattr(torch._C._current_autograd_node(), "variable", None)
        if variable is not None:
            self.grads[self.names.get(id(variable), ("", ""))[1]] = \
                out.untyped_storage()._cdata
        return True

    def hidden(self, out: Any, alive: list[torch.Tensor]) -> None:
        """An op run inside a function kept whole: its new storages belong to that node."""
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                self.pending.setdefault(storage._cdata, storage.nbytes())
                alive.append(tensor)  # a storage id is never reused while the trace runs

    def annotate(self, node: torch.fx.Node, out: Any) -> None:
        outs = out if isinstance(out, (tuple, list)) else (out,)
        storages = [t.untyped_storage() if isinstance(t, torch.Tensor) else None for t in outs]
        node.meta["storages"] = [None if s is None else (s._cdata, s.nbytes())
                                 for s in storages]
        if self.pending:  # what this op reads the graph knows; what it writes is its output
            known = {s[0] for s in node.meta["storages"] if s is not None}
            known.update(t.untyped_storage()._cdata for t in tree_leaves(
                [a.meta["val"] for a in node.all_input_nodes]) if isinstance(t, torch.Tensor))
            node.meta["internal"] = [(k, n) for k, n in self.pending.items() if k not in known]
            self.pending = {}
        if not self.train or node.op == "placeholder":
            return
        node.meta["phase"] = self.phase
        grad_fn = torch._C._current_autograd_node()
        if grad_fn is None:
            end = torch.autograd._get_sequence_nr()
            node.meta["seq_nr"] = (self.seq, end)
            self.seq = end
        else:
            node.meta["grad_fn"] = grad_fn.name()
            node.meta["grad_fn_seq_nr"] = grad_fn._sequence_nr()
            variable = getattr(grad_fn, "variable", None)
            if variable is not None:
                node.meta["grad_of"] = self.names.get(id(variable), ("", ""))[1]

    def produced(self, tensor: torch.Tensor, node: torch.fx.Node) -> None:
        """Remember `node` made `tensor`, for when autograd hands it back as a new object."""
        if self.train:
            self.by_storage[storage_key(tensor)] = node

    def replica(self, out: Any, recorder: Any) -> Any:
        """`out` with each tensor detached: what the graph keeps of a backward op's output."""
        recorder.suppress += 1
        try:
            return tree_map_only(torch.Tensor, torch.Tensor.detach, out)
        finally:
            recorder.suppress -= 1


@contextmanager
def training(model: nn.Module) -> Iterator[None]:
    """Train mode (batch statistics, dropout) with autograd on, and no gradients yet (as after
    `zero_grad()`); the modes and any gradients the parameters held are restored after."""
    modes = {m: m.training for m in model.modules()}
    grads = {p: p.grad for p in model.parameters()}
    model.train()
    try:
        for p in grads:
            p.grad = None
        with torch.enable_grad():
            yield
    finally:
        for module, mode in modes.items():
            module.training = mode
        for p, grad in grads.items():
            p.grad = grad


def backward_from_ones(out: Any, extras: Extras, where: str) -> None:
    """Run backward from a gradient of ones (the output's shape) for every output needing one."""
    outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.requires_grad]
    if not outs:
        raise CostModelError(f"{where}: cannot trace a training step: no output depends on a "
                             f"parameter that requires grad")
    extras.phase = "backward"
    torch.autograd.backward(outs, [torch.ones_like(t) for t in outs])
