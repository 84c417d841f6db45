"""What a real run allocates, for checking `costmodel.views.memory` against: torch's profiler with
memory profiling for the live-bytes curve, and autograd's saved-tensor hooks for what a
backward pass keeps.

The profiler records every allocation and free with its address and the op it happened in. An
allocation freed inside the same top-level op that made it never outlives that op: it is a
kernel's workspace (an im2col buffer, a weight reorder), which the liveness model leaves out
by design. `Measured` keeps both curves' peaks apart, so the comparison says which is which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Measured:
    """Peaks of live bytes allocated during one run, above what was allocated before it."""

    peak_bytes: int  #: every allocation
    tensor_peak_bytes: int  #: allocations that outlive the op that made them
    workspace_allocations: int  #: allocations freed inside the op that made them


def _top_op(event: Any) -> Any:
    top = None
    node = event.parent
    while node is not None:
        top = node
        node = node.parent
    return top


def _allocations(profile: Any) -> list[Any]:
    found = []
    stack = list(profile.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.name == "[memory]":
            found.append(node)
        stack.extend(node.children)
    return sorted(found, key=lambda e: e.start_time_ns)


def measure_peak(model: nn.Module, inputs: Sequence[torch.Tensor]) -> Measured:
    """Run an inference forward pass (no_grad) under the profiler and rebuild its curves."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        model(*inputs)  # warm-up: lazy initialisation allocates once
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = model(*inputs)
    del out
    events = _allocations(prof)
    made_in: dict[int, tuple[Any, int]] = {}  # address -> (top op, index of the allocation)
    workspace: set[int] = set()
    for i, event in enumerate(events):
        fields = event.extra_fields
        if fields.alloc_size > 0:
            made_in[fields.ptr] = (_top_op(event), i)
        elif fields.ptr in made_in:
            top, j = made_in.pop(fields.ptr)
            if top is not None and top is _top_op(event):
                workspace.update((i, j))
    live = tensors = peak = tensor_peak = 0
    for i, event in enumerate(events):
        live += event.extra_fields.alloc_size
        peak = max(peak, live)
        if i not in workspace:
            tensors += event.extra_fields.alloc_size
            tensor_peak = max(tensor_peak, tensors)
    return Measured(peak, tensor_peak, len(workspace) // 2)


def saved_tensor_bytes(model: nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd saves for backward in one training forward
    pass, parameters and buffers left out (`torch.autograd.graph.saved_tensors_hooks`)."""
    state = {t.untyped_storage()._cdata for t in (*model.parameters(), *model.buffers())}
    saved: dict[int, int] = {}
    keep: list[torch.Tensor] = []  # the storages stay alive, so their ids stay unique

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in state:
            saved[storage._cdata] = storage.nbytes()
        keep.append(tensor)
        return tensor

    training = model.training
    model.train()
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(*inputs)
    finally:
        model.train(training)
    return sum(saved.values())
