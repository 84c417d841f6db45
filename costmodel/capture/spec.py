"""The value types every capture stage shares: an input's shape and dtype, a loaded model, and
how an input spec is read from text, example tensors or a file's attributes. They sit below the
loaders (load, hf, freeargs) and the tracers so that none of those imports another for them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from costmodel.errors import CostModelError


@dataclass(frozen=True)
class InputSpec:
    """Shape and dtype of one model input; a size may be a name (a symbolic dimension)."""

    shape: tuple[int | str, ...]
    dtype: torch.dtype = torch.float32

    def describe(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": str(self.dtype).removeprefix("torch.")}


@dataclass
class LoadedModel:
    model: nn.Module
    name: str
    inputs: list[InputSpec]
    notes: list[str] = field(default_factory=list)
    #: the symbolic shape machinery a factory was called in (free arguments), else None
    shapes: Any = None


def parse_dtype(text: str) -> torch.dtype:
    dtype = getattr(torch, text.strip(), None)
    if not isinstance(dtype, torch.dtype):
        raise CostModelError(f"unknown dtype {text!r} (try float32, float16, bfloat16, int64)")
    return dtype


def parse_shape(text: str, dtype: torch.dtype = torch.float32) -> InputSpec:
    """'1,3,224,224' or '1,2048:int64' (a per-input dtype after a colon); a size may be a name
    (a free dimension: '1,3,H,W'). Sizes are split at commas, or at 'x' when there are none."""
    shape_text, _, dtype_text = text.partition(":")
    if dtype_text:
        dtype = parse_dtype(dtype_text)
    try:
        parts = shape_text.split(",") if "," in shape_text else shape_text.split("x")
        shape = tuple(_dim(p) for p in parts)
    except ValueError:
        raise CostModelError(
            f"bad --input-shape {text!r}: expected comma-separated sizes like 1,3,224,224"
        ) from None
    return InputSpec(shape, dtype)


def _dim(part: str) -> int | str:
    part = part.strip()
    if part.isidentifier():
        return part
    value = int(part)
    if value < 0:
        raise ValueError(part)
    return value


def specs_from(value: Any, dtype: torch.dtype = torch.float32) -> list[InputSpec]:
    """Input specs from example tensors (their own dtypes), a shape, or a list of shapes
    (`dtype`)."""
    if callable(value) and not isinstance(value, torch.Tensor):
        value = value()
    if isinstance(value, torch.Tensor):
        value = (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        return [InputSpec(tuple(value), dtype)]
    specs = []
    for v in value:
        if isinstance(v, torch.Tensor):
            specs.append(InputSpec(tuple(v.shape), v.dtype))
        elif isinstance(v, (list, tuple)):
            specs.append(InputSpec(tuple(v), dtype))
        else:
            raise CostModelError(f"cannot read an input spec from {type(v).__name__}")
    return specs


def resolve_inputs(namespace: Any, model: nn.Module, shapes: Sequence[str] | None,
                   dtype: torch.dtype, where: str) -> list[InputSpec]:
    """--input-shape, else the file's example_inputs / input_shape, else the model's own."""
    if shapes:
        return [parse_shape(s, dtype) for s in shapes]
    sources: list[Callable[[], Any]] = []
    for attr in ("example_inputs", "input_shape"):
        if hasattr(namespace, attr):
            sources.append(lambda a=attr: getattr(namespace, a))
    if hasattr(model, "example_inputs"):
        sources.append(lambda: model.example_inputs)
    cfg = getattr(model, "default_cfg", None)
    if isinstance(cfg, dict) and "input_size" in cfg:
        sources.append(lambda: (1, *cfg["input_size"]))
    for source in sources:
        specs = specs_from(source(), dtype)
        if specs:
            return specs
    raise CostModelError(
        f"{where}: no input shape: pass --input-shape 1,3,224,224 (once per input), "
        "or define example_inputs or input_shape in the file"
    )
