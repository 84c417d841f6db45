"""TARGETs and patterns -> the list of models a batch analyses, all resolved before any work.

A TARGET is what `costmodel analyze` takes. A pattern expands to many:

- ``hf:*`` (or ``hf:GLOB``, e.g. ``hf:qwen*``): every `transformers` model type with a default
  config (``AutoConfig.for_model``), as ``hf:MODEL_TYPE``;
- ``MODULE:*`` (or ``MODULE:GLOB``): the models a module names: ``costmodel.zoo:*`` its
  ``MODELS``, ``costmodel.zoo.guidelines:*`` the benchmark networks, any other module the
  nn.Module classes, instances and zero-argument factories it defines;
- a folder: each of its ``*.py`` files not starting with ``_`` (not recursive), as ``FILE.py``;
- ``path/*.py`` (a glob of files): each match.

A pattern that matches nothing, or that is none of these, is a one-line error. Each target may
carry a family (the zoo module, the guideline experiment, the folder) for the figure.
"""

from __future__ import annotations

import fnmatch
import glob
import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from costmodel.errors import CostModelError

GLOB_CHARS = "*?["
KNOWN = ("hf:*, costmodel.zoo:*, costmodel.zoo.guidelines:*, MODULE:*, a folder of model "
         "files, or path/*.py")


@dataclass(frozen=True)
class Target:
    """One model to analyse; `family` groups it in the figure ('' where nothing says)."""

    target: str
    family: str = ""


def expand(targets: Sequence[str], from_file: str | None = None) -> list[Target]:
    """Every target in order, patterns expanded, duplicates dropped (the first kept)."""
    given = list(targets)
    if from_file is not None:
        given.extend(read_list(from_file))
    if not given:
        raise CostModelError("no targets: name TARGETs or patterns, or --from FILE")
    seen: dict[str, Target] = {}
    for text in given:
        for target in _expand_one(text):
            seen.setdefault(target.target, target)
    return list(seen.values())


def read_list(path: str) -> list[str]:
    """One target per line; blank lines and lines starting with # are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CostModelError(f"{path}: cannot read the target list: {exc.strerror}") from exc
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _expand_one(text: str) -> list[Target]:
    from costmodel.capture import hf

    if hf.is_hf_target(text):
        ref = text[len(hf.PREFIX):]
        return _hf(text, ref) if _is_glob(ref) else [Target(text)]
    folder = Path(text).expanduser()
    if folder.is_dir():
        return _files(text, sorted(p for p in folder.glob("*.py")
                                   if not p.name.startswith("_")), folder.name)
    module, sep, name = text.rpartition(":")
    if sep and _is_glob(name) and "/" not in module and not module.endswith(".py"):
        return _module(text, module, name)
    if _is_glob(text):
        if text.endswith(".py") or "/" in text:
            return _files(text, sorted(Path(p) for p in glob.glob(text) if Path(p).is_file()),
                          None)
        raise CostModelError(f"{text}: unknown pattern (expected {KNOWN})")
    from costmodel.capture.load import split_target

    return [Target(_absolute(text) if split_target(text)[2] else text)]


def _is_glob(text: str) -> bool:
    return any(c in text for c in GLOB_CHARS)


def _absolute(target: str) -> str:
    """A file target with an absolute path, so that workers (started elsewhere) find it."""
    from costmodel.capture.load import split_target

    path, name, _ = split_target(target)
    resolved = str(Path(path).expanduser().resolve())
    return f"{resolved}:{name}" if name else resolved


def _files(pattern: str, files: Iterable[Path], family: str | None) -> list[Target]:
    found = [Target(str(p.resolve()), family or p.parent.name) for p in files]
    if not found:
        raise CostModelError(f"{pattern}: no model files (*.py) match")
    return found


def _hf(pattern: str, glob_text: str) -> list[Target]:
    try:
        from transformers import CONFIG_MAPPING
    except ImportError:
        raise CostModelError(f"{pattern}: needs the transformers library (pip install "
                             "'costmodel[bench]' or pip install transformers)") from None
    types = sorted(t for t in CONFIG_MAPPING if fnmatch.fnmatchcase(t, glob_text))
    if not types:
        raise CostModelError(f"{pattern}: no transformers model type matches")
    return [Target(f"hf:{t}") for t in types]


def _module(pattern: str, module_name: str, glob_text: str) -> list[Target]:
    """The models a module names, filtered by the glob."""
    from costmodel.capture.load import _candidates, _factories

    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a user's package may fail in any way on import
        raise CostModelError(f"{pattern}: unknown pattern: cannot import {module_name!r} "
                             f"({type(exc).__name__}: {exc})") from None
    if module_name == "costmodel.zoo.guidelines":
        names = [(v.name, v.experiment) for v in module.variants()]
    elif module_name == "costmodel.zoo":
        names = [(n, f.__module__.rpartition(".")[2]) for n, f in module.MODELS.items()]
    else:
        family = module_name.rpartition(".")[2]
        names = [(n, family) for n in sorted({*_candidates(module), *_factories(module)})]
    found = [Target(f"{module_name}:{n}", family) for n, family in names
             if fnmatch.fnmatchcase(n, glob_text)]
    if not found:
        raise CostModelError(f"{pattern}: no model of {module_name} matches")
    return found
