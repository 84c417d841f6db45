"""Module + input specs -> torch.fx graph at the aten level, captured on meta or fake tensors.

We trace with `torch.export.export(strict=False)`: it records the training-IR aten ops (conv2d,
linear, scaled_dot_product_attention stay whole), each with its module stack, and names every
parameter in its graph signature. docs/tracing.md gives the measurements behind the choice.
Tracing runs under `torch.no_grad()` with the model in eval mode: inference, one documented mode.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr

import torch
import torch.fx.config as fx_config
from torch import nn

from costmodel.errors import CostModelError
from costmodel.load import InputSpec


def _device_of(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("meta")


def example_args(model: nn.Module, specs: Sequence[InputSpec]) -> tuple[torch.Tensor, ...]:
    """Uninitialised inputs on the model's device (meta: no memory at all)."""
    device = _device_of(model)
    for spec in specs:
        if not all(isinstance(d, int) for d in spec.shape):
            raise CostModelError(f"symbolic input shape {spec.shape} is not supported here")
    return tuple(torch.empty(s.shape, dtype=s.dtype, device=device) for s in specs)


def _shapes(specs: Sequence[InputSpec]) -> str:
    return " ".join("x".join(str(d) for d in s.shape) for s in specs)


def trace(model: nn.Module, specs: Sequence[InputSpec], where: str = "model"
          ) -> torch.export.ExportedProgram:
    """Capture the model's forward on the given input specs."""
    args = example_args(model, specs)
    try:
        with torch.no_grad(), warnings.catch_warnings(), _quiet_torch():
            warnings.simplefilter("ignore")
            return torch.export.export(model, args, strict=False)
    except Exception as exc:
        raise CostModelError(_explain(exc, where, specs)) from exc


@contextmanager
def _quiet_torch() -> Iterator[None]:
    """No graph dumps or warnings from torch (our error line says it all), no stack records."""
    logger = logging.getLogger("torch")
    level, stacks = logger.level, fx_config.do_not_emit_stack_traces
    logger.setLevel(logging.CRITICAL)
    fx_config.do_not_emit_stack_traces = True  # per-node Python stacks: ~10% of trace time
    try:
        with redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)
        fx_config.do_not_emit_stack_traces = stacks


def _explain(exc: Exception, where: str, specs: Sequence[InputSpec]) -> str:
    """One line: a data-dependent trace failure, or the model refusing its inputs."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    kind = type(exc).__name__
    if "data-dependent" in str(exc) or "DataDependent" in kind or "GuardOnDataDependent" in kind:
        return (f"{where}: cannot trace: control flow depends on tensor values "
                f"({kind}: {text})")
    if kind in ("Unsupported", "UserError", "TorchRuntimeError") or "export" in kind.lower():
        return f"{where}: cannot trace: {kind}: {text}"
    return f"{where}: the model rejects input shape {_shapes(specs)}: {kind}: {text}"
