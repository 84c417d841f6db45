"""TARGET -> (nn.Module, input specs). Models given as a class or factory are built on the meta
device so that no weights are allocated; where that fails they are built on the CPU instead."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


def split_target(target: str) -> tuple[str, str | None, bool]:
    """(file path or module name, attribute name or None, is a file)."""
    path, sep, name = target.rpartition(":")
    if not sep or "/" in name or name.endswith(".py"):
        path, name = target, ""
    is_file = path.endswith(".py") or "/" in path or Path(path).is_file()
    return path, name or None, is_file


def import_namespace(path: str, is_file: bool) -> Any:
    if not is_file:
        try:
            return importlib.import_module(path)
        except Exception as exc:  # a user's package may fail in any way on import
            raise CostModelError(f"{path}: cannot import: {_first_line(exc)}") from exc
    file = Path(path)
    if not file.is_file():
        raise CostModelError(f"{path}: no such file")
    module_name = f"_costmodel_target_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(file.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise CostModelError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        raise CostModelError(f"{path}: error while importing: {_first_line(exc)}") from exc
    finally:
        sys.path.remove(str(file.parent.resolve()))
    return module


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _is_model_like(obj: Any) -> bool:
    return isinstance(obj, nn.Module) or (inspect.isclass(obj) and issubclass(obj, nn.Module))


def pick_object(namespace: Any, name: str | None, where: str) -> tuple[str, Any]:
    """The named attribute, or `model`, or the one nn.Module the file defines (else its one
    factory)."""
    if name is not None:
        if not hasattr(namespace, name):
            found = ", ".join(_candidates(namespace) + _factories(namespace)) or "none"
            raise CostModelError(f"{where}: no attribute {name!r} (models found: {found})")
        return name, getattr(namespace, name)
    if hasattr(namespace, "model"):
        return "model", namespace.model
    candidates = _candidates(namespace) or _factories(namespace)
    if len(candidates) == 1:
        return candidates[0], getattr(namespace, candidates[0])
    listed = ", ".join(candidates) or "none"
    raise CostModelError(f"{where}: name the model as {where}:NAME (models found: {listed})")


def _candidates(namespace: Any) -> list[str]:
    own = getattr(namespace, "__name__", None)
    return sorted(
        k for k, v in vars(namespace).items()
        if not k.startswith("_") and _is_model_like(v)
        and (isinstance(v, nn.Module) or getattr(v, "__module__", None) == own)
    )


def _factories(namespace: Any) -> list[str]:
    """Public zero-argument functions of the module (or of its package's own modules: the zoo
    re-exports its factories) annotated to return an nn.Module."""
    own = getattr(namespace, "__name__", None) or ""
    return sorted(
        k for k, v in vars(namespace).items()
        if not k.startswith("_") and inspect.isfunction(v)
        and (v.__module__ == own or v.__module__.startswith(own + "."))
        and _returns_module(v)
    )


def _returns_module(function: Callable[..., Any]) -> bool:
    try:
        signature = inspect.signature(function, eval_str=True)
    except Exception:  # an annotation that does not resolve: not a factory we can vouch for
        return False
    needed = [p for p in signature.parameters.values() if p.default is p.empty
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    returns = signature.return_annotation
    return not needed and inspect.isclass(returns) and issubclass(returns, nn.Module)


def build(obj: Any, where: str, notes: list[str], device: str = "meta") -> nn.Module:
    """Instantiate a class or call a factory, on the meta device when it allows (or on the
    CPU, seeded, for a run on real tensors)."""
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise CostModelError(f"{where}: is a {type(obj).__name__}, not a model or a factory")
    try:
        with torch.device(device), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = obj()
    except Exception as exc:
        if device != "meta":
            raise CostModelError(f"{where}: cannot construct the model: {_first_line(exc)}"
                                 ) from exc
        notes.append(f"built on the CPU: construction on the meta device failed "
                     f"({_first_line(exc)})")
        try:
            model = obj()
        except Exception as exc2:
            raise CostModelError(f"{where}: cannot construct the model: {_first_line(exc2)}"
                                 ) from exc2
    if not isinstance(model, nn.Module):
        raise CostModelError(f"{where}: returned a {type(model).__name__}, not an nn.Module")
    return model


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


def load(target: str, input_shapes: Sequence[str] | None = None,
         dtype: torch.dtype = torch.float32, device: str = "meta",
         free: dict[str, int | None] | None = None) -> LoadedModel:
    """`device` is where a class or factory is built (meta unless the model must run, as under
    --execute); `free` names factory arguments to call with symbolic sizes
    (costmodel/freeargs.py)."""
    from costmodel import hf

    if hf.is_hf_target(target):  # hf:ORG/NAME, hf:PATH, hf:MODEL_TYPE (costmodel/hf.py)
        if free:
            raise CostModelError(f"{target}: --free calls a factory with symbolic sizes; an "
                                 f"hf: model is built from its config")
        return hf.load_hf(target, input_shapes, device)
    path, name, is_file = split_target(target)
    namespace = import_namespace(path, is_file)
    attr, obj = pick_object(namespace, name, path)
    where = f"{path}:{attr}"
    if free:
        from costmodel.freeargs import load_free

        return load_free(namespace, obj, free, input_shapes, dtype, where)
    notes: list[str] = []
    model = build(obj, where, notes, device)
    model.eval()
    inputs = resolve_inputs(namespace, model, input_shapes, dtype, where)
    return LoadedModel(model, where, inputs, notes)
