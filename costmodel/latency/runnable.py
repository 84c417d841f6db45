"""A TARGET built for real on a device, with random weights and inputs, to be timed.

The loader builds models on the meta device (no weights); measuring needs real tensors, so the
model is built again here: a class or factory is called under the device, an instance already
on meta is materialised with `to_empty` and re-initialised by each layer's own
`reset_parameters` (other tensors get random normal values).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from costmodel.capture.load import (
    InputSpec,
    _first_line,
    import_namespace,
    pick_object,
    split_target,
)
from costmodel.errors import CostModelError


def build_on(target: str, device: str) -> nn.Module:
    """The TARGET's model on `device`, in eval mode, with freshly initialised weights."""
    path, name, is_file = split_target(target)
    attr, obj = pick_object(import_namespace(path, is_file), name, path)
    where = f"{path}:{attr}"
    if isinstance(obj, nn.Module):
        return materialize(obj, device).eval()
    try:
        with torch.device(device):
            model = obj()
    except Exception as exc:
        raise CostModelError(f"{where}: cannot construct the model on {device}: "
                             f"{_first_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise CostModelError(f"{where}: returned a {type(model).__name__}, not an nn.Module")
    return materialize(model, device).eval()


def materialize(model: nn.Module, device: str) -> nn.Module:
    """Move to `device`; a model with meta tensors gets real, freshly initialised ones."""
    on_meta = any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    if not on_meta:
        return model.to(device)
    model = model.to_empty(device=device)
    reset: set[int] = set()
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
                reset.update(id(t) for t in module.parameters(recurse=False))
                reset.update(id(t) for t in module.buffers(recurse=False))
        for tensor in [*model.parameters(), *model.buffers()]:
            if id(tensor) not in reset:
                if tensor.is_floating_point():
                    tensor.normal_(0, 0.02)
                else:
                    tensor.zero_()
    return model


def random_inputs(specs: Sequence[InputSpec], device: str) -> list[torch.Tensor]:
    """Random tensors of the given shapes: normal for floats, 0/1 for integers (token ids)."""
    inputs = []
    for spec in specs:
        if not all(isinstance(d, int) for d in spec.shape):
            raise CostModelError(f"cannot run a model on a symbolic shape {spec.shape}")
        shape = tuple(int(d) for d in spec.shape)
        if spec.dtype.is_floating_point:
            inputs.append(torch.randn(shape, dtype=spec.dtype, device=device))
        else:
            inputs.append(torch.randint(0, 2, shape, dtype=spec.dtype, device=device))
    return inputs
