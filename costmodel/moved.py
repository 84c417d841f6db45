"""The import paths of before the package was laid out by stage, kept for one release: importing
one warns and hands back the module at its new home (the same module object, so that a patch
through either path reaches the same code)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings

#: old module -> new module. Remove this table, and this module, in the next release.
MOVED = {
    "costmodel.load": "costmodel.capture.load",
    "costmodel.hf": "costmodel.capture.hf",
    "costmodel.freeargs": "costmodel.capture.freeargs",
    "costmodel.execute": "costmodel.capture.execute",
    "costmodel.symdims": "costmodel.capture.symdims",
    "costmodel.trace": "costmodel.capture.trace",
    "costmodel.trace_train": "costmodel.capture.trace_train",
    "costmodel.widthscope": "costmodel.capture.widthscope",
    "costmodel.graph": "costmodel.capture.graph",
    "costmodel.memory": "costmodel.views.memory",
    "costmodel.moe": "costmodel.views.moe",
    "costmodel.kvcache": "costmodel.views.kvcache",
    "costmodel.fold": "costmodel.views.fold",
    "costmodel.measure": "costmodel.views.memory_measure",
    "costmodel.memory_report": "costmodel.report.memory",
    "costmodel.plot": "costmodel.report.plot",
    "costmodel.figures": "costmodel.report.figures",
    "costmodel.ops_doc": "costmodel.report.ops_doc",
}


def _caller_level() -> int:
    """The stack level of the code that wrote the import, past importlib's own frames."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith("<frozen importlib")
                                 or frame.f_code.co_filename == __file__):
        frame, level = frame.f_back, level + 1
    return level


class MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names of moved modules; the module it loads is the one at the new name."""

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} has moved to {new}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=_caller_level())
        module = importlib.import_module(new)
        spec.loader_state = module.__spec__  # put back by exec_module: the import overwrites it
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = module.__spec__.loader_state


def install() -> None:
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedFinder())
