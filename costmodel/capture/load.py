"""TARGET -> (nn.Module, input specs). Models given as a class or factory are built on the meta
device so that no weights are allocated; where that fails they are built on the CPU instead."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from costmodel.capture.spec import (  # the value types, importable from here as before
    InputSpec,
    LoadedModel,
    parse_dtype,
    parse_shape,
    resolve_inputs,
    specs_from,
)
from costmodel.errors import CostModelError


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


def load(target: str, input_shapes: Sequence[str] | None = None,
         dtype: torch.dtype = torch.float32, device: str = "meta",
         free: dict[str, int | None] | None = None) -> LoadedModel:
    """`device` is where a class or factory is built (meta unless the model must run, as under
    --execute); `free` names factory arguments to call with symbolic sizes
    (costmodel/capture/freeargs.py)."""
    from costmodel.capture import hf

    if hf.is_hf_target(target):  # hf:ORG/NAME, hf:PATH, hf:MODEL_TYPE (costmodel/capture/hf.py)
        if free:
            raise CostModelError(f"{target}: --free calls a factory with symbolic sizes; an "
                                 f"hf: model is built from its config")
        return hf.load_hf(target, input_shapes, device)
    path, name, is_file = split_target(target)
    namespace = import_namespace(path, is_file)
    attr, obj = pick_object(namespace, name, path)
    where = f"{path}:{attr}"
    if free:
        from costmodel.capture.freeargs import load_free

        return load_free(namespace, obj, free, input_shapes, dtype, where)
    notes: list[str] = []
    model = build(obj, where, notes, device)
    model.eval()
    inputs = resolve_inputs(namespace, model, input_shapes, dtype, where)
    return LoadedModel(model, where, inputs, notes)


__all__ = ["InputSpec", "LoadedModel", "build", "import_namespace", "load",
           "parse_dtype", "parse_shape", "pick_object", "resolve_inputs", "specs_from",
           "split_target"]
